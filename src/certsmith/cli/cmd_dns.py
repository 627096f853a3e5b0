"""certsmith dns check: a DNS-01 preflight (delegation, authoritative servers, write access)."""

from __future__ import annotations

import argparse
from typing import Any

DESCRIPTION = """\
check NAME...  with the same --dns options as 'certsmith get': show where each name's
               _acme-challenge TXT record goes (a CNAME on it is followed unless it comes from a
               wildcard; --dns-alias ZONE names the target), the zone, every authoritative
               server and the one taking updates; then prove write access: a test value is
               written through the provider, awaited on every authoritative server, and
               removed. No CA is asked, so no rate limit is spent.

examples:
  certsmith dns check '*.home.example.org' --dns rfc2136 --tsig-key-file /etc/certsmith/k.key
  certsmith dns check app.example.org --dns lexicon:cloudflare --dns-credentials /root/cf.ini
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "dns",
        help="check DNS-01 set-up: delegation, authoritative servers, write access",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=("check",))
    p.add_argument("names", nargs="+", metavar="NAME")
    from certsmith.cli import dnsopts

    dnsopts.add_options(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from certsmith.base.identifiers import parse_identifiers
    from certsmith.base.store import open_store
    from certsmith.cli import dnsopts
    from certsmith.cli.main import home_from
    from certsmith.cli.render import print_json
    from certsmith.errors import UsageError
    from certsmith.services.dnscheck import check

    idents = parse_identifiers(args.names)
    if any(i.is_ip for i in idents):
        raise UsageError("DNS-01 proves DNS names; an IP address needs HTTP-01 or TLS-ALPN-01")
    spec = dnsopts.spec_from(args)
    quiet = args.quiet or args.json

    def say(line: str) -> None:
        if not quiet:
            print(f"dns-01: {line}", file=sys.stderr, flush=True)

    report = check(open_store(home_from(args)), spec, [i.value for i in idents], progress=say)
    if args.json:
        print_json(
            {
                "provider": report.provider,
                "seconds": round(report.seconds, 3),
                "targets": [
                    {
                        "domain": t.domain,
                        "record": t.record,
                        "fqdn": t.fqdn,
                        "zone": t.zone,
                        "cname": list(t.cname),
                        "servers": [{"name": s.name, "address": s.address} for s in t.servers],
                        "update_server": u or None,
                    }
                    for t, u in zip(report.targets, report.update_servers, strict=True)
                ],
            }
        )
        return 0
    if args.quiet:
        return 0
    for t, update in zip(report.targets, report.update_servers, strict=True):
        where = t.record
        if t.fqdn != t.record:
            how = "CNAME " + " -> ".join(t.cname) if t.cname else "alias"
            where = f"{t.record} -> {t.fqdn} ({how})"
        print(f"{where}")
        print(
            f"  zone {t.zone}; authoritative: "
            + ", ".join(f"{s.name} {s.address}" for s in t.servers)
        )
        if update:
            print(f"  updates go to {update}")
    n = sum(len(t.servers) for t in report.targets)
    print(
        f"write access OK through {report.provider}: a test record was written, seen on all "
        f"{n} authoritative server answers after {report.seconds:.1f} s, and removed"
    )
    return 0
