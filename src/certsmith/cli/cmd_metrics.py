"""certsmith metrics: Prometheus text format for the managed certificates."""

from __future__ import annotations

import argparse
from typing import Any

HELP = """\
Print Prometheus metrics (text exposition format) for every managed certificate: expiry and
not-before timestamps, last renewal result and time, last success, consecutive failures; per
certificate name (label 'name').

With --textfile PATH (a *.prom file in node-exporter's --collector.textfile.directory) the
metrics are written there atomically instead, and the path is remembered: every
'certsmith renew' (the timer run) rewrites it, so it stays fresh. --forget stops that.

examples:
  certsmith metrics
  certsmith metrics --textfile /var/lib/prometheus/node-exporter/certsmith.prom
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "metrics",
        help="write Prometheus metrics for the managed certificates",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--textfile", metavar="PATH", help="write here (atomically) and keep fresh")
    p.add_argument(
        "--forget",
        action="store_true",
        help="stop rewriting the remembered textfile after each renew",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from certsmith.cli.main import home_from
    from certsmith.services import metrics

    home = home_from(args)
    if args.forget:
        metrics.remember_textfile(home, None)
        if not args.quiet:
            print("metrics textfile forgotten")
        return 0
    if args.textfile:
        path = Path(args.textfile).expanduser().absolute()
        metrics.write_textfile(home, path)
        metrics.remember_textfile(home, path)
        if not args.quiet:
            print(f"wrote {path}; 'certsmith renew' keeps it fresh")
        return 0
    print(metrics.collect(home), end="")
    return 0
