"""Settings for the test suite: config.settings with test-only secrets, own Redis keys and DB."""

import os
from uuid import uuid4

# Test-only values, used unless the environment already has a key.
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-never-deployed")
os.environ.setdefault("MASKING_KEY", "test-only-masking-key-never-deployed")

from config.settings import *  # noqa: F403
from config.settings import CACHES

# The test Redis may be shared with other users: each run writes under its own key prefix,
# and tests delete only their own keys, never flush a database. Kept in the environment so
# that processes a test starts share it.
CACHES["default"]["KEY_PREFIX"] = os.environ.setdefault(
    "TEST_REDIS_KEY_PREFIX", f"maskproxy-test-{os.getpid()}-{uuid4().hex[:8]}"
)

# Keys without limits of their own get none here: tests send many requests with one key. The
# defaults themselves are tested (tests/security/test_fair_use.py).
PROXY_DEFAULT_RATE_LIMIT_PER_MINUTE = 0
PROXY_DEFAULT_MAX_CONCURRENT_STREAMS = 0
PROXY_KEY_CPU_SECONDS_PER_MINUTE = 0.0

# A fast hasher: the tests create users, they do not test password storage.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    # A file, not memory: some tests start other processes that must see the test database.
    (BASE_DIR / ".run").mkdir(exist_ok=True)  # noqa: F405
    # The live server's threads write audit rows while tests write theirs: wait for locks.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30  # noqa: F405
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": str(BASE_DIR / ".run" / f"{CACHES['default']['KEY_PREFIX']}.sqlite3")  # noqa: F405
    }
else:
    # The server may be shared with other runs and other projects: pytest-django creates and
    # drops a test database named after this run's key prefix, and touches no other.
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": ("test_" + CACHES["default"]["KEY_PREFIX"].replace("-", "_"))[:63]
    }

# The variables test routes may read provider keys from (each test sets the ones it uses).
PROXY_ROUTE_CREDENTIALS = [
    "ROUTES_TEST_KEY",
    "ROUTES_UNSET_KEY",
    "ROUTES_NEVER_SET",
    "ROUTES_ADMIN_KEY",
    "ROUTE_TEST_KEY",
    "OPENAI_ROUTE_TEST_KEY",
    "E2E_OPENAI_KEY",
]
