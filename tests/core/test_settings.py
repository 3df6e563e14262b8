"""Every constrained variable in docs/operations.md stops start-up with a message naming it when its value is garbage."""
import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Every variable is parsed by the settings module itself, so importing it is the start-up that must
# fail; it takes half the time of django.setup(), and this test starts one interpreter per variable.
SETUP = [sys.executable, "-c", "import core.settings"]
BASE_ENV = {
    "PATH": "/usr/bin:/bin",
    "DJANGO_SETTINGS_MODULE": "core.settings",
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "settings-test-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ",
    # Not the checkout's .env.local (make run's): only what each case sets.
    "DJANGO_ENV_FILE": "/dev/null",
}

# One value per variable that a lenient parser would once have let through (or crashed on later).
GARBAGE = {
    "DATABASE_URL": "lots",
    "REDIS_URL": "localhost:6379",
    "CELERY_BROKER_URL": "http://broker.example.com/",
    "CHANNELS_PREFIX": "ledger pulse",
    "DJANGO_DEBUG": "maybe",
    "DJANGO_ALLOWED_HOSTS": "https://ledger.example.com",
    "DJANGO_SECURE_COOKIES": "sometimes",
    "DJANGO_SSL_REDIRECT": "please",
    "DJANGO_HSTS_SECONDS": "a year",
    "DJANGO_HSTS_INCLUDE_SUBDOMAINS": "all",
    "DJANGO_HSTS_PRELOAD": "yes please",
    "DJANGO_BEHIND_PROXY": "nginx",
    "ANALYTICS_TIME_ZONE": "Mars/Olympus_Mons",
    "ANALYTICS_WEEK_START": "tuesday",
    "PROJECTION_CATCH_UP_SECONDS": "\u0665",
    "CELERY_VISIBILITY_TIMEOUT": "10m",
    "LOG_LEVEL": "LOUD",
    "DATABASE_POOL": "maybe",
    "PROJECTOR_FAST_LANE": "0ff",
    "DATABASE_POOL_SIZE": "0",
    "AUTH_THROTTLE_RATE": "lots",
    "OCCURRED_AT_EARLIEST": "yesterday",
    "OCCURRED_AT_MAX_AHEAD_HOURS": "1e3",
    "READYZ_MAX_PROJECTION_LAG_SECONDS": "-5",
    "EVENT_STORE_LOCK_TIMEOUT_MS": "99999999999",
    "EVENT_STORE_HOLE_GRACE_MS": "-1",
    "EVENT_STORE_HOLE_WAIT_MS": "0",
    "IDEMPOTENCY_LEASE_SECONDS": "ten",
    "DJANGO_ENV_FILE": "/nonexistent/.env.local",
    "LOG_REPEAT_LIMIT": "none",
    "LOG_REPEAT_INTERVAL_SECONDS": "1.5",
    "HTTP_HEADER_TIMEOUT_SECONDS": "0",
    "HTTP_BODY_TIMEOUT_SECONDS": "30s",
    "WEB_CONCURRENCY": "auto",
    "WEB_LIMIT_CONCURRENCY": "-1",
    "WEB_BACKLOG": "100000",
    "WEB_THREADS": "0",
    "LOGIN_FAILURE_LIMIT": "0",
    "LOGIN_LOCKOUT_MINUTES": "15m",
    "TRUSTED_PROXIES": "proxy.internal",
    "READYZ_DETAIL_NETWORKS": "10.0.0.0/33",
    "REDIS_SENTINELS": "sentinel-a",
    "METRICS_ALLOWED_NETWORKS": "everyone",
    "METRICS_TOKEN": "short",
    "METRICS_PORT": "9100/tcp",
    "METRICS_BIND": "localhost",
    "LOG_FORMAT": "xml",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "grpc://collector:4317",
    "OTEL_SERVICE_NAME": "ledger pulse",
    "APPROVAL_DUAL_CONTROL": "EUR:abc",
}
# Free text or a path: any value is a value.
UNCONSTRAINED = {"DJANGO_SECRET_KEY", "DJANGO_STATIC_ROOT", "METRICS_DIR"}

