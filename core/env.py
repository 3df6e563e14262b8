"""Strict parsing of configuration from environment variables: a bad value fails loudly."""
import os
import re
from datetime import date, datetime, timezone
from decimal import Decimal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
# int() also takes "\u0661\u0662", "1_000" and "+5": a setting is written in ASCII digits.
_INTEGER = re.compile(r"-?[0-9]+")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Every integer setting is a count, a size or a duration that PostgreSQL, Redis or Celery
# must accept as a 32-bit int (PostgreSQL's lock_timeout in ms is the tightest).
INT_MAX = 2**31 - 1
# DRF's rate syntax reads only the first letter of the period ("10/mxyz" is a minute):
# accept the spellings it documents, nothing it would silently reinterpret.
_RATE = re.compile(r"([0-9]{1,9})/(s|sec|second|m|min|minute|h|hour|d|day)")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def env_bool(name: str, default: bool) -> bool:
    value = env_str(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean; use true or false")


def env_int(name: str, default: int, *, minimum: int = 0, maximum: int = INT_MAX) -> int:
    value = env_str(name)
    if value is None:
        return default
    if not _INTEGER.fullmatch(value) or len(value) > 12:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer (ASCII digits)")
    number = int(value)
    if number < minimum:
        raise ImproperlyConfigured(f"{name}={value!r} must be at least {minimum}")
    if number > maximum:
        raise ImproperlyConfigured(f"{name}={value!r} must be at most {maximum}")
    return number


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default).lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value


def env_list(name: str, default: str) -> list[str]:
    value = env_str(name, default)
    items = [item.strip() for item in value.split(",")]
    if any(not item for item in items):
        raise ImproperlyConfigured(f"{name}={value!r} has an empty item")
    return items


def env_time_zone(name: str, default: str) -> str:
    value = env_str(name, default)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ImproperlyConfigured(f"{name}={value!r} is not an IANA time zone") from None
    return value


def env_date(name: str, default: str) -> datetime:
    """An ISO date (YYYY-MM-DD, ASCII digits) as an aware datetime at 00:00 UTC."""
    value = env_str(name, default)
    try:
        if not _DATE.fullmatch(value):
            raise ValueError
        day = date.fromisoformat(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a date (YYYY-MM-DD)") from None
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def env_rate(name: str, default: str) -> str:
    """A DRF throttle rate, N/period: 10/min, 100/hour, 5/s."""
    value = env_str(name, default)
    match = _RATE.fullmatch(value)
    if not match or int(match.group(1)) < 1:
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a rate; use N/second, N/minute, N/hour or N/day (or s, sec, m, min, h, d) with N >= 1"
        )
    return value


def env_log_level(name: str, default: str) -> str:
    value = env_str(name, default).upper()
    if value not in LOG_LEVELS:
        raise ImproperlyConfigured(f"{name}={value!r} must be one of {', '.join(LOG_LEVELS)}")
    return value


def env_pattern(name: str, default: str, pattern: str, meaning: str) -> str:
    value = env_str(name, default)
    if not re.fullmatch(pattern, value):
        raise ImproperlyConfigured(f"{name}={value!r} must be {meaning}")
    return value


def env_url(name: str, default: str | None, schemes: tuple[str, ...], *, redis_db: bool = False) -> str | None:
    """A URL with one of `schemes` and a host (or a socket path); None when unset and no default."""
    value = env_str(name, default)
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not a URL: {exc}") from None
    if parts.scheme not in schemes:
        raise ImproperlyConfigured(f"{name} must start with {', '.join(s + '://' for s in schemes)} (got {parts.scheme or 'no scheme'})")
    if parts.scheme == "unix":
        if not parts.path:
            raise ImproperlyConfigured(f"{name} must name a socket path, e.g. unix:///run/redis.sock")
        return value
    if not parts.hostname:
        raise ImproperlyConfigured(f"{name} must name a host, e.g. {parts.scheme}://127.0.0.1:6379/0")
    # redis-py reads the path as the database number and fails only when it first connects.
    if redis_db and parts.scheme in ("redis", "rediss") and parts.path not in ("", "/") and not re.fullmatch(r"/[0-9]{1,5}", parts.path):
        raise ImproperlyConfigured(f"{name}: the path must be a database number, e.g. /0 (got {parts.path!r})")
    return value


