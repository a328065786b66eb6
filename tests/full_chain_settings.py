"""config.settings without proxy.middleware.ApiFastPath: every request through Django's whole
middleware chain. tests/proxy/test_api_fast_path.py compares a proxy process run with these
against the live proxy."""

from config.settings import *  # noqa: F403
from config.settings import MIDDLEWARE

MIDDLEWARE = [name for name in MIDDLEWARE if name != "proxy.middleware.ApiFastPath"]
