"""certsmith uninstall: remove exactly what 'install' (or 'get --SERVER') added."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "uninstall",
        help="remove certsmith's files from nginx, Apache or lighttpd",
        description="Remove the files certsmith added to SERVER for NAME, put back any site of "
        "yours it had moved aside, check the configuration and reload the server. "
        "The certificate itself stays (see 'certsmith revoke').",
    )
    p.add_argument("web_server", choices=("nginx", "apache", "lighttpd"), metavar="SERVER")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--dry-run", action="store_true", help="print what would be removed")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from certsmith.cli.main import home_from
    from certsmith.services.servers import uninstall

    result = uninstall(home_from(args), args.web_server, args.name, dry_run=args.dry_run)
    if not args.quiet or args.dry_run:
        print(result.text)
        for note in result.notes:
            print(f"  note: {note}")
    return 0
