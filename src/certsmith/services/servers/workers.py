"""Which of a server's worker processes still take new connections for the configuration a
graceful reload replaces.

nginx's ``-s reload`` returns once the master has the signal; the master then starts new
workers and tells the old ones to quit, and an old worker handles that only after the events
it was woken for, so for a moment both generations accept connections on the same sockets. A
probe that reached a new worker proves the new configuration is live, but a client that
connects a moment later (a CA validating HTTP-01 on loopback within milliseconds) can still
reach an old one. The transaction therefore waits for the old workers it saw before the
reload to stop accepting: they exit, or retitle themselves "shutting down", which nginx does
just before it closes their listening sockets.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

PROC = Path("/proc")
SETTLE_TIMEOUT = 10.0


def master_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` if that process is alive, else None."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if (PROC / str(pid)).is_dir() else None


def nginx_pid_file(main_conf: Path) -> Path:
    """The ``pid`` directive of nginx.conf (main context), else Debian's default."""
    try:
        text = main_conf.read_text(errors="replace")
    except OSError:
        text = ""
    match = re.search(r"^\s*pid\s+([^;\s]+)\s*;", text, flags=re.M)
    return Path(match.group(1)) if match else Path("/run/nginx.pid")


def children(parent: int) -> list[tuple[int, bytes]]:
    """(pid, command line) of the live children of ``parent``."""
    out: list[tuple[int, bytes]] = []
    try:
        entries = list(PROC.iterdir())
    except OSError:
        return out
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == parent:
                out.append((int(entry.name), (entry / "cmdline").read_bytes()))
        except (OSError, ValueError, IndexError):  # ended while we looked
            continue
    return out


def nginx_accepting(master: int) -> frozenset[int]:
    """nginx worker processes of ``master`` that have not begun a graceful shutdown."""
    return frozenset(
        pid
        for pid, cmd in children(master)
        if cmd.startswith(b"nginx: worker process") and b"shutting down" not in cmd
    )


def settle(
    accepting: Callable[[], frozenset[int]], old: frozenset[int], timeout: float = SETTLE_TIMEOUT
) -> bool:
    """Wait until none of ``old`` still accepts; False if some still do after ``timeout``."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while old & accepting():
        if time.monotonic() > deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.1)
    return True
