"""Benchmarks: run with `make bench`; they print figures and never assert timings."""