# Values a stricter parser must still accept.
VALID = {
    "DATABASE_URL": "postgres://user:secret@db.internal:5432/ledgerpulse",
    "REDIS_URL": "rediss://:secret@cache.internal:6380/2",
    "CELERY_BROKER_URL": "amqp://guest@mq.internal:5672//",
    "CHANNELS_PREFIX": "lp-staging:eu_1",
    "DJANGO_ALLOWED_HOSTS": "ledger.example.com,.example.org,10.0.0.5,[::1],localhost",
    "DJANGO_HSTS_SECONDS": "31536000",
    "LOG_LEVEL": "warning",
    "AUTH_THROTTLE_RATE": "100/hour",
    "DATABASE_POOL": "off",
    "DATABASE_POOL_SIZE": "4",
    "TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.10,2001:db8::/32",
    "READYZ_DETAIL_NETWORKS": "",
    "LOGIN_FAILURE_LIMIT": "10",
    "LOGIN_LOCKOUT_MINUTES": "60",
    "METRICS_PORT": "0",
    "METRICS_BIND": "::",
    "APPROVAL_DUAL_CONTROL": "EUR:10000, usd:10000.50,JPY:1000000",
}


def documented_variables() -> set[str]:
    text = (ROOT / "docs" / "operations.md").read_text()
    table = text[text.index("| variable | default | meaning |") :].split("\n\n")[0]
    names = set()
    for line in table.splitlines()[2:]:
        names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return names


IMPROPERLY_CONFIGURED = "django.core.exceptions.ImproperlyConfigured: "


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


FULL_SETUP = [sys.executable, "-c", "import django; django.setup()"]


def start(extra: dict, command: list[str] = SETUP) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, env={**BASE_ENV, **extra}, capture_output=True, text=True, timeout=60)


# Forks a fresh start-up per environment from one interpreter that has imported the settings' libraries
# (Redis, Celery, Django: ~90% of an import of core.settings) but none of the project's modules: each child
# gets exactly the case's environment and then runs `import core.settings` as `python -c` would (the
# project's modules, the settings module itself and the env file are all read fresh, after the environment
# is set), and exits 1 with the traceback on stderr if it raises. Which libraries to load is learnt from a
# probe child that imports core.settings with the base environment. The same start-up as `start()` at a
# twentieth of the CPU; test_every_variable_with_garbage_stops_start_up_naming_it checks one case both ways.
FORK_SERVER = r"""
import json, os, sys, tempfile, traceback

root, cases = sys.argv[1], json.load(sys.stdin)


def ours(module):
    path = getattr(module, "__file__", None) or ""
    return path.startswith(root + os.sep) and not path.startswith(sys.prefix + os.sep)


def fork(run):
    output = tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:
        os.dup2(output.fileno(), 2)
        code = 0
        try:
            run()
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stderr.flush()
        os._exit(code)
    return pid, output


def finish(pid, output):
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    output.seek(0)
    return code, output.read().decode(errors="replace")


def probe():
    import core.settings  # noqa: F401
    sys.stderr.write(json.dumps([name for name, m in list(sys.modules.items()) if name != "__main__" and not ours(m)]))


code, libraries = finish(*fork(probe))
if code != 0:
    sys.exit("the base environment does not start:\n" + libraries)
for name in json.loads(libraries):
    try:
        __import__(name)
    except Exception:
        pass  # loaded in each child instead: only slower
leaked = sorted(name for name, m in list(sys.modules.items()) if name != "__main__" and ours(m))
if leaked:
    sys.exit(f"a library imported project modules, so children would not import them fresh: {leaked}")


def start_up(env):
    def run():
        os.environ.clear()
        os.environ.update(env)
        import core.settings  # noqa: F401
    return run


results, running = [], []
for env in cases:
    running.append(fork(start_up(env)))
    if len(running) == 4:
        results.append(finish(*running.pop(0)))
results += [finish(*child) for child in running]
json.dump(results, sys.stdout)
"""


def start_each(cases: list[dict]) -> list[subprocess.CompletedProcess]:
    """What [start(extra) for extra in cases] returns, each case forked from FORK_SERVER."""
    server = subprocess.run(
        [sys.executable, "-c", FORK_SERVER, str(ROOT)], cwd=ROOT, env=BASE_ENV,
        input=json.dumps([{**BASE_ENV, **extra} for extra in cases]), capture_output=True, text=True, timeout=120,
    )
    assert server.returncode == 0, server.stderr
    return [subprocess.CompletedProcess(SETUP, code, "", stderr) for code, stderr in json.loads(server.stdout)]


