"""The DNS-01 options, shared by ``get``, ``dns check`` and ``import``: parsing them into a
:class:`~certsmith.base.solverspec.DnsSpec`."""

from __future__ import annotations

import argparse
import os
from typing import Any

PROVIDERS_HELP = "rfc2136, lexicon:PROVIDER (e.g. lexicon:cloudflare) or hook"


def add_options(p: Any, *, provider_flag: bool = True) -> None:
    """The ``--dns-*`` options (and ``--dns`` itself unless the caller puts it in a group)."""
    if provider_flag:
        p.add_argument(
            "--dns", metavar="PROVIDER", required=True, help=f"DNS provider: {PROVIDERS_HELP}"
        )
    g = p.add_argument_group("DNS-01")
    g.add_argument(
        "--dns-server",
        metavar="HOST[:PORT]",
        help="rfc2136: the server taking updates (default: the zone's primary, from its SOA)",
    )
    g.add_argument(
        "--tsig-key-file",
        metavar="FILE",
        help="rfc2136: the TSIG key, as tsig-keygen writes it (HMAC-SHA256 default)",
    )
    g.add_argument(
        "--dns-credentials",
        metavar="FILE",
        help="lexicon: a 0600 file of KEY=VALUE lines with the provider's options "
        "(default: LEXICON_<PROVIDER>_<OPTION> from the environment)",
    )
    g.add_argument(
        "--dns-hook",
        metavar="CMD",
        help="hook: a command run with CERTSMITH_DNS_ACTION (add|remove), "
        "CERTSMITH_DNS_NAME, CERTSMITH_DNS_VALUE, CERTSMITH_DNS_ZONE, "
        "CERTSMITH_DNS_TTL in its environment",
    )
    g.add_argument(
        "--dns-alias",
        metavar="ZONE",
        help="write the TXT records at _acme-challenge.ZONE, where "
        "_acme-challenge.NAME has a CNAME to (default: a CNAME is followed)",
    )
    g.add_argument(
        "--dns-resolver",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="find zones and their servers' addresses through this resolver, not "
        "the system's (repeatable; for split-horizon DNS)",
    )
    g.add_argument(
        "--dns-timeout",
        type=int,
        default=600,
        metavar="SECONDS",
        help="how long to wait until every authoritative server has the records (default 600)",
    )
    g.add_argument(
        "--dns-ttl",
        type=int,
        default=60,
        metavar="SECONDS",
        help="TTL of the TXT records (default 60)",
    )


def spec_from(args: argparse.Namespace) -> Any:
    """The DnsSpec the options describe (paths made absolute: a timer renews from elsewhere)."""
    from certsmith.base.solverspec import DnsSpec

    def absolute(path: str | None) -> str:
        return os.path.abspath(path) if path else ""

    provider = args.dns
    return DnsSpec(
        provider=provider,
        server=args.dns_server or "",
        tsig_key_file=absolute(args.tsig_key_file),
        credentials=absolute(args.dns_credentials),
        hook=args.dns_hook or "",
        alias=(args.dns_alias or "").strip(".").lower(),
        resolvers=tuple(args.dns_resolver),
        timeout=args.dns_timeout,
        ttl=args.dns_ttl,
    )


def uses_dns(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "dns", None))


_STRAY = (
    ("dns_server", "--dns-server"),
    ("tsig_key_file", "--tsig-key-file"),
    ("dns_credentials", "--dns-credentials"),
    ("dns_hook", "--dns-hook"),
    ("dns_alias", "--dns-alias"),
    ("dns_resolver", "--dns-resolver"),
)


def refuse_stray(args: argparse.Namespace) -> None:
    """A ``--dns-*`` option without ``--dns`` would be silently ignored: say so instead."""
    from certsmith.errors import UsageError

    if uses_dns(args):
        return
    for attr, flag in _STRAY:
        if getattr(args, attr, None):
            raise UsageError(f"{flag} is a DNS-01 option: add --dns PROVIDER ({PROVIDERS_HELP})")
