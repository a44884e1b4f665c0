"""Which clients are trusted: the networks of ``[smsd] trusted_networks``.

Every channel asks the same question (may this client submit without logging
in?), so the parsing and the matching live here once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(cidrs: Iterable[str]) -> list[Network]:
    """``["127.0.0.1/32", "10.0.0.0/8"]`` as networks (the config checked them)."""
    return [ipaddress.ip_network(n, strict=False) for n in cidrs]


def is_trusted(host: str, trusted: Sequence[Network]) -> bool:
    """Is the client at ``host`` (an address, IPv4-mapped or with a zone) in ``trusted``?"""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in net for net in trusted)
