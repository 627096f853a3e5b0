"""The DNS provider seam: what the DNS-01 solver needs from whatever holds the zone.

Names are lowercase, absolute and without a trailing dot (``_acme-challenge.example.org``, zone
``example.org``). Every failure a user can cause raises :class:`certsmith.errors.DnsError` (or
``UsageError`` for configuration) with one line that names the provider by its ``label``.
"""

from __future__ import annotations

from typing import Protocol


class DnsProvider(Protocol):
    @property
    def label(self) -> str:
        """The provider in messages: ``RFC 2136 at 127.0.0.1:53 (key acme-update)``,
        ``lexicon powerdns``, ``hook /usr/local/bin/x``."""
        ...

    @property
    def appends(self) -> bool:
        """True when adding a second value at a name keeps the first (two names of one order
        may share ``_acme-challenge.NAME``); False when it does not or is not known."""
        ...

    def prepare(self) -> None:
        """Check the configuration without touching DNS (key file readable and parsed,
        credentials present)."""
        ...

    def add_txt(self, zone: str, fqdn: str, value: str, ttl: int) -> None:
        """Add ``value`` to the TXT records at ``fqdn`` (in ``zone``)."""
        ...

    def remove_txt(self, zone: str, fqdn: str, value: str) -> None:
        """Remove exactly ``value``; other TXT values at ``fqdn`` stay; an absent value is no
        error."""
        ...

    def list_txt(self, zone: str, fqdn: str) -> set[str] | None:
        """The TXT values the provider holds at ``fqdn`` now, or None if it cannot tell."""
        ...
