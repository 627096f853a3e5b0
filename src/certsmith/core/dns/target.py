"""Where a DNS-01 challenge record is written and which servers must show it: value objects.

Names are lowercase and absolute, without the trailing dot. Pure: no I/O (the lookups that
fill these in are in :mod:`certsmith.core.dns.locate`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Nameserver:
    """One address of one authoritative server: ``ns1.example.org`` at ``127.53.1.1``
    (queried on port 53)."""

    name: str
    address: str

    def __str__(self) -> str:
        return f"{self.name} ({self.address})"


@dataclass(frozen=True)
class Target:
    """Where the TXT record for one identifier goes, and who serves it.

    ``domain`` is the identifier (a wildcard's base: ``example.org`` for ``*.example.org``),
    ``record`` is ``_acme-challenge.<domain>``, ``fqdn`` where the TXT is written (the record,
    or where its CNAME chain or the alias points), ``zone`` the zone holding ``fqdn``,
    ``servers`` every address of every authoritative server of ``zone``, ``primary`` the
    first address of the SOA's MNAME (for RFC 2136 updates; None if it has none), ``cname``
    the CNAME chain followed from ``record`` (empty if none)."""

    domain: str
    record: str
    fqdn: str
    zone: str
    servers: tuple[Nameserver, ...]
    primary: str | None
    cname: tuple[str, ...] = ()
