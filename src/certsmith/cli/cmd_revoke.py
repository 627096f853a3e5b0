"""certsmith revoke: revoke the live certificate of NAME at its CA."""

from __future__ import annotations

import argparse
from typing import Any

REASONS = {"unspecified": 0, "keycompromise": 1, "superseded": 4, "cessationofoperation": 5}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "revoke",
        help="revoke a certificate",
        description="Revoke the live certificate of NAME. It stays in place; the "
        "next 'certsmith renew' replaces it.",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--reason", default="unspecified", choices=sorted(REASONS))
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from certsmith.cli.main import home_from
    from certsmith.services.root import build

    outcome = build(home_from(args)).manager.revoke(args.name, REASONS[args.reason])
    if not args.quiet:
        print(f"{outcome.name}: revoked serial {outcome.serial}; 'certsmith renew' replaces it")
    return 0
