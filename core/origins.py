"""Web origins (scheme://host[:port]): strict parsing for settings, exact comparison for the handshake.

Imported by core/settings.py (and realtime.auth), so nothing here may touch models or app-level Django state.
"""
from __future__ import annotations

import os
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(value: str) -> str | None:
    """`scheme://host[:port]` in canonical form (lower case, no default port); None if `value` is not one.

    An origin has no user info, path, query or fragment: "https://a.example/" is not an origin.
    """
    if not value or value != value.strip() or any(ord(c) < 0x21 or ord(c) > 0x7E for c in value):
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in SCHEMES or not host or parts.username is not None or parts.password is not None:
        return None
    if parts.path or parts.query or parts.fragment or "?" in value or "#" in value:
        return None
    if value.endswith(":"):  # "http://host:" is not canonical and hides a missing port
        return None
    if ":" in host:  # IPv6 literal: urlsplit strips the brackets
        host = f"[{host}]"
    if port is None or port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def parse_origins(name: str, value: str | None) -> list[str]:
    """A comma-separated list of origins, each normalized; ImproperlyConfigured naming `name` otherwise."""
    if value is None or value.strip() == "":
        return []
    origins = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            raise ImproperlyConfigured(f"{name}={value!r} has an empty item")
        origin = normalize_origin(item)
        if origin is None:
            raise ImproperlyConfigured(
                f"{name}: {item!r} is not an origin; write scheme://host[:port] with http or https "
                "and nothing after the host or port (no path, not even '/'), e.g. https://admin.example.com"
            )
        if origin not in origins:
            origins.append(origin)
    return origins


def env_origins(name: str) -> list[str]:
    return parse_origins(name, os.environ.get(name))
