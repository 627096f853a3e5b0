"""certsmith backup: everything a new machine needs, keys included, in one archive."""

from __future__ import annotations

import argparse
from typing import Any

HELP = """\
Write the whole state directory to FILE: site settings, ACME accounts and their keys, every
certificate version with its private key, the live/ links, the local CA, renewal state, alert
channels, the audit log and the install records (what 'get --SERVER' and 'install' did, with
their options; not the server files themselves, which 'restore' tells you to write again with
'certsmith install'). FILE ending in .tar.xz or .txz is xz-compressed, anything else gzip.
The archive is created 0600 and appears whole (it is written beside FILE and renamed), so keep
it as secret as the keys it holds. It is a consistent snapshot: renewals of each certificate
wait while the backup reads, and every live/ link in it names a version it holds. Any file or
directory that cannot be read fails the backup with one line, and nothing is written. Every
member's SHA-256 is in the archive's manifest, so 'restore' refuses a damaged copy. Restore
it on another machine with 'certsmith restore FILE'.
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "backup",
        help="save certificates, keys and settings to an archive",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="archive to write (.tar.gz or .tar.xz)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from certsmith.cli.main import home_from
    from certsmith.services.backup import backup

    summary = backup(home_from(args), Path(args.file).expanduser())
    if not args.quiet:
        print(f"{summary.line('backed up')} -> {summary.path}")
    return 0
