"""What the suites share: fakes, process helpers, leak sweeps, fixtures and constants.

Nothing here is a test. The fixtures are registered once, by `pytest_plugins` in
tests/conftest.py; test modules (and bench/harness.py) import the rest from here.
"""
