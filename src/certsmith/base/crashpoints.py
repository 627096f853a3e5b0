"""Named points where a test can kill certsmith with SIGKILL (fault injection).

``CERTSMITH_CRASH_AT=<name>`` makes the process kill itself, uncatchably, the first time it
passes that point; the crash tests use it to prove that every interruption leaves a consistent
state. Without the variable this is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

_TARGET = os.environ.get("CERTSMITH_CRASH_AT")


def crash_point(name: str) -> None:
    if _TARGET is not None and name == _TARGET:
        os.kill(os.getpid(), signal.SIGKILL)
