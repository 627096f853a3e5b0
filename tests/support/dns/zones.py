"""The zones the DNS fixtures serve: their names, the records tests rely on, and their master
files. Names do not depend on the worker; only the addresses (``127.53.N.x``) do.

BIND (primary ``127.53.N.1``, secondary ``127.53.N.2``):

- ``ZONE`` (``dns.example.org``): NS ``ns1``/``ns2`` (A ``127.53.N.1``/``.2``); ``www`` and the
  apex have A 127.0.0.1. ``KEEP_NAME`` holds an unrelated TXT ``KEEP_TXT`` a cleanup must leave
  alone. ``DELEGATED_CHALLENGE`` (``_acme-challenge.delegated.dns.example.org``) is a CNAME to
  ``DELEGATED_TARGET`` in ``DELEGATE_ZONE``: dns-01 delegation (acme-dns style). ``*.wild``
  (``WILDCARD_OWNER``) is a CNAME to ``WILDCARD_TARGET``, so ``_acme-challenge.<any>.wild...``
  is a wildcard-synthesized CNAME a client must not follow.
- ``DELEGATE_ZONE`` (``acme-delegate.example.net``): where the delegated challenges land; NS are
  ZONE's name servers; ``DELEGATED_TARGET`` and ``WILDCARD_TARGET`` have no records at first.

PowerDNS (``127.53.N.3``):

- ``PDNS_ZONE`` (``pdns.example.org``): NS ``ns1`` (A ``127.53.N.3``), ``www`` A 127.0.0.1,
  ``PDNS_KEEP_NAME`` TXT ``KEEP_TXT``.

SOA timers: refresh one day, so the secondary never refreshes by itself during a run; it gets
new records only when the test asks (``Bind.retransfer()``), and the primary sends no NOTIFY.
"""

from __future__ import annotations

ZONE = "dns.example.org"
DELEGATE_ZONE = "acme-delegate.example.net"
PDNS_ZONE = "pdns.example.org"

KEEP_NAME = f"_acme-challenge.keep.{ZONE}"
KEEP_TXT = "unrelated record: leave me"
DELEGATED_HOST = f"delegated.{ZONE}"
DELEGATED_CHALLENGE = f"_acme-challenge.{DELEGATED_HOST}"
DELEGATED_TARGET = f"delegated.{DELEGATE_ZONE}"
WILDCARD_PARENT = f"wild.{ZONE}"
WILDCARD_OWNER = f"*.{WILDCARD_PARENT}"
WILDCARD_TARGET = f"wildcard-target.{DELEGATE_ZONE}"
PDNS_KEEP_NAME = f"_acme-challenge.keep.{PDNS_ZONE}"

DEFAULT_TTL = 300
_SOA_TIMERS = "86400 7200 1209600 300"  # refresh retry expire negative-ttl


def _soa(zone: str, primary_ns: str) -> str:
    return (
        f"$ORIGIN {zone}.\n$TTL {DEFAULT_TTL}\n"
        f"@ IN SOA {primary_ns}. hostmaster.{zone}. 1 {_SOA_TIMERS}\n"
    )


def zone_text(primary: str, secondary: str) -> str:
    """Master file of ``ZONE``; ``primary``/``secondary`` are ns1's and ns2's addresses."""
    return _soa(ZONE, f"ns1.{ZONE}") + (
        "@ IN NS ns1\n"
        "@ IN NS ns2\n"
        f"ns1 IN A {primary}\n"
        f"ns2 IN A {secondary}\n"
        "@ IN A 127.0.0.1\n"
        "www IN A 127.0.0.1\n"
        "keep IN A 127.0.0.1\n"
        f'_acme-challenge.keep IN TXT "{KEEP_TXT}"\n'
        "delegated IN A 127.0.0.1\n"
        f"_acme-challenge.delegated IN CNAME {DELEGATED_TARGET}.\n"
        f"*.wild IN CNAME {WILDCARD_TARGET}.\n"
    )


def delegate_zone_text() -> str:
    """Master file of ``DELEGATE_ZONE`` (served by the same name servers as ``ZONE``)."""
    return _soa(DELEGATE_ZONE, f"ns1.{ZONE}") + (f"@ IN NS ns1.{ZONE}.\n@ IN NS ns2.{ZONE}.\n")


def pdns_zone_text(address: str) -> str:
    """Master file of ``PDNS_ZONE``; ``address`` is PowerDNS's."""
    return _soa(PDNS_ZONE, f"ns1.{PDNS_ZONE}") + (
        "@ IN NS ns1\n"
        f"ns1 IN A {address}\n"
        "@ IN A 127.0.0.1\n"
        "www IN A 127.0.0.1\n"
        "keep IN A 127.0.0.1\n"
        f'_acme-challenge.keep IN TXT "{KEEP_TXT}"\n'
    )
