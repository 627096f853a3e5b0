"""certsmith deploy: run a certificate's deploy targets again."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "deploy",
        help="run a certificate's deploy targets now",
        description="Copy the live certificate of NAME to its deploy targets and "
        "run its deploy commands, as after a renewal.",
    )
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from certsmith.cli.main import home_from
    from certsmith.services.root import build

    written = build(home_from(args)).manager.deploy(args.name)
    if not args.quiet:
        print(f"{args.name}: deployed" + (f" to {', '.join(written)}" if written else ""))
    return 0
