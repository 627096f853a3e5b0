"""certsmith restore: bring back a 'certsmith backup' archive, on this or a new machine."""

from __future__ import annotations

import argparse
from typing import Any

HELP = """\
Restore the state directory from FILE, written by 'certsmith backup'. Nothing in the state
directory changes unless the whole archive verifies: its manifest lists every member with a
SHA-256 and is sealed with its own, the archive is read to the end of its compressed stream
(whose checksum is at the very end, so a cut or damaged file is refused), and it is safe: no
absolute paths, no '..', no links other than live/ links to archived versions, no devices,
hard links or FIFOs, and every version's key matches its certificate. Any problem is refused
with one line naming it; FILE must be a regular file or a pipe, and no more is read than its
manifest announces. The backup is unpacked beside the state directory
and moved into place; keys get 0600, other files at most 0644, never setuid or executable.
Restoring into a state directory replaces the top-level entries the backup carries (sites,
accounts, archive, live, ...); entries the backup does not carry, such as a local CA when the
backup has none, stay. If that would replace anything that differs from the backup, restore
names it and stops unless --force, and with --force it says what it replaced. Files belong to
the user who runs restore. Afterwards, 'certsmith deploy NAME' puts the certificates where the
servers read them, the 'certsmith install ...' commands restore prints (from the install
records in the backup) write certsmith's files into this machine's nginx/Apache/lighttpd, and
'certsmith schedule install' sets up renewal on this machine.
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "restore",
        help="restore certificates, keys and settings from a backup",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="archive written by 'certsmith backup'")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace what the state directory has where it differs from the backup "
        "(restore names it first)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from certsmith.cli.main import home_from
    from certsmith.services.backup import reinstall_commands, restore

    summary = restore(Path(args.file).expanduser(), home_from(args), force=args.force)
    if not args.quiet:
        print(f"{summary.line('restored')} into {summary.home}")
        if summary.replaced:
            print(f"replaced what was there: {summary.replaced}")
        commands = reinstall_commands(summary.home)
        if commands:
            # The records came back, the web server files did not: they belong to the old
            # machine's server tree.
            print("the web servers of the old machine served these; run on this one:")
            for command in commands:
                print(f"  {command}")
    return 0
