"""The client's address, the one place that decides it: login lockouts, the token throttle and /readyz use it.

REMOTE_ADDR is the client, unless the peer is one of TRUSTED_PROXIES: then the client is the
right-most X-Forwarded-For entry that is not itself a trusted proxy. Entries left of it were written
by the client and are never believed, so rotating X-Forwarded-For changes nothing.
"""
from __future__ import annotations

import ipaddress
import re

from django.core.exceptions import ImproperlyConfigured

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# "203.0.113.7:51234" and "[2001:db8::1]:443": some proxies append the client's port.
_WITH_PORT = re.compile(r"(?P<v4>[0-9.]+):[0-9]{1,5}|\[(?P<v6>[0-9A-Fa-f:.]+)\](:[0-9]{1,5})?")


def parse_networks(name: str, value: str) -> tuple[Network, ...]:
    """Comma-separated IP addresses or CIDR networks; an empty value is no network."""
    if not value.strip():
        return ()
    networks = []
    for item in value.split(","):
        item = item.strip()
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: {item!r} is not an IP address or network; use comma-separated addresses or CIDRs, e.g. 10.0.0.0/8,192.0.2.10"
            ) from None
    return tuple(networks)


def env_networks(name: str, default: str) -> tuple[Network, ...]:
    import os

    value = os.environ.get(name)
    return parse_networks(name, default if value is None else value)


def parse_address(text: str | None) -> Address | None:
    if not text:
        return None
    text = text.strip()
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        match = _WITH_PORT.fullmatch(text)
        if not match:
            return None
        try:
            address = ipaddress.ip_address(match.group("v4") or match.group("v6"))
        except ValueError:
            return None
    if address.version == 6 and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def in_networks(address: Address | None, networks) -> bool:
    return address is not None and any(address.version == net.version and address in net for net in networks)


def client_address(request) -> Address | None:
    from django.conf import settings

    trusted = settings.TRUSTED_PROXIES
    meta = getattr(request, "META", {})
    peer = parse_address(meta.get("REMOTE_ADDR"))
    if not in_networks(peer, trusted):
        return peer
    client = peer
    forwarded = meta.get("HTTP_X_FORWARDED_FOR", "")
    for entry in reversed([item for item in forwarded.split(",") if item.strip()]):
        address = parse_address(entry)
        if address is None:
            break  # garbage the client wrote: the last proxy we trust is as far as we can see
        client = address
        if not in_networks(address, trusted):
            break
    return client


def client_ip(request) -> str | None:
    """The client's address as text (AXES_CLIENT_IP_CALLABLE, the token throttle's key); None when unknown."""
    address = client_address(request)
    return str(address) if address is not None else None
