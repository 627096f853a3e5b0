"""certsmith import certbot: take over certificates managed by certbot."""

from __future__ import annotations

import argparse
import sys
from typing import Any

HELP = """\
Take over every certbot lineage in DIR (default /etc/letsencrypt): the ACME account, the
current key and certificate (published as version 1 under certsmith's live/<name>/), and how
certbot renews it (webroot paths, standalone port, key type, CA, reuse_key, deploy hooks and
renewal-hooks/deploy scripts become deploy commands), so 'certsmith renew' renews it the same
way. A dns-rfc2136 lineage becomes '--dns rfc2136': the server from its credentials file, and
its TSIG key copied (0600) to dns-01/tsig/<name>.key in certsmith's state directory.

The old paths keep working: DIR/live/<name>/{cert,chain,fullchain,privkey}.pem are replaced by
symlinks to certsmith's live files, so server configs that name them follow every certsmith
renewal. DIR/renewal/<name>.conf is renamed to <name>.conf.imported-by-certsmith so certbot's
own timer stops renewing it (rename it back to return the lineage to certbot).

Everything is read and checked before anything is written: a corrupt or partial certbot
directory is reported and nothing is imported. Lineages certsmith cannot renew the same way
(other certbot DNS plugins: the '--dns lexicon:PROVIDER' to use with 'certsmith get' is
named; the manual authenticator, several webroots) are listed and left to certbot. --dry-run
shows all this and writes nothing.

examples:
  certsmith import certbot --dry-run
  certsmith import certbot /srv/letsencrypt
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "import",
        help="take over certificates managed by certbot",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("tool", choices=("certbot",), help="where from (certbot)")
    p.add_argument(
        "dir",
        nargs="?",
        default="/etc/letsencrypt",
        metavar="DIR",
        help="certbot's config directory (default /etc/letsencrypt)",
    )
    p.add_argument("--dry-run", action="store_true", help="show what would happen, write nothing")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from certsmith.cli.main import home_from
    from certsmith.errors import UsageError
    from certsmith.services.importer import certbot

    home = home_from(args)
    source = Path(args.dir).expanduser().absolute()
    plan = certbot.scan(source, home)
    for problem in plan.broken:
        sys.stderr.write(f"certsmith: broken: {problem.name}: {problem.reason}\n")
    if plan.broken:
        raise UsageError(
            f"{source} is corrupt or incomplete ({len(plan.broken)} lineage(s) "
            "above); nothing was imported"
        )
    verb = "would import" if args.dry_run else "importing"
    if not args.quiet:
        for lineage in plan.lineages:
            print(f"{verb} {lineage.name}: {lineage.describe()}")
            for note in lineage.notes:
                print(f"  note: {note}")
    for problem in plan.skipped:
        sys.stderr.write(f"certsmith: cannot import {problem.name}: {problem.reason}\n")
    if args.dry_run or not plan.lineages:
        if not plan.lineages and not args.quiet:
            print("nothing to import")
        return 0
    done = certbot.apply(plan, home)
    if not args.quiet:
        for name in done:
            print(
                f"{name}: imported -> {home / 'live' / name}/fullchain.pem; "
                f"{source / 'live' / name}/*.pem now link there"
            )
        print(
            f"certbot no longer renews these ({source}/renewal/<name>.conf renamed to "
            "*.conf.imported-by-certsmith); 'certsmith renew' does"
        )
    return 0
