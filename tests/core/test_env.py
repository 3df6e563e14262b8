"""Configuration from the environment is parsed strictly: a bad value is an error, not a guess."""
import pytest
from django.core.exceptions import ImproperlyConfigured

from core.env import (
    env_bool,
    env_choice,
    env_database,
    env_hosts,
    env_int,
    env_list,
    env_log_level,
    env_rate,
    env_time_zone,
    env_url,
)


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("FALSE", False), ("1", True), ("0", False), ("yes", True), ("off", False)])
def test_it_parses_booleans(monkeypatch, raw, expected):
    monkeypatch.setenv("FLAG", raw)
    assert env_bool("FLAG", not expected) is expected


def test_it_uses_the_default_when_unset(monkeypatch):
    monkeypatch.delenv("FLAG", raising=False)
    assert env_bool("FLAG", True) is True


@pytest.mark.parametrize("raw", ["treu", "2", "enabled"])
def test_it_refuses_a_bad_boolean(monkeypatch, raw):
    monkeypatch.setenv("FLAG", raw)
    with pytest.raises(ImproperlyConfigured, match="FLAG"):
        env_bool("FLAG", False)


def test_it_refuses_a_week_start_other_than_monday_or_sunday(monkeypatch):
    monkeypatch.setenv("ANALYTICS_WEEK_START", "tuesday")
    with pytest.raises(ImproperlyConfigured, match="monday, sunday"):
        env_choice("ANALYTICS_WEEK_START", "monday", ("monday", "sunday"))


def test_it_refuses_an_unknown_time_zone(monkeypatch):
    monkeypatch.setenv("ANALYTICS_TIME_ZONE", "Mars/Olympus_Mons")
    with pytest.raises(ImproperlyConfigured, match="IANA"):
        env_time_zone("ANALYTICS_TIME_ZONE", "UTC")


def test_it_refuses_a_host_list_with_an_empty_item(monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOWED_HOSTS", "localhost,,example.com")
    with pytest.raises(ImproperlyConfigured):
        env_list("DJANGO_ALLOWED_HOSTS", "localhost")


@pytest.mark.parametrize("raw", ["10/min", "10/minute", "10/m", "5/s", "5/sec", "5/second", "100/h", "100/hour", "1000/d", "1000/day"])
def test_it_takes_drf_rates(monkeypatch, raw):
    monkeypatch.setenv("AUTH_THROTTLE_RATE", raw)
    assert env_rate("AUTH_THROTTLE_RATE", "10/min") == raw


@pytest.mark.parametrize("raw", ["lots", "10", "10/", "/min", "0/min", "10/mxyz", "10/minutes", "ten/min", "\u0661\u0660/min", "10 / min", "-1/min"])
def test_it_refuses_a_rate_drf_would_crash_on_or_reinterpret(monkeypatch, raw):
    monkeypatch.setenv("AUTH_THROTTLE_RATE", raw)
    with pytest.raises(ImproperlyConfigured, match="AUTH_THROTTLE_RATE"):
        env_rate("AUTH_THROTTLE_RATE", "10/min")


def test_it_takes_a_log_level_in_any_case(monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "warning")
    assert env_log_level("LOG_LEVEL", "INFO") == "WARNING"


@pytest.mark.parametrize("raw", ["LOUD", "5", "TRACE", "WARN"])
def test_it_refuses_an_unknown_log_level_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv("LOG_LEVEL", raw)
    with pytest.raises(ImproperlyConfigured, match="LOG_LEVEL"):
        env_log_level("LOG_LEVEL", "INFO")


@pytest.mark.parametrize("raw", ["\u0661\u0662", "\uff11\uff12", "1_000", "+5", "5.0", "1e3", "99999999999"])
def test_it_refuses_integers_that_int_would_take(monkeypatch, raw):
    monkeypatch.setenv("SIZE", raw)
    with pytest.raises(ImproperlyConfigured, match="SIZE"):
        env_int("SIZE", 1)


def test_it_takes_an_ascii_integer(monkeypatch):
    monkeypatch.setenv("SIZE", "042")
    assert env_int("SIZE", 1) == 42


@pytest.mark.parametrize("raw", ["redis://127.0.0.1:6379/0", "rediss://:pw@cache:6380", "unix:///run/redis.sock", "redis://cache/"])
def test_it_takes_redis_urls(monkeypatch, raw):
    monkeypatch.setenv("REDIS_URL", raw)
    assert env_url("REDIS_URL", None, ("redis", "rediss", "unix"), redis_db=True) == raw


@pytest.mark.parametrize("raw", ["localhost:6379", "http://cache:6379", "redis://", "redis://cache:port/0", "redis://cache/db1", "unix://"])
def test_it_refuses_urls_redis_would_fail_on_later(monkeypatch, raw):
    monkeypatch.setenv("REDIS_URL", raw)
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL"):
        env_url("REDIS_URL", None, ("redis", "rediss", "unix"), redis_db=True)


def test_an_unset_url_without_default_is_none(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert env_url("REDIS_URL", None, ("redis",)) is None


@pytest.mark.parametrize("raw", ["lots", "mysql://u@h/db", "postgres://", "postgres://u@h:port/db"])
def test_it_refuses_database_urls_this_project_cannot_run_on(monkeypatch, raw):
    monkeypatch.setenv("DATABASE_URL", raw)
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        env_database("DATABASE_URL", "sqlite:///db.sqlite3")


@pytest.mark.parametrize("raw", ["https://ledger.example.com", "ledger.example.com:443", "ledger.example.com/api", "a b", "-bad.example.com"])
def test_it_refuses_allowed_hosts_that_can_never_match(monkeypatch, raw):
    monkeypatch.setenv("DJANGO_ALLOWED_HOSTS", f"localhost,{raw}")
    with pytest.raises(ImproperlyConfigured, match="DJANGO_ALLOWED_HOSTS"):
        env_hosts("DJANGO_ALLOWED_HOSTS", "localhost")


def test_it_takes_host_names_subdomain_patterns_and_addresses(monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOWED_HOSTS", "ledger.example.com,.example.org,10.0.0.5,[::1],*")
    assert env_hosts("DJANGO_ALLOWED_HOSTS", "localhost") == ["ledger.example.com", ".example.org", "10.0.0.5", "[::1]", "*"]


def test_production_settings_refuse_the_dev_secret_key():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "import core.settings"],
        # No local env file either: a checkout where `make run` ran has a key in .env.local.
        env={"PATH": "", "DJANGO_DEBUG": "false", "DJANGO_ENV_FILE": "/dev/null"},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr
