"""Django settings for the masking proxy, read from environment variables (see .env.example)."""

import os
import re
import resource
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_float, env_int, env_list, env_secret, env_str

# LiteLLM reads these when it is first imported, which is always after settings load. Without
# them it downloads its model price list from the internet at import time and, outside
# "PRODUCTION" mode, loads any .env file it finds into os.environ.
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
os.environ.setdefault("LITELLM_MODE", "PRODUCTION")

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DJANGO_DEBUG", False)

_secret_key = env_secret("SECRET_KEY")
if _secret_key is None:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY (or SECRET_KEY_FILE) must be set when DJANGO_DEBUG is off"
        )
    _secret_key = "django-insecure-dev-only-do-not-deploy"  # noqa: S105 (DEBUG only)
SECRET_KEY = _secret_key

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "servestatic",  # its system checks
    "rest_framework",
    "adrf",
    "patterns",
    "proxy",
]

MIDDLEWARE = [
    "proxy.middleware.RequestIdMiddleware",
    # API requests leave the chain here, on the event loop: what the rest of it would do to
    # them, ApiFastPath does itself; the admin and the dashboard go on through all of it.
    "proxy.middleware.ApiFastPath",
    "django.middleware.security.SecurityMiddleware",
    # Async-capable (WhiteNoise is not): a synchronous middleware here would put every request
    # through a worker thread and back.
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Persistent connections belong to a thread. Under ASGI each request's ORM work runs in a
# thread of its own, so a non-zero CONN_MAX_AGE would leave idle connections open in each of
# them. PostgreSQL gets a pool per process instead (psycopg_pool, through Django): closing a
# connection, as Django does at the end of each request, returns it to the pool.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=0,
    ),
}
DATABASE_POOL_MAX_SIZE = env_int("DATABASE_POOL_MAX_SIZE", 10, minimum=0)

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Write-ahead logging lets readers (admin, dashboard) run beside the audit writer, and
    # commits need not wait for a disk sync (a crash can lose the last commits, never corrupt).
    # IMMEDIATE takes the write lock at the start of a transaction, so a busy database makes
    # writers wait (up to the timeout) instead of failing halfway with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        transaction_mode="IMMEDIATE",
    )
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DATABASE_POOL_MAX_SIZE:
    # One connection stays open for the audit writer and the odd cache miss; more are opened
    # when requests wait for one, and closed again after ten idle minutes. A request waits
    # up to 30 s for a free connection, then fails with a database error.
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": DATABASE_POOL_MAX_SIZE,
    }
    # A pooled connection may have outlived a database restart: check it before lending it.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_redis_timeout = env_float("REDIS_SOCKET_TIMEOUT", 2.0, minimum=0.1)
# The URL may hold a password: it can come from a file (REDIS_URL_FILE) and is never logged.
_redis_url = env_secret("REDIS_URL") or "redis://127.0.0.1:6379/0"
_redis_options: dict[str, Any] = {
    "CLIENT_CLASS": "django_redis.client.DefaultClient",
    "SERIALIZER": "django_redis.serializers.json.JSONSerializer",
    "SOCKET_CONNECT_TIMEOUT": _redis_timeout,
    "SOCKET_TIMEOUT": _redis_timeout,
    # The masking mappings live here: they are data we cannot lose, not a cache.
    # A Redis error must fail the request (closed), never pass as a miss.
    "IGNORE_EXCEPTIONS": False,
}


def _sentinel_address(item: str) -> tuple[str, int]:
    host, _, port = item.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ImproperlyConfigured(f"REDIS_SENTINELS: {item!r} is not host:port")
    return host.strip("[]"), int(port)


def _sentinel_location(url: str, master: str) -> str:
    """REDIS_URL with its host replaced by the master's name, as django-redis expects."""
    parts = urlsplit(url)
    if parts.scheme != "redis":
        # django-redis's Sentinel pool would open plain TLS connections to the service name.
        raise ImproperlyConfigured("With REDIS_SENTINELS, REDIS_URL must start with redis://")
    userinfo, _, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{master}" if userinfo else master))


