"""Where certsmith keeps its state: ``--home``, ``$CERTSMITH_HOME`` or the per-user default."""

from __future__ import annotations

import os
from pathlib import Path


def default_home() -> Path:
    env = os.environ.get("CERTSMITH_HOME")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/certsmith")
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(data) / "certsmith"
