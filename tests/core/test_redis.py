"""Redis topology settings: REDIS_SENTINELS is parsed strictly, and one setting points every client at Sentinel."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from core.env import env_host_ports
from core.redis import broker_url, channel_layer_host, master_params

ROOT = Path(__file__).resolve().parents[2]
BASE_ENV = {
    "PATH": "/usr/bin:/bin",
    "DJANGO_SETTINGS_MODULE": "core.settings",
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "redis-settings-test-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEF",
    "DJANGO_ENV_FILE": "/dev/null",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/unused",
}
SHOW = """
import json, django
django.setup()
from django.conf import settings as s
host = dict(s.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0])
host.pop("retry", None)
print(json.dumps({"broker": s.CELERY_BROKER_URL, "options": s.CELERY_BROKER_TRANSPORT_OPTIONS, "host": host,
                  "cache": s.CACHES["default"].get("OPTIONS", {}), "url": s.REDIS_URL}))
"""


def settings_with(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SHOW], cwd=ROOT, env={**BASE_ENV, **env}, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("127.0.0.1:26379", [("127.0.0.1", 26379)]),
        (" sentinel-a.internal:26379 , 10.0.0.7:26380", [("sentinel-a.internal", 26379), ("10.0.0.7", 26380)]),
        ("[::1]:26379", [("::1", 26379)]),
    ],
)
def test_it_takes_sentinel_addresses(monkeypatch, raw, expected):
    monkeypatch.setenv("REDIS_SENTINELS", raw)
    assert env_host_ports("REDIS_SENTINELS") == expected


@pytest.mark.parametrize(
    "raw",
    ["sentinel-a", "sentinel-a:", ":26379", "sentinel-a:0", "sentinel-a:65536", "sentinel-a:26379,", "sentinel://a:26379",
     "a b:26379", "-a:26379", "sentinel-a:\u0662\u0666\u0663", "*:26379"],
)
def test_it_refuses_a_sentinel_list_redis_would_fail_on_later(monkeypatch, raw):
    monkeypatch.setenv("REDIS_SENTINELS", raw)
    with pytest.raises(ImproperlyConfigured, match="REDIS_SENTINELS"):
        env_host_ports("REDIS_SENTINELS")


def test_no_sentinels_is_an_empty_list(monkeypatch):
    monkeypatch.delenv("REDIS_SENTINELS", raising=False)
    assert env_host_ports("REDIS_SENTINELS") == []


def test_it_reads_the_master_name_as_written_and_the_credentials_and_database():
    name, params = master_params("rediss://app:p%40ss@LedgerMaster/4")
    assert name == "LedgerMaster"  # Sentinel names are case-sensitive
    assert params == {"db": 4, "username": "app", "password": "p@ss", "ssl": True}


def test_it_gives_kombu_one_sentinel_url_per_sentinel_with_the_masters_credentials_and_database():
    url = broker_url("redis://:secret@mymaster/3", [("10.0.0.1", 26379), ("::1", 26380)])
    assert url == "sentinel://:secret@10.0.0.1:26379/3;sentinel://:secret@[::1]:26380/3"


def test_without_sentinels_every_client_uses_redis_url_itself():
    assert broker_url("redis://10.0.0.1:6379/2", []) == "redis://10.0.0.1:6379/2"
    assert channel_layer_host("redis://10.0.0.1:6379/2", [], socket_timeout=30) == {"address": "redis://10.0.0.1:6379/2", "socket_timeout": 30}


def test_sentinel_settings_point_the_channel_layer_the_broker_and_the_cache_at_the_named_master():
    result = settings_with(REDIS_SENTINELS="10.0.0.1:26379,10.0.0.2:26379", REDIS_URL="redis://mymaster/2")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["broker"] == "sentinel://10.0.0.1:26379/2;sentinel://10.0.0.2:26379/2"
    assert shown["options"]["master_name"] == "mymaster"
    assert shown["host"]["master_name"] == "mymaster"
    assert shown["host"]["sentinels"] == [["10.0.0.1", 26379], ["10.0.0.2", 26379]]
    assert shown["host"]["db"] == 2 and "address" not in shown["host"]
    assert shown["cache"] == {"pool_class": "core.redis.SentinelCachePool", "sentinels": [["10.0.0.1", 26379], ["10.0.0.2", 26379]]}


def test_plain_settings_stay_as_they_were():
    shown = json.loads(settings_with(REDIS_URL="redis://10.0.0.1:6379/2").stdout)
    assert shown["broker"] == "redis://10.0.0.1:6379/2"
    assert "master_name" not in shown["options"]
    assert shown["host"]["address"] == "redis://10.0.0.1:6379/2"
    assert shown["cache"] == {}


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REDIS_SENTINELS": "10.0.0.1:26379"}, "REDIS_URL"),  # which master?
        ({"REDIS_SENTINELS": "10.0.0.1:26379", "REDIS_URL": "redis://mymaster:6379/0"}, "REDIS_URL"),  # an address, not a name
        ({"REDIS_SENTINELS": "10.0.0.1:26379", "REDIS_URL": "unix:///run/redis.sock"}, "REDIS_URL"),
        ({"REDIS_SENTINELS": "10.0.0.1", "REDIS_URL": "redis://mymaster/0"}, "REDIS_SENTINELS"),
    ],
)
def test_a_sentinel_configuration_that_cannot_work_stops_start_up_naming_the_variable(env, named):
    result = settings_with(**env)
    assert result.returncode != 0
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("django.core.exceptions.ImproperlyConfigured:") and named in error, result.stderr