# The database backends this project runs on (and ships drivers for).
_ENGINES = ("django.db.backends.postgresql", "django.db.backends.sqlite3")


def env_database(name: str, default: str) -> dict:
    """A dj-database-url URL for PostgreSQL or SQLite, as Django's DATABASES["default"]."""
    import dj_database_url

    value = env_str(name, default)
    try:
        config = dj_database_url.parse(value)
    except Exception as exc:  # noqa: BLE001 - dj-database-url raises several types for a bad URL
        raise ImproperlyConfigured(f"{name} is not a database URL: {exc}") from None
    if config.get("ENGINE") not in _ENGINES:
        raise ImproperlyConfigured(f"{name} must be a postgres:// or sqlite:/// URL (got engine {config.get('ENGINE')!r})")
    if config["ENGINE"] == "django.db.backends.postgresql" and not config.get("NAME"):
        raise ImproperlyConfigured(f"{name} must name a database, e.g. postgres://user@host:5432/ledgerpulse")
    return config


# A host name, ".example.com" (and its subdomains), an IP address, "[::1]" or "*"; a scheme,
# a path or a port never matches a Host header, so such an item only locks everyone out.
_HOST = re.compile(r"\*|\.?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?|\[[0-9A-Fa-f:.]+\]")


def env_hosts(name: str, default: str) -> list[str]:
    hosts = env_list(name, default)
    for host in hosts:
        if not _HOST.fullmatch(host):
            raise ImproperlyConfigured(f"{name}: {host!r} is not a host name (no scheme, port or path: ledger.example.com, .example.com, 10.0.0.5)")
    return hosts


def env_host_ports(name: str) -> list[tuple[str, int]]:
    """A comma-separated list of host:port (a Sentinel's address: a port is required); [] when unset."""
    value = env_str(name)
    if value is None:
        return []
    addresses = []
    for item in env_list(name, value):
        host, colon, port = item.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not colon or not host or not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535:
            raise ImproperlyConfigured(f"{name}: {item!r} is not host:port (e.g. 10.0.0.5:26379, a port from 1 to 65535)")
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|[0-9A-Fa-f:.]+", host):
            raise ImproperlyConfigured(f"{name}: {item!r} does not name a host")
        addresses.append((host, int(port)))
    return addresses


def env_sentinel_master_url(name: str, value: str | None, sentinels_name: str) -> str:
    """With Sentinel, `name` (already parsed by env_url) is redis://[:password@]MASTER_NAME/DB: its host part
    names the master as the Sentinels know it, never an address (Sentinel tells where the master is)."""
    if value is None:
        raise ImproperlyConfigured(f"{sentinels_name} is set, so {name} must be set too: redis://MASTER_NAME/DB, e.g. redis://mymaster/0")
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss") or parts.port is not None:
        raise ImproperlyConfigured(
            f"{sentinels_name} is set, so {name} must be redis://MASTER_NAME/DB (the master's Sentinel name, no port), e.g. redis://mymaster/0"
        )
    return value


def env_currency_thresholds(name: str) -> dict[str, Decimal]:
    """CUR:AMOUNT,... (e.g. EUR:10000,USD:10000) as {"EUR": Decimal("10000"), ...}; {} when unset.

    Each currency an ISO 4217 code, once; each amount a positive decimal in major units with at
    most the currency's minor digits (JPY:10000.5 is refused), in ASCII digits.
    """
    from core.money import MoneyError, normalize_currency, parse_amount  # iso4217 only: safe at settings time

    value = env_str(name)
    if value is None:
        return {}
    thresholds: dict[str, Decimal] = {}
    for item in env_list(name, value):
        code, colon, amount = (part.strip() for part in item.partition(":"))
        if not colon or not code or not amount:
            raise ImproperlyConfigured(f"{name}: {item!r} is not CURRENCY:AMOUNT (e.g. EUR:10000)")
        try:
            currency = normalize_currency(code)
        except MoneyError as exc:
            raise ImproperlyConfigured(f"{name}: {item!r}: {exc}") from None
        if currency in thresholds:
            raise ImproperlyConfigured(f"{name}: {currency} is given twice")
        try:
            thresholds[currency] = parse_amount(amount, currency)
        except MoneyError as exc:
            raise ImproperlyConfigured(f"{name}: {item!r}: bad threshold: {exc}") from None
    return thresholds