def test_every_documented_variable_is_covered_here():
    documented = documented_variables()
    assert len(documented) > 20
    assert documented - UNCONSTRAINED <= set(GARBAGE), "add a garbage value for each new constrained variable"


def test_every_variable_with_garbage_stops_start_up_naming_it():
    results = dict(zip(GARBAGE, start_each([{name: value} for name, value in GARBAGE.items()])))
    # The forked start-up is the interpreter's own: one case in a new interpreter stops with the same line.
    alone = start({"DJANGO_HSTS_SECONDS": GARBAGE["DJANGO_HSTS_SECONDS"]})
    assert alone.returncode == results["DJANGO_HSTS_SECONDS"].returncode == 1
    assert last_line(alone.stderr) == last_line(results["DJANGO_HSTS_SECONDS"].stderr)
    silent = [name for name, result in results.items() if result.returncode == 0]
    assert not silent, f"accepted garbage: {silent}"
    messages = {name: last_line(result.stderr) for name, result in results.items()}
    unnamed = {name: message for name, message in messages.items() if not message.startswith(IMPROPERLY_CONFIGURED) or name not in message}
    assert not unnamed, unnamed


def test_the_defaults_and_valid_values_start():
    # Real interpreters, side by side.
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda extra: start(extra, FULL_SETUP), ({}, VALID)))
    for result in results:
        assert result.returncode == 0, result.stderr


def test_a_secret_is_not_echoed_in_the_message():
    result = start({"DATABASE_URL": "postgres://user:hunter2@db.internal:port/ledgerpulse"})
    assert result.returncode != 0 and "DATABASE_URL" in result.stderr
    assert "hunter2" not in result.stderr


# --- APPROVAL_DUAL_CONTROL: per-currency thresholds ----------------------------------------------

BAD_THRESHOLDS = ["EUR:abc", "EUR", "XYZ:10", "EUR:-5", "EUR:0", "EUR:10,eur:20", "JPY:10.5", "EUR:1e3", "EUR:10,", ":10", "EUR:\u0661\u0660"]


def test_every_bad_dual_control_value_stops_start_up_naming_the_variable():
    results = start_each([{"APPROVAL_DUAL_CONTROL": value} for value in BAD_THRESHOLDS])
    for value, result in zip(BAD_THRESHOLDS, results):
        assert result.returncode != 0, f"accepted {value!r}"
        message = last_line(result.stderr)
        assert message.startswith(IMPROPERLY_CONFIGURED) and "APPROVAL_DUAL_CONTROL" in message, (value, message)


@pytest.mark.parametrize("value", BAD_THRESHOLDS)
def test_the_dual_control_parser_refuses_a_bad_value_naming_the_variable(monkeypatch, value):
    from django.core.exceptions import ImproperlyConfigured

    from core.env import env_currency_thresholds

    monkeypatch.setenv("APPROVAL_DUAL_CONTROL", value)
    with pytest.raises(ImproperlyConfigured, match="APPROVAL_DUAL_CONTROL"):
        env_currency_thresholds("APPROVAL_DUAL_CONTROL")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, {}),
        ("", {}),
        ("EUR:10000,USD:10000", {"EUR": "10000.00", "USD": "10000.00"}),  # quantized to the minor unit
        (" eur : 10000.5 , JPY:1000000 ", {"EUR": "10000.50", "JPY": "1000000"}),
        ("KWD:0.001", {"KWD": "0.001"}),
    ],
)
def test_the_dual_control_parser_reads_thresholds_in_major_units_as_decimals(monkeypatch, value, expected):
    from decimal import Decimal

    from core.env import env_currency_thresholds

    if value is None:
        monkeypatch.delenv("APPROVAL_DUAL_CONTROL", raising=False)
    else:
        monkeypatch.setenv("APPROVAL_DUAL_CONTROL", value)
    parsed = env_currency_thresholds("APPROVAL_DUAL_CONTROL")
    assert parsed == {code: Decimal(amount) for code, amount in expected.items()}
    assert all(isinstance(amount, Decimal) for amount in parsed.values())
    assert [str(amount) for amount in parsed.values()] == list(expected.values())