_redis_sentinels = [_sentinel_address(item) for item in env_list("REDIS_SENTINELS", [])]
if _redis_sentinels:
    # Both clients read the service name from the URL's host, which URL parsing lowercases.
    _redis_master = env_str("REDIS_SENTINEL_MASTER", "mymaster")
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", _redis_master):
        raise ImproperlyConfigured(
            "REDIS_SENTINEL_MASTER must be lowercase letters, digits and _ . - "
            f"(it travels as a URL host); got {_redis_master!r}"
        )
    _redis_url = _sentinel_location(_redis_url, _redis_master)
    _sentinel_kwargs: dict[str, Any] = {
        "socket_connect_timeout": _redis_timeout,
        "socket_timeout": _redis_timeout,
    }
    _sentinel_password = env_secret("REDIS_SENTINEL_PASSWORD")
    if _sentinel_password is not None:
        _sentinel_kwargs["password"] = _sentinel_password
    _redis_options.update(
        CONNECTION_FACTORY="django_redis.pool.SentinelConnectionFactory",
        SENTINELS=_redis_sentinels,
        SENTINEL_KWARGS=_sentinel_kwargs,
    )

# How many replicas must acknowledge a request's new mappings before it is forwarded (Redis
# WAIT); fewer within half of REDIS_SOCKET_TIMEOUT refuse the request. 0: do not wait.
REDIS_WAIT_REPLICAS = env_int("REDIS_WAIT_REPLICAS", 0, minimum=0)

CACHES: dict[str, dict[str, Any]] = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": _redis_url,
        "KEY_PREFIX": env_str("REDIS_KEY_PREFIX", "maskproxy"),
        "OPTIONS": _redis_options,
    },
}

# Masking. Without MASKING_KEY the mapping store derives its keys from SECRET_KEY.
MASKING_KEY = env_secret("MASKING_KEY")
MAPPING_TTL_SECONDS = env_int("MAPPING_TTL_SECONDS", 604800, minimum=60)
# Namespace memory (docs/masking.md): the most values one namespace learns (masked wherever
# they stand in its later requests, context or not), and the most learned values a process
# holds in memory over all namespaces (about 700 bytes each; least recently used namespaces
# are dropped first and read again from Redis when they return). 0 learns nothing.
PROXY_LEARNED_VALUES_MAX = env_int("PROXY_LEARNED_VALUES_MAX", 100_000, minimum=0)
PROXY_LEARNED_VALUES_IN_MEMORY = env_int(
    "PROXY_LEARNED_VALUES_IN_MEMORY",
    max(200_000, PROXY_LEARNED_VALUES_MAX),
    minimum=PROXY_LEARNED_VALUES_MAX,
)
# What a process scanned already (patterns/scan_cache.py: a conversation's history is not
# scanned again every turn), in MB, in each worker and in its scanning process; 0 turns it off.
PROXY_SCAN_CACHE_MB = env_int("PROXY_SCAN_CACHE_MB", 64, minimum=0)
# Placeholders Redis confirmed a moment ago (patterns/placements.py: a conversation's values
# are not placed again every turn), at most this many values per process; 0 turns it off.
PROXY_PLACEMENT_CACHE_VALUES = env_int("PROXY_PLACEMENT_CACHE_VALUES", 100_000, minimum=0)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Plain storage, and ServeStatic falls back to the finders: nothing needs collectstatic to
# have run, which keeps tests and a fresh checkout working.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
SERVESTATIC_USE_FINDERS = True

# Cookies only over HTTPS unless told otherwise (plain-HTTP local runs set SECURE_COOKIES=false).
SECURE_COOKIES = env_bool("SECURE_COOKIES", not DEBUG)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
# Behind a load balancer that terminates TLS: trust its X-Forwarded-Proto, redirect plain
# HTTP to HTTPS (except the load balancer's own health checks) and send HSTS.
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^health$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "proxy.errors.exception_handler",
}

