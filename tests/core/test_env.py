"""Configuration from the environment is parsed strictly: a bad value is an error, not a guess."""
import pytest
from django.core.exceptions import ImproperlyConfigured

from core.env import env_bool, env_choice, env_list, env_time_zone


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


def test_production_settings_refuse_the_dev_secret_key():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "import core.settings"],
        env={"PATH": "", "DJANGO_DEBUG": "false"},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr
