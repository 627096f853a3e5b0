"""certsmith check: what does a live server present? (monitoring-plugin exit codes)"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from certsmith.services.check import Report

HELP = """\
Connect to TARGET... (https://host[:port]/path, host or host:port; any server, managed by
certsmith or not) and report the certificate chain it serves (trusted by the system store or
--ca at the current time? names match? days left, issuer, key type and size, signature
algorithm, chain order), the TLS versions it offers, whether TLS 1.2 offers a forward-secret
(ECDHE/DHE) cipher, whether plain HTTP redirects to HTTPS (port 80 when the TLS port is 443,
or --http-port) and whether HSTS is sent.

Every certificate on the path a client builds is judged on its own, and the reason names the
first one clients refuse: "intermediate 'X' expired on ...", "certificate key is RSA 1024",
"certificate signed with SHA-1", rather than only "does not lead to a trusted root".

--all checks every certificate certsmith manages where it is served (https://<first name>/, or
'check_url' in its site file; --connect sends every probe to one address) and that the server
serves the current live certificate, not the one before the last renewal (a missed reload);
problems found are sent to the configured alerts ('certsmith alerts').

exit status (as monitoring plugins, e.g. Nagios/Icinga): 0 OK, 1 WARNING (expires within
--warn days, deprecated TLS versions, chain served in the wrong order, TLS 1.2 without a
forward-secret cipher while TLS 1.3 is offered, no redirect to HTTPS), 2 CRITICAL (expires
within --crit days, expired, an expired intermediate or root, an RSA key under 2048 bits, a
SHA-1 signature, untrusted, self-signed, incomplete chain, wrong name, TLS 1.2 as the best
version and no forward-secret cipher, unreachable).

examples:
  certsmith check allsky.example.org
  certsmith check https://registry.example.org:8443/ --warn 21 --crit 7 --json
  certsmith check --all --ca /etc/ssl/internal-root.pem
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        help="check the certificate and TLS set-up a server presents",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("targets", nargs="*", metavar="TARGET", help="URL, host or host:port")
    p.add_argument("--all", action="store_true", help="check every managed certificate")
    p.add_argument("--ca", metavar="FILE", help="trust these PEM roots instead of the system's")
    p.add_argument(
        "--warn",
        type=float,
        default=14,
        metavar="DAYS",
        help="WARNING when fewer days are left (default 14)",
    )
    p.add_argument(
        "--crit",
        type=float,
        default=7,
        metavar="DAYS",
        help="CRITICAL when fewer days are left (default 7)",
    )
    p.add_argument(
        "--connect",
        metavar="ADDR[:PORT]",
        help="connect here instead of resolving the name (like curl --resolve)",
    )
    p.add_argument(
        "--http-port",
        type=int,
        metavar="N",
        help="plain-HTTP port to test the redirect on (default 80 for port 443)",
    )
    p.add_argument("--no-http", action="store_true", help="do not test plain HTTP")
    p.add_argument(
        "--timeout", type=float, default=10, metavar="SECONDS", help="per connection (default 10)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from certsmith.errors import UsageError
    from certsmith.services.check import check, load_roots, parse_target

    if bool(args.targets) == bool(args.all):
        raise UsageError("name a TARGET to check, or use --all (not both)")
    if args.crit > args.warn:
        raise UsageError("--crit must not be larger than --warn")
    http_port: int | bool | None = False if args.no_http else (args.http_port or True)
    if args.all:
        return _run_all(args, load_roots(args.ca), http_port)
    targets = [parse_target(t, connect=args.connect, http_port=http_port) for t in args.targets]
    roots = load_roots(args.ca)
    reports = check(
        targets, roots=roots, warn_days=args.warn, crit_days=args.crit, timeout=args.timeout
    )
    return _render(reports, args)


def _run_all(args: argparse.Namespace, roots: list[Any], http_port: int | bool | None) -> int:
    from certsmith.cli.main import home_from
    from certsmith.services.check.managed import check_managed
    from certsmith.services.root import build

    services = build(home_from(args))
    managed, reports = check_managed(
        services.home,
        services.bus,
        roots=roots,
        warn_days=args.warn,
        crit_days=args.crit,
        timeout=args.timeout,
        connect=args.connect,
        http_port=http_port,
    )
    if not managed:
        if not args.quiet:
            print("no managed certificates")
        return 0
    return _render(reports, args, [m.name for m in managed])


def _render(reports: list[Report], args: argparse.Namespace, names: list[str] | None = None) -> int:
    from certsmith.cli.render import print_json

    if args.json:
        out = [r.to_json() for r in reports]
        if names:
            for item, name in zip(out, names, strict=True):
                item["name"] = name
        print_json(out)
    else:
        for i, r in enumerate(reports):
            if args.quiet and not r.status:
                continue
            prefix = f"{names[i]} " if names else ""
            print(f"{r.status.name} {prefix}{r.target}: {r.reason}")
            if not args.quiet:
                for line in _details(r):
                    print(f"  {line}")
    return max((int(r.status) for r in reports), default=0)


def _details(r: Report) -> list[str]:
    f = r.facts
    lines = []
    if "serial" in f:
        lines.append(
            f"certificate: {', '.join(f['names']) or f['subject']}; issuer "
            f"{f['issuer']}; key {f['key_type']}; signature {f['signature']}; "
            f"serial {f['serial']}"
        )
        lines.append(
            f"valid until {f['not_after']} ({f['days_left']} days left); trusted: "
            f"{'yes' if f['trusted'] else 'no'}; name matches: "
            f"{'yes' if f['name_matches'] else 'no'}; chain: "
            f"{' <- '.join(f['chain'])}"
        )
        lines.append(
            f"TLS versions: {', '.join(f['tls_versions']) or 'none'} (negotiated {f['protocol']})"
        )
        if "tls12_forward_secret_cipher" in f:
            lines.append(
                "TLS 1.2 ciphers: forward secrecy "
                f"{f['tls12_forward_secret_cipher'] or 'none'}; static RSA "
                f"{f['tls12_static_rsa_cipher'] or 'none'}"
            )
        lines.append(f"HSTS: {f['hsts'] or 'not sent'}")
        if "http_port" in f:
            if f.get("http_error"):
                lines.append(f"plain HTTP (port {f['http_port']}): {f['http_error']}")
            else:
                loc = f" -> {f['http_location']}" if f["http_location"] else ""
                lines.append(f"plain HTTP (port {f['http_port']}): {f['http_status']}{loc}")
    for status, text in r.problems:
        if text != r.reason:
            lines.append(f"also {status.name}: {text}")
    return lines