# The proxy and its provider. Secrets come from the environment or NAME_FILE only.
ANTHROPIC_API_KEY = env_secret("ANTHROPIC_API_KEY")
# An extra client key, the operator's own (not LiteLLM's: LiteLLM runs in-process and has no
# key of its own here). LITELLM_MASTER_KEY, its former name, is still read, with a warning.
PROXY_MASTER_KEY = env_secret("PROXY_MASTER_KEY", formerly="LITELLM_MASTER_KEY")
PROXY_UPSTREAM_BASE_URL = env_str("PROXY_UPSTREAM_BASE_URL", "https://api.anthropic.com")
PROXY_UPSTREAM_TIMEOUT = env_float("PROXY_UPSTREAM_TIMEOUT", 600.0, minimum=1.0)
PROXY_UPSTREAM_CONNECT_TIMEOUT = env_float("PROXY_UPSTREAM_CONNECT_TIMEOUT", 5.0, minimum=0.1)
# Models no admin route matches go to Anthropic (anthropic/<model>); off: they are refused.
PROXY_DEFAULT_ROUTE = env_bool("PROXY_DEFAULT_ROUTE", True)
# The environment variables model routes may read their provider keys from (names only): an
# admin can then not point a route at a host of theirs with any other secret of this server.
PROXY_ROUTE_CREDENTIALS = env_list("PROXY_ROUTE_CREDENTIALS", [])
# Where the repository's docs/ folder can be read (its pages are appended): the admin index
# links each page. Empty: the index names the pages without links.
PROXY_DOCS_URL = env_str("PROXY_DOCS_URL", "")
# The deep health check (/health?deep=1) asks this model for one token.
PROXY_HEALTH_MODEL = env_str("PROXY_HEALTH_MODEL", "claude-haiku-4-5")
PROXY_HEALTH_PROBE_TIMEOUT = env_float("PROXY_HEALTH_PROBE_TIMEOUT", 10.0, minimum=0.1)
# A process reuses a checked API key for up to this many seconds, unless an API key changes
# (through Django) first, which every process notices at its next request. 0: check every time.
API_KEY_CACHE_SECONDS = env_float("API_KEY_CACHE_SECONDS", 30.0, minimum=0.0)
# Whether /health needs a proxy API key (it never shows a secret either way).
HEALTH_REQUIRES_KEY = env_bool("HEALTH_REQUIRES_KEY", False)
# The live provider probe (/health?deep=1) costs a provider call: it needs a proxy API key or
# the metrics token unless opened to anyone here.
HEALTH_DEEP_OPEN = env_bool("HEALTH_DEEP_OPEN", False)
# A process makes at most one live probe per this many seconds; callers meanwhile share it.
HEALTH_PROBE_CACHE_SECONDS = env_float("HEALTH_PROBE_CACHE_SECONDS", 10.0, minimum=1.0)
# When set, /metrics needs Authorization: Bearer <METRICS_TOKEN> (or METRICS_TOKEN_FILE).
METRICS_TOKEN = env_secret("METRICS_TOKEN")
# Audit records older than this many days are removed by `manage.py prune_audit`.
AUDIT_RETENTION_DAYS = env_int("AUDIT_RETENTION_DAYS", 90, minimum=1)
# Anthropic accepts request bodies up to 32 MB; larger ones get a 413 here: from
# config.http.BoundedHttpProtocol as soon as the head declares more (or a chunked body brings
# more), and from the view (through DATA_UPLOAD_MAX_MEMORY_SIZE) behind it.
PROXY_MAX_BODY_BYTES = env_int("PROXY_MAX_BODY_BYTES", 32 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = PROXY_MAX_BODY_BYTES
# Fair use of what tenants share (the event loop, the worker's CPU, Redis): what one request
# may hold. Larger requests get a 413 before any value is placed in Redis.
PROXY_MAX_MESSAGES = env_int("PROXY_MAX_MESSAGES", 10_000, minimum=1)
PROXY_MAX_CONTENT_BLOCKS = env_int("PROXY_MAX_CONTENT_BLOCKS", 20_000, minimum=1)
PROXY_MAX_STRINGS = env_int("PROXY_MAX_STRINGS", 200_000, minimum=100)
PROXY_MAX_VALUES_PER_REQUEST = env_int("PROXY_MAX_VALUES_PER_REQUEST", 10_000, minimum=1)
# Limits for keys that set none of their own (0: no limit). A key's own value wins, 0 included.
PROXY_DEFAULT_RATE_LIMIT_PER_MINUTE = env_int("PROXY_DEFAULT_RATE_LIMIT_PER_MINUTE", 600, minimum=0)
PROXY_DEFAULT_MAX_CONCURRENT_STREAMS = env_int(
    "PROXY_DEFAULT_MAX_CONCURRENT_STREAMS", 20, minimum=0
)
# CPU seconds a minute one key's large requests may take (parsing, scanning, masking off the
# event loop), across all processes; past it, 429 until the minute ends. 0: no limit.
PROXY_KEY_CPU_SECONDS_PER_MINUTE = env_float("PROXY_KEY_CPU_SECONDS_PER_MINUTE", 20.0, minimum=0.0)
# What a client may make a worker hold and wait for while it sends a request, before Django
# sees it: kept by config.http.BoundedHttpProtocol (uvicorn --http config.http:BoundedHttpProtocol
# --ws none).
# A request line and header fields over HTTP_MAX_HEADER_BYTES, or more than HTTP_MAX_HEADERS
# fields, get 431; a head not complete within HTTP_HEADER_TIMEOUT_SECONDS, or a body that brings
# less than HTTP_BODY_MIN_BYTES_PER_SECOND in a window of HTTP_BODY_TIMEOUT_SECONDS, gets 408.
# A request arriving while its worker holds more than HTTP_MAX_CONCURRENCY connections, or that
# many requests in progress, gets 503.
HTTP_MAX_HEADER_BYTES = env_int("HTTP_MAX_HEADER_BYTES", 64 * 1024, minimum=1024)
HTTP_MAX_HEADERS = env_int("HTTP_MAX_HEADERS", 100, minimum=1)
HTTP_HEADER_TIMEOUT_SECONDS = env_float("HTTP_HEADER_TIMEOUT_SECONDS", 10.0, minimum=0.1)
HTTP_BODY_TIMEOUT_SECONDS = env_float("HTTP_BODY_TIMEOUT_SECONDS", 20.0, minimum=0.1)
HTTP_BODY_MIN_BYTES_PER_SECOND = env_int("HTTP_BODY_MIN_BYTES_PER_SECOND", 500, minimum=0)


def _open_files_share() -> int:
    """Half of the file descriptors a worker may open, less a reserve; 0 (no cap) if unlimited.

    Each request in progress holds two: the client's connection and one to the provider. The
    reserve is for the rest: the listening socket, the Redis and database pools, log files.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 0
    return max(1, (soft - 64) // 2)


HTTP_MAX_CONCURRENCY = env_int("HTTP_MAX_CONCURRENCY", _open_files_share(), minimum=0)

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(
        f"LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL; got {LOG_LEVEL!r}"
    )

LOG_FORMAT = env_str("LOG_FORMAT", "text").lower()
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json; got {LOG_FORMAT!r}")
# LiteLLM's own records describe requests (DEBUG ones include their contents and headers):
# they have a level of their own, never below INFO.
LITELLM_LOG_LEVEL = env_str("LITELLM_LOG_LEVEL", "WARNING").upper()
if LITELLM_LOG_LEVEL not in {"INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(
        "LITELLM_LOG_LEVEL must be one of INFO, WARNING, ERROR, CRITICAL; "
        f"got {LITELLM_LOG_LEVEL!r}"
    )

# One handler, on the root logger: every other logger propagates to it, so no line is ever
# written twice however often logging is configured.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "config.logging.RequestIdFilter"},
        "safe_paths": {"()": "config.logging.SafePathFilter"},
    },
    "formatters": {
        # The classic line format: 2025-08-22 12:44:30,695 - module - INFO - message
        "text": {"format": "%(asctime)s - %(name)s - %(levelname)s - %(message)s"},
        "json": {"()": "config.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id", "safe_paths"],
        },
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "config": {"level": LOG_LEVEL},
        "patterns": {"level": LOG_LEVEL},
        "proxy": {"level": LOG_LEVEL},
        "django": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "LiteLLM": {"level": LITELLM_LOG_LEVEL},
        # Its pass-through logger reports a failed cost look-up for every unpriced model name.
        "LiteLLM Proxy": {"level": "CRITICAL"},
        "LiteLLM Router": {"level": LITELLM_LOG_LEVEL},
    },
}
