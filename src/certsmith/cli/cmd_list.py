"""certsmith list: the managed certificates at a glance."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "list",
        help="show managed certificates",
        description="Show every managed certificate: names, how it proves "
        "control of them (its solver), issuer, expiry, days left, "
        "next renewal and the last result. Each live set is "
        "verified (files parse, key matches the certificate) and "
        "repaired from the newest intact version in the archive; "
        "damaged files are named on stderr and make the exit "
        "status 1.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from certsmith.cli.cmd_renew import report_damage
    from certsmith.cli.main import home_from
    from certsmith.cli.render import print_json, table
    from certsmith.services.manager import DamagedSite
    from certsmith.services.root import build

    manager = build(home_from(args)).manager
    statuses = manager.status()
    damaged = [(s.name, s.reason) for s in statuses if isinstance(s, DamagedSite)]
    damaged += manager.damage
    if args.json:
        print_json([s.to_json() for s in statuses])
        return report_damage(damaged)
    if not statuses:
        print("no certificates yet: certsmith get NAME --webroot DIR | --standalone")
        return 0
    now = dt.datetime.now(dt.UTC)
    rows = []
    for s in statuses:
        if isinstance(s, DamagedSite):
            rows.append([s.name, "-", "-", "-", "-", "-", "-", "damaged"])
            continue
        na = s.state.not_after
        names = ",".join(i.value for i in s.spec.identifiers)
        solver = s.spec.solver.describe()
        rows.append(
            [
                s.spec.name,
                names if len(names) <= 40 else names[:37] + "...",
                solver if len(solver) <= 40 else solver[:37] + "...",
                s.state.issuer or "-",
                f"{na:%Y-%m-%d %H:%M}" if na else "-",
                f"{(na - now).total_seconds() / 86400:.1f}" if na else "-",
                f"{s.next_renewal:%Y-%m-%d %H:%M}" if s.next_renewal else "-",
                (s.state.last_result or "-")
                + (f" ({s.state.failures}x)" if s.state.failures else ""),
            ]
        )
    print(
        table(
            ["NAME", "NAMES", "SOLVER", "ISSUER", "EXPIRES (UTC)", "DAYS", "NEXT RENEWAL", "LAST"],
            rows,
        )
    )
    return report_damage(damaged)
