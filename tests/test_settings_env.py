"""Tests of the environment readers in config/env.py and of settings built with them (no
database, no Redis)."""

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_float, env_int, env_list, env_secret, env_str
from tests.support.processes import in_fresh_interpreter

VAR = "MASKPROXY_TEST_VARIABLE"
FORMER = "MASKPROXY_TEST_FORMER_NAME"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (VAR, f"{VAR}_FILE", FORMER, f"{FORMER}_FILE"):
        monkeypatch.delenv(name, raising=False)


def test_str_returns_value_or_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_str(VAR, "fallback") == "fallback"
    monkeypatch.setenv(VAR, "  value  ")
    assert env_str(VAR, "fallback") == "value"


def test_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, "  ")
    assert env_str(VAR, "fallback") == "fallback"
    assert env_bool(VAR, True) is True
    assert env_int(VAR, 7) == 7
    assert env_list(VAR, ["a"]) == ["a"]
    assert env_secret(VAR) is None


@pytest.mark.parametrize("raw", ["true", "TRUE", "1", "yes", "Yes", "on", " On "])
def test_bool_true_spellings(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(VAR, raw)
    assert env_bool(VAR, False) is True


@pytest.mark.parametrize("raw", ["false", "False", "0", "no", "NO", "off", "Off"])
def test_bool_false_spellings(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(VAR, raw)
    assert env_bool(VAR, True) is False


def test_bool_default_when_unset() -> None:
    assert env_bool(VAR, True) is True
    assert env_bool(VAR, False) is False


@pytest.mark.parametrize("raw", ["maybe", "2", "tru", "y"])
def test_bool_rejects_other_values_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv(VAR, raw)
    with pytest.raises(ImproperlyConfigured, match=VAR):
        env_bool(VAR, False)


def test_int_parses_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_int(VAR, 604800) == 604800
    monkeypatch.setenv(VAR, "3600")
    assert env_int(VAR, 604800) == 3600


def test_int_accepts_the_minimum_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, "60")
    assert env_int(VAR, 604800, minimum=60) == 60


def test_int_below_minimum_is_rejected_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(VAR, "59")
    with pytest.raises(ImproperlyConfigured, match=rf"{VAR} must be at least 60"):
        env_int(VAR, 604800, minimum=60)


@pytest.mark.parametrize("raw", ["ten", "1.5", "1e3", "0x10"])
def test_int_rejects_non_integers_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv(VAR, raw)
    with pytest.raises(ImproperlyConfigured, match=VAR):
        env_int(VAR, 1)


def test_float_parses_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_float(VAR, 2.0) == 2.0
    monkeypatch.setenv(VAR, "0.5")
    assert env_float(VAR, 2.0, minimum=0.1) == 0.5


@pytest.mark.parametrize("raw", ["fast", "nan", "inf", "0.01"])
def test_float_rejects_bad_values_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv(VAR, raw)
    with pytest.raises(ImproperlyConfigured, match=VAR):
        env_float(VAR, 2.0, minimum=0.1)


def test_list_splits_on_commas_and_drops_empty_items(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_list(VAR, ["localhost"]) == ["localhost"]
    monkeypatch.setenv(VAR, " example.com, ,[::1],127.0.0.1 ,")
    assert env_list(VAR, ["localhost"]) == ["example.com", "[::1]", "127.0.0.1"]


def test_list_default_is_copied() -> None:
    default = ["localhost"]
    result = env_list(VAR, default)
    result.append("changed")
    assert default == ["localhost"]


def test_secret_is_none_when_neither_variable_is_set() -> None:
    assert env_secret(VAR) is None


def test_secret_reads_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, "s3cret")
    assert env_secret(VAR) == "s3cret"


def test_secret_reads_the_file_stripped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n", encoding="utf-8")
    monkeypatch.setenv(f"{VAR}_FILE", str(secret_file))
    assert env_secret(VAR) == "from-a-file"


def test_secret_variable_wins_over_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file", encoding="utf-8")
    monkeypatch.setenv(VAR, "from-the-environment")
    monkeypatch.setenv(f"{VAR}_FILE", str(secret_file))
    assert env_secret(VAR) == "from-the-environment"


def test_secret_missing_file_is_rejected_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(f"{VAR}_FILE", str(tmp_path / "absent"))
    with pytest.raises(ImproperlyConfigured, match=f"{VAR}_FILE"):
        env_secret(VAR)


def test_secret_empty_file_is_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(" \n", encoding="utf-8")
    monkeypatch.setenv(f"{VAR}_FILE", str(secret_file))
    with pytest.raises(ImproperlyConfigured, match=rf"{VAR}_FILE: .* is empty"):
        env_secret(VAR)


def test_secret_former_name_is_read_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(FORMER, "old-name-secret")
    assert env_secret(VAR, formerly=FORMER) == "old-name-secret"
    assert f"{FORMER} is deprecated: set {VAR} (or {VAR}_FILE) instead" in caplog.text
    assert "old-name-secret" not in caplog.text


def test_secret_former_name_file_is_read_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-the-old-file\n", encoding="utf-8")
    monkeypatch.setenv(f"{FORMER}_FILE", str(secret))
    assert env_secret(VAR, formerly=FORMER) == "from-the-old-file"
    assert f"{FORMER}_FILE is deprecated" in caplog.text


def test_secret_new_name_alone_is_read_without_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(VAR, "new-name-secret")
    assert env_secret(VAR, formerly=FORMER) == "new-name-secret"
    assert caplog.records == []


@pytest.mark.parametrize("new", [VAR, f"{VAR}_FILE"])
@pytest.mark.parametrize("old", [FORMER, f"{FORMER}_FILE"])
def test_secret_set_under_both_names_is_refused_naming_both(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, new: str, old: str
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("in-a-file", encoding="utf-8")
    for name in (new, old):
        monkeypatch.setenv(name, str(secret) if name.endswith("_FILE") else "a-secret")
    with pytest.raises(ImproperlyConfigured) as refused:
        env_secret(VAR, formerly=FORMER)
    message = str(refused.value)
    assert f"{new} and {old} are both set" in message
    assert "a-secret" not in message and "in-a-file" not in message


def _with_secret(**overrides: str) -> dict[str, str]:
    return {"SECRET_KEY": "test-only-secret-key-never-deployed", **overrides}


def _import_settings(**overrides: str) -> subprocess.CompletedProcess[str]:
    """Import config.settings in a fresh interpreter with no settings variables but overrides."""
    dropped = {"DJANGO_DEBUG", "SECRET_KEY", "SECRET_KEY_FILE"}.__contains__
    return in_fresh_interpreter("import config.settings", dropped, **overrides)


def test_settings_refuse_to_load_without_secret_key_when_debug_is_off() -> None:
    result = _import_settings()
    assert result.returncode != 0
    assert "SECRET_KEY (or SECRET_KEY_FILE) must be set when DJANGO_DEBUG is off" in result.stderr


def test_settings_load_without_secret_key_in_debug() -> None:
    result = _import_settings(DJANGO_DEBUG="true")
    assert result.returncode == 0, result.stderr


MASTER_KEY_VARIABLES = {
    "PROXY_MASTER_KEY",
    "PROXY_MASTER_KEY_FILE",
    "LITELLM_MASTER_KEY",
    "LITELLM_MASTER_KEY_FILE",
}


def _master_key(**overrides: str) -> subprocess.CompletedProcess[str]:
    """settings.PROXY_MASTER_KEY as JSON, from a fresh interpreter with no master key
    variable but overrides."""
    code = "import json, config.settings as s; print(json.dumps(s.PROXY_MASTER_KEY))"
    return in_fresh_interpreter(
        code, MASTER_KEY_VARIABLES.__contains__, **_with_secret(**overrides)
    )


def test_master_key_is_read_from_proxy_master_key() -> None:
    result = _master_key(PROXY_MASTER_KEY="sk-new-name")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == "sk-new-name"
    assert "deprecated" not in result.stderr


def test_master_key_is_none_by_default() -> None:
    result = _master_key()
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) is None


def test_litellm_master_key_is_still_accepted_with_a_deprecation_warning() -> None:
    result = _master_key(LITELLM_MASTER_KEY="sk-old-name")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == "sk-old-name"
    assert "LITELLM_MASTER_KEY is deprecated: set PROXY_MASTER_KEY" in result.stderr
    assert "sk-old-name" not in result.stderr


def test_master_key_under_both_names_is_refused() -> None:
    result = _master_key(PROXY_MASTER_KEY="sk-new-name", LITELLM_MASTER_KEY="sk-old-name")
    assert result.returncode != 0
    assert "PROXY_MASTER_KEY and LITELLM_MASTER_KEY are both set" in result.stderr
    assert "sk-new-name" not in result.stderr and "sk-old-name" not in result.stderr


def _default_database(**overrides: str) -> subprocess.CompletedProcess[str]:
    """DATABASES["default"] as JSON, from config.settings in a fresh interpreter."""
    code = "import json, config.settings as s; print(json.dumps(s.DATABASES['default']))"
    return in_fresh_interpreter(
        code, lambda name: name.startswith("DATABASE_"), **_with_secret(**overrides)
    )


def _database(**overrides: str) -> dict[str, Any]:
    result = _default_database(**overrides)
    assert result.returncode == 0, result.stderr
    database: dict[str, Any] = json.loads(result.stdout)
    return database


POSTGRES_URL = "postgres://maskproxy:pw@db.internal:5432/maskproxy"


def test_postgresql_gets_a_checked_connection_pool_by_default() -> None:
    database = _database(DATABASE_URL=POSTGRES_URL)
    assert database["OPTIONS"]["pool"] == {"min_size": 1, "max_size": 10}
    assert database["CONN_HEALTH_CHECKS"] is True
    # Django refuses a pool with persistent connections.
    assert database["CONN_MAX_AGE"] == 0


def test_database_pool_max_size_sizes_the_pool_and_zero_turns_it_off() -> None:
    sized = _database(DATABASE_URL=POSTGRES_URL, DATABASE_POOL_MAX_SIZE="3")
    assert sized["OPTIONS"]["pool"] == {"min_size": 1, "max_size": 3}
    off = _database(DATABASE_URL=POSTGRES_URL, DATABASE_POOL_MAX_SIZE="0")
    assert "pool" not in off.get("OPTIONS", {})
    assert (off["CONN_MAX_AGE"], off["CONN_HEALTH_CHECKS"]) == (0, False)


def test_sqlite_never_gets_a_pool() -> None:
    database = _database(DATABASE_URL="sqlite:///db.sqlite3", DATABASE_POOL_MAX_SIZE="5")
    assert database["OPTIONS"] == {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }


def test_a_negative_pool_size_is_refused() -> None:
    result = _default_database(DATABASE_URL=POSTGRES_URL, DATABASE_POOL_MAX_SIZE="-1")
    assert result.returncode != 0
    assert "DATABASE_POOL_MAX_SIZE must be at least 0; got -1" in result.stderr


def _caches(**overrides: str) -> subprocess.CompletedProcess[str]:
    """CACHES["default"] and REDIS_WAIT_REPLICAS as JSON, from config.settings afresh."""
    code = (
        "import json, config.settings as s; "
        "print(json.dumps([s.CACHES['default'], s.REDIS_WAIT_REPLICAS]))"
    )
    return in_fresh_interpreter(
        code, lambda name: name.startswith("REDIS_"), **_with_secret(**overrides)
    )


def _cache(**overrides: str) -> dict[str, Any]:
    result = _caches(**overrides)
    assert result.returncode == 0, result.stderr
    cache: dict[str, Any] = json.loads(result.stdout)[0]
    return cache


def test_single_redis_is_the_default_without_sentinels() -> None:
    cache = _cache(REDIS_URL="rediss://:pw@redis.internal:6380/2")
    assert cache["LOCATION"] == "rediss://:pw@redis.internal:6380/2"
    assert "CONNECTION_FACTORY" not in cache["OPTIONS"]
    assert "SENTINELS" not in cache["OPTIONS"]


def test_redis_url_can_come_from_a_file(tmp_path: Path) -> None:
    url_file = tmp_path / "redis-url"
    url_file.write_text("rediss://:secret@redis.internal:6380/0\n", encoding="utf-8")
    assert _cache(REDIS_URL_FILE=str(url_file))["LOCATION"] == (
        "rediss://:secret@redis.internal:6380/0"
    )


def test_sentinels_configure_django_redis_for_the_named_master(tmp_path: Path) -> None:
    password_file = tmp_path / "sentinel-password"
    password_file.write_text("s3ntinel\n", encoding="utf-8")
    cache = _cache(
        REDIS_URL="redis://:pw@ignored.example:6379/3",
        REDIS_SENTINELS="10.0.0.1:26379, sentinel-b.internal:26380",
        REDIS_SENTINEL_MASTER="maskproxy",
        REDIS_SENTINEL_PASSWORD_FILE=str(password_file),
        REDIS_SOCKET_TIMEOUT="0.5",
    )
    assert cache["LOCATION"] == "redis://:pw@maskproxy/3"
    options = cache["OPTIONS"]
    assert options["CONNECTION_FACTORY"] == "django_redis.pool.SentinelConnectionFactory"
    assert options["SENTINELS"] == [["10.0.0.1", 26379], ["sentinel-b.internal", 26380]]
    assert options["SENTINEL_KWARGS"] == {
        "socket_connect_timeout": 0.5,
        "socket_timeout": 0.5,
        "password": "s3ntinel",
    }


def test_sentinel_master_defaults_to_mymaster() -> None:
    assert _cache(REDIS_SENTINELS="127.0.0.1:26379")["LOCATION"] == "redis://mymaster/0"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"REDIS_SENTINELS": "10.0.0.1"}, "REDIS_SENTINELS: '10.0.0.1' is not host:port"),
        ({"REDIS_SENTINELS": "h:99999"}, "REDIS_SENTINELS: 'h:99999' is not host:port"),
        (
            {"REDIS_SENTINELS": "h:26379", "REDIS_SENTINEL_MASTER": "MyMaster"},
            "REDIS_SENTINEL_MASTER must be lowercase",
        ),
        (
            {"REDIS_SENTINELS": "h:26379", "REDIS_URL": "rediss://m/0"},
            "With REDIS_SENTINELS, REDIS_URL must start with redis://",
        ),
        ({"REDIS_WAIT_REPLICAS": "-1"}, "REDIS_WAIT_REPLICAS must be at least 0; got -1"),
    ],
)
def test_bad_redis_settings_are_refused(overrides: dict[str, str], message: str) -> None:
    result = _caches(**overrides)
    assert result.returncode != 0
    assert message in result.stderr


