"""Addresses and networks as blocks name them: parsing with clear refusals, the allowlist, and a matcher that
answers "is this client blocked?" in a few set lookups, whatever the number of blocks.

A client address is what the HTTP server put in the ASGI scope (`scope["client"]`): the peer, or the address
in `X-Forwarded-For` only when the peer is one of BOOKWARDEN_TRUSTED_PROXIES (uvicorn's proxy headers, set up
by `bookwarden serve`). The same address keys the sign-in throttle and goes into the audit trail; a block never
reads a header itself, so a client cannot step around one by sending `X-Forwarded-For`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import datetime

from bookwarden.core.errors import InvalidInput

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Never blocked, whatever a jail or an operator asks: the host itself.
LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))
# The widest networks an operator may block at once: a typo like /1 must not shut out half the Internet.
WIDEST = {4: 8, 6: 32}


def parse_network(given: str, *, what: str = "address") -> Network:
    """An address (`203.0.113.5`, `2001:db8::1`) or network (`203.0.113.0/24`) as a network, or InvalidInput.

    Host bits set under a prefix are refused (`203.0.113.5/24`): the operator meant either the address or the
    network, and guessing would block more or less than asked.
    """
    text = given.strip()
    if not text or len(text) > 64 or any(not (c.isalnum() or c in ".:/%") for c in text):
        raise InvalidInput(f"{what}: {_shown(text)} is not an IP address or network (e.g. 203.0.113.5, 2001:db8::/64)")
    try:
        loose = _unmapped(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise InvalidInput(
            f"{what}: {_shown(text)} is not an IP address or network (e.g. 203.0.113.5, 2001:db8::/64)"
        ) from None
    if loose.prefixlen < WIDEST[loose.version]:
        raise InvalidInput(
            f"{what}: /{loose.prefixlen} is wider than a block may be (at most /{WIDEST[loose.version]} "
            f"for IPv{loose.version}); block narrower networks"
        )
    try:
        return _unmapped(ipaddress.ip_network(text, strict=True))
    except ValueError:
        raise InvalidInput(
            f"{what}: {text} has host bits set; give the address alone or the network it starts ({loose})"
        ) from None


def _shown(text: str) -> str:
    # What was typed, shortened and made printable: an error message must not carry a payload back.
    return repr(text[:64])


def _unmapped(network: Network) -> Network:
    # ::ffff:203.0.113.5 is 203.0.113.5 as a dual-stack socket reports it: one address, one block.
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
    return network


def client_address(host: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The scope's client host as an address; None for what is not one (a Unix socket, a test client)."""
    if not host:
        return None
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def offender_network(address: str, ipv6_prefix: int) -> Network | None:
    """The network a jail blocks for an offending address: the address itself, or its /`ipv6_prefix` for
    IPv6 (one customer's block: a single attacker has 2^64 addresses in it). None for a host name."""
    found = client_address(address)
    if found is None:
        return None
    if found.version == 6:
        return ipaddress.ip_network((found, ipv6_prefix), strict=False)
    return ipaddress.ip_network(found)


class Allowlist:
    """Networks never blocked: loopback, the trusted proxies (blocking one would block everyone behind it), and
    BOOKWARDEN_MONITOR_ALLOWLIST."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks = tuple(LOOPBACK) + tuple(
            _unmapped(ipaddress.ip_network(n, strict=False)) for n in networks if n.strip()
        )

    def overlapping(self, network: Network) -> Network | None:
        """The allowlisted network a block of `network` would touch, if any."""
        return next((a for a in self.networks if a.version == network.version and a.overlaps(network)), None)

    def allows(self, address) -> bool:
        return any(address.version == a.version and address in a for a in self.networks)


class Matcher:
    """The active blocks of one moment, looked up by the client's network at each prefix length in use."""

    def __init__(self, blocks: Iterable[tuple[Network, datetime]]) -> None:
        self.by_prefix: dict[tuple[int, int], dict[Network, datetime]] = {}
        for network, expires_at in blocks:
            network = _unmapped(network)
            held = self.by_prefix.setdefault((network.version, network.prefixlen), {})
            held[network] = max(expires_at, held.get(network, expires_at))

    def __len__(self) -> int:
        return sum(len(held) for held in self.by_prefix.values())

    def blocked_until(self, address, now: datetime) -> datetime | None:
        """When the longest active block covering `address` ends; None when none covers it."""
        until = None
        for (version, prefix), held in self.by_prefix.items():
            if version != address.version:
                continue
            expires_at = held.get(ipaddress.ip_network((address, prefix), strict=False))
            if expires_at is not None and expires_at > now and (until is None or expires_at > until):
                until = expires_at
        return until
