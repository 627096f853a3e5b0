"""certsmith schedule: run 'certsmith renew' twice a day from a systemd timer or cron."""

from __future__ import annotations

import argparse
import sys
from typing import Any

HELP = """\
Run 'certsmith renew' twice a day, so certificates renew without anyone remembering to.

  install   as root with systemd: certsmith.timer + certsmith.service in /etc/systemd/system
            (00:00 and 12:00 with a random delay of up to 12 h; Persistent=true), enabled and
            started; as root without systemd: /etc/cron.d/certsmith at a random minute, with a
            random sleep; as another user: an entry in your crontab. Running it again only
            updates what changed (e.g. the path of certsmith).
  remove    removes exactly what install added.
  status    shows what is installed and, with systemd, the next run.

Nothing renews unless something runs the job: install (and status) warn on stderr when the
scheduler it relies on is absent (systemd not PID 1, or no cron/crond/anacron process), and still
write the files, ready for when one is started (exit status 0, e.g. while building an image).

The timer runs this certsmith by its absolute path, with --home unless the state directory is the
default one. Overrides: CERTSMITH_INIT=systemd|cron|crontab, CERTSMITH_SYSTEMD_DIR,
CERTSMITH_CRON_DIR.
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "schedule",
        help="install, remove or show the renewal timer",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "action", choices=("install", "remove", "status"), help="install | remove | status"
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from certsmith.cli.main import home_from
    from certsmith.services import schedule

    host = schedule.Host.detect()
    if args.action == "install":
        home = home_from(args)
        argv = schedule.renew_argv(
            schedule.certsmith_executable(), None if home == schedule.builtin_home() else home
        )
        report = schedule.install(host, argv)
    elif args.action == "remove":
        report = schedule.remove(host)
    else:
        report = schedule.status(host)
    if not args.quiet or args.action == "status":
        for line in report.lines:
            print(line)
    # A warning, not a failure: the files are right and a container or image being built
    # starts its cron later; but nobody may believe renewal runs when it cannot.
    for warning in report.warnings:
        print(f"certsmith: warning: {warning}", file=sys.stderr)
    return 0