def test_wait_replicas_is_off_by_default() -> None:
    result = _caches()
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[1] == 0


def _health_settings(**overrides: str) -> subprocess.CompletedProcess[str]:
    """HEALTH_DEEP_OPEN and HEALTH_PROBE_CACHE_SECONDS as JSON, from a fresh interpreter."""
    code = (
        "import json, config.settings as s; "
        "print(json.dumps([s.HEALTH_DEEP_OPEN, s.HEALTH_PROBE_CACHE_SECONDS]))"
    )
    return in_fresh_interpreter(
        code, lambda name: name.startswith("HEALTH_"), **_with_secret(**overrides)
    )


def test_the_live_health_probe_is_closed_and_rate_limited_by_default() -> None:
    result = _health_settings()
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [False, 10.0]


def test_a_probe_cache_under_a_second_is_refused() -> None:
    result = _health_settings(HEALTH_PROBE_CACHE_SECONDS="0")
    assert result.returncode != 0
    assert "HEALTH_PROBE_CACHE_SECONDS must be at least 1.0; got 0.0" in result.stderr


def _max_concurrency(open_files: int, **overrides: str) -> subprocess.CompletedProcess[str]:
    """HTTP_MAX_CONCURRENCY from a fresh interpreter whose open-file limit is `open_files`."""
    code = (
        "import resource; "
        "_, hard = resource.getrlimit(resource.RLIMIT_NOFILE); "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({open_files}, hard)); "
        "import config.settings as s; print(s.HTTP_MAX_CONCURRENCY)"
    )
    return in_fresh_interpreter(
        code, lambda name: name == "HTTP_MAX_CONCURRENCY", **_with_secret(**overrides)
    )


@pytest.mark.parametrize(("open_files", "cap"), [(1024, 480), (4096, 2016), (100, 18)])
def test_the_concurrency_cap_defaults_to_half_the_open_files_less_a_reserve(
    open_files: int, cap: int
) -> None:
    result = _max_concurrency(open_files)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == cap


def test_a_concurrency_cap_of_zero_is_none_and_a_negative_one_is_refused() -> None:
    off = _max_concurrency(1024, HTTP_MAX_CONCURRENCY="0")
    assert (off.returncode, off.stdout.strip()) == (0, "0"), off.stderr
    negative = _max_concurrency(1024, HTTP_MAX_CONCURRENCY="-1")
    assert negative.returncode != 0
    assert "HTTP_MAX_CONCURRENCY must be at least 0; got -1" in negative.stderr
