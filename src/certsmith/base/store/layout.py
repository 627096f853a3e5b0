"""The state directory's layout version: the ``format`` file (see ``migrate``)."""

import os
from pathlib import Path

FORMAT = 2
FORMAT_KEY = "format"

# What an earlier certsmith left in a state directory: any of these means it has state (and,
# without a ``format`` file, layout 1); none of them means it is new.
STATE_ENTRIES = ("sites", "accounts", "archive", "live", "state", "ca", "installs")


def has_state(home: Path) -> bool:
    return any(os.path.lexists(home / entry) for entry in STATE_ENTRIES)
