"""certsmith restore: bring back a 'certsmith backup' archive, on this or a new machine."""

from __future__ import annotations

import argparse
from typing import Any

HELP = """\
Restore the state directory from FILE, written by 'certsmith backup'. Nothing is written unless
the whole archive is a certsmith backup and safe: no absolute paths, no '..', no links leading
out of the state directory. It is unpacked beside the state directory and moved into place, with
the modes it was saved with (keys 0600). A state directory that already has certificates is left
alone unless --force, which replaces its contents with the backup. Files belong to the user who
runs restore. Afterwards, 'certsmith deploy NAME' puts the certificates where the servers read
them, the 'certsmith install ...' commands restore prints (from the install records in the
backup) write certsmith's files into this machine's nginx/Apache/lighttpd, and 'certsmith
schedule install' sets up renewal on this machine.
"""


def register(sub: Any) -> None:
    p = sub.add_parser("restore", help="restore certificates, keys and settings from a backup",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE", help="archive written by 'certsmith backup'")
    p.add_argument("--force", action="store_true",
                   help="replace a state directory that already has certificates")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from certsmith.cli.main import home_from
    from certsmith.services.backup import reinstall_commands, restore

    summary = restore(Path(args.file).expanduser(), home_from(args), force=args.force)
    if not args.quiet:
        print(f"{summary.line('restored')} into {summary.home}")
        commands = reinstall_commands(summary.home)
        if commands:
            # The records came back, the web server files did not: they belong to the old
            # machine's server tree.
            print("the web servers of the old machine served these; run on this one:")
            for command in commands:
                print(f"  {command}")
    return 0
