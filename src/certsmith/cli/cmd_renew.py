"""certsmith renew: renew what is due (ARI window, else 1/3 of the lifetime left)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from certsmith.services.manager import Outcome

HELP = """\
Renew every certificate that is due, or only NAME...: inside the CA's ARI renewal window when the
CA offers one (RFC 9773, sending 'replaces'), else when a third of the lifetime remains (half for
lifetimes under 10 days), with jitter. A failure is recorded, backs off exponentially (honouring
the CA's Retry-After) and leaves the current certificate live. Run it from a timer:
'certsmith schedule install'.

Damaged state is reported on stderr, naming the file, and the others are renewed all the same
(exit status 1, and a failure alert): a site file that cannot be read skips its certificate; a
damaged state file is recomputed from the live certificate; a damaged live set (missing or
mismatched key, unparseable chain, dangling link) is repaired from the newest intact version in
the archive, and renewed at once if that is not the newest version or there is none.
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "renew",
        help="renew certificates that are due",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="only these certificates")
    p.add_argument("--force", action="store_true", help="renew now, due or not")
    p.add_argument("--dry-run", action="store_true", help="show what is due, order nothing")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from certsmith.cli.main import home_from
    from certsmith.cli.render import progress_printer
    from certsmith.services.root import build

    services = build(home_from(args), progress=progress_printer(args.quiet or args.json))
    outcomes = services.manager.renew(args.names or None, force=args.force, dry_run=args.dry_run)
    return report(
        outcomes, args, services.store.live_path, [*services.manager.damage, *services.bus.failures]
    )


def report_damage(damage: Sequence[tuple[str, str]]) -> int:
    """One line per damaged lineage on stderr; 1 if there was any, else 0."""
    for name, line in damage:
        sys.stderr.write(f"certsmith: {name}: {line}\n")
    return 1 if damage else 0


def report(
    outcomes: Sequence[Outcome],
    args: argparse.Namespace,
    live_path: Callable[[str], Path],
    damage: Sequence[tuple[str, str]] = (),
) -> int:
    """Print outcomes (text or JSON); exit 0 only if every certificate is fine and nothing
    was found damaged (repaired or not) and every subscriber (audit log, alerts, metrics)
    did its part. (Alerts and metrics ran already: the service emits them, see
    services.lifecycle.)"""
    from certsmith.cli.render import print_json

    failed = [o for o in outcomes if not o.ok]
    if args.json:
        print_json([o.to_json() for o in outcomes])
    elif not args.quiet:
        for o in outcomes:
            if o.action in ("issued", "renewed"):
                until = f", valid until {o.not_after:%Y-%m-%d}" if o.not_after else ""
                print(f"{o.name}: {o.action}{until} -> {live_path(o.name)}/fullchain.pem")
            elif o.ok:
                print(f"{o.name}: {o.action} ({o.detail})")
    for o in failed:
        sys.stderr.write(f"certsmith: {o.name}: {o.detail}\n")
    damaged = report_damage(damage)
    if not failed:
        return damaged
    return 3 if all(o.action == "deploy-failed" for o in failed) and not damaged else 1
