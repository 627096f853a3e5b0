"""certsmith trust: add the local CA's root to this machine's trust stores, or take it out."""

from __future__ import annotations

import argparse
from typing import Any

DESCRIPTION = """\
install    add the local CA's root (made now if missing) to every trust store found
uninstall  take it out again; the stores are left as they were before
status     show each store found and whether the root is in it

Stores: system (update-ca-certificates, update-ca-trust or p11-kit's trust: curl, OpenSSL,
Python's ssl, git...), nss (certutil: ~/.pki/nssdb for Chrome/Chromium, created by install if
missing, every Firefox profile including snap and flatpak), java (keytool's cacerts, when
keytool exists). A store that is missing or read-only is reported and skipped. The system
store needs root.

Node.js and Python's requests/certifi ignore these stores; install prints the one environment
variable each needs.
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "trust",
        help="trust the local CA on this machine (or stop trusting it)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=("install", "uninstall", "status"))
    p.add_argument(
        "--store",
        action="append",
        choices=("system", "nss", "java"),
        help="only this kind of store (repeatable; default: all)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from certsmith.cli.main import home_from
    from certsmith.cli.render import print_json, table
    from certsmith.services import trust

    home = home_from(args)
    result = getattr(trust, args.action)(home, args.store)
    if result is None:
        if args.json:
            print_json({"ca": None, "stores": []})
        elif not args.quiet:
            print(
                f"no local CA in {home / 'ca'}: nothing is trusted "
                "(certsmith local NAME or certsmith trust install makes one)"
            )
        return 0
    if args.json:
        print_json(
            {
                "ca": str(result.root.path),
                "sha256": result.root.sha256,
                "stores": [r.to_json() for r in result.reports],
                "env": result.hints() if args.action == "install" else [],
            }
        )
    elif not args.quiet:
        if result.ca_created:
            print(f"Created a new local CA in {result.root.path.parent}")
        rows = [
            [
                r.store,
                r.location,
                r.state + (" (skipped)" if r.state in trust.SKIPPED else ""),
                r.detail,
            ]
            for r in result.reports
        ]
        print(table(["STORE", "LOCATION", "STATE", "DETAIL"], rows))
        if args.action == "install":
            print("\nFor runtimes that ignore these stores:")
            for hint in result.hints():
                print(f"  export {hint}")
    if result.failed:
        from certsmith.errors import CertsmithError

        raise CertsmithError(f"trust {args.action}: some stores failed (see above)")
    return 0
