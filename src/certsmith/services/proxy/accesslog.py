"""The proxy's access log: opened for appending by every worker, checked before the proxy starts.

Why it is careful: an access log that cannot be opened used to make every worker die at start-up
and be respawned every second, forever, while the proxy said "serving". Now

- :func:`check` opens it exactly as the workers will, before anything starts (and before a
  SIGHUP reload replaces the workers), so a bad path is one line and a non-zero exit;
- a worker never fails because of its log: when the file cannot be opened or written later
  (disk full, directory removed, a reader gone), it says so once on stderr, drops the lines
  (memory stays bounded), keeps serving, and says so again once the log works;
- a log file that was removed or renamed (rotation without a signal) is reopened at its path
  on the next sweep, so lines do not vanish into an unlinked file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Callable
from typing import Any

from certsmith.errors import UsageError

STDOUT = "-"
FLUSH_AT = 65536  # buffered bytes that force a write before the next sweep
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK


def open_log(target: str) -> int:
    """The descriptor the log is written through: standard output for ``-``, else the file
    opened for appending (created 0640). Non-blocking, so a FIFO without a reader is refused
    at once and a slow reader never stalls a worker's event loop."""
    if target == STDOUT:
        flags = fcntl.fcntl(1, fcntl.F_GETFL)  # OSError (EBADF) when stdout is closed
        if flags & os.O_ACCMODE not in (os.O_WRONLY, os.O_RDWR):
            raise OSError(errno.EBADF, "opened read-only")
        return 1
    return os.open(target, _FLAGS, 0o640)


def _reason(target: str, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if target == STDOUT:
        return f"standard output is not open for writing ({reason})"
    if exc.errno == errno.ENOENT:
        parent = os.path.dirname(os.path.abspath(target))
        if not os.path.isdir(parent):
            reason += f" (the directory {parent} does not exist)"
    return reason


def check(target: str | None) -> None:
    """Open the log as the workers will and close it again; one line when that fails."""
    if target is None:
        return
    try:
        fd = open_log(target)
    except OSError as exc:
        raise UsageError(
            f"access log {target}: cannot open it for appending: {_reason(target, exc)}"
        ) from None
    if fd != 1:
        os.close(fd)


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


class AccessLog:
    """Buffered access log shared by appending writers (one ``write`` per flush, O_APPEND)."""

    def __init__(
        self, target: str | None, fmt: str, say: Callable[[str], None] | None = None
    ) -> None:
        self.target = target
        self.say = say or (lambda line: None)
        self.fd: int | None = None  # None while the log is off or cannot be opened
        self._inode: tuple[int, int] | None = None
        self._problem = ""  # what is wrong with the log now, said once
        self.json = fmt == "json"
        self.buf: list[str] = []
        self.size = 0
        self._stamp_second = -1
        self._stamp = ""
        if target is not None:
            self._open()

    @property
    def enabled(self) -> bool:
        """The log is configured (it may be failing for now)."""
        return self.target is not None

    # -- health ---------------------------------------------------------------------------------

    def _trouble(self, problem: str) -> None:
        if problem != self._problem:
            self._problem = problem
            self.say(f"access log {self.target}: {problem}; still serving")

    def _fine(self) -> None:
        if self._problem:
            self._problem = ""
            self.say(f"access log {self.target}: writing it again")

    def _open(self) -> bool:
        assert self.target is not None
        try:
            fd = open_log(self.target)
            inode = None if fd == 1 else _identity(os.fstat(fd))
        except OSError as exc:
            self._trouble(
                f"cannot open it for appending: {_reason(self.target, exc)}; its lines are dropped"
            )
            return False
        if self.fd is not None and self.fd != 1:
            os.close(self.fd)
        self.fd, self._inode = fd, inode
        return True

    def check(self) -> None:
        """Each sweep: open a log that could not be opened, reopen one that was removed or
        renamed (the path names another file, or none)."""
        if self.target is None or self.target == STDOUT:
            return
        if self.fd is None:
            if self._open():
                self._fine()
            return
        try:
            current: tuple[int, int] | None = _identity(os.stat(self.target))
        except OSError:
            current = None
        if current == self._inode:
            return
        old = self.fd
        if self._open():
            self.say(f"access log {self.target}: it was removed or renamed; reopened it")
        else:  # (said once by _open) lines would only reach a file no one can find
            self.fd = self._inode = None
            if old != 1:
                os.close(old)

    # -- lines ----------------------------------------------------------------------------------

    def stamp(self) -> str:
        now = int(time.time())
        if now != self._stamp_second:
            self._stamp_second = now
            if self.json:
                self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now))
            else:
                self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(now))
        return self._stamp

    def add(
        self,
        client: str,
        method: bytes,
        target: bytes,
        version: str,
        status: int,
        sent: int,
        referer: bytes,
        agent: bytes,
        host: str,
        duration: float,
        error: str = "",
    ) -> None:
        if self.json:
            record: dict[str, Any] = {
                "time": self.stamp(),
                "client": client,
                "host": host,
                "method": method.decode("latin-1"),
                "target": target.decode("latin-1"),
                "protocol": f"HTTP/{version}",
                "status": status,
                "bytes": sent,
                "referer": referer.decode("latin-1"),
                "user_agent": agent.decode("latin-1"),
                "duration_ms": round(duration * 1000, 3),
            }
            if error:
                record["error"] = error
            line = json.dumps(record) + "\n"
        else:
            line = (
                f'{client} - - [{self.stamp()}] "{_q(method)} {_q(target)} HTTP/{version}" '
                f'{status} {sent} "{_q(referer) or "-"}" "{_q(agent) or "-"}"\n'
            )
        self.buf.append(line)
        self.size += len(line)
        if self.size > FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        """Write the buffered lines; when that fails they are dropped (and it is said once)."""
        if not self.buf:
            return
        data = memoryview("".join(self.buf).encode("utf-8", "replace"))
        self.buf = []
        self.size = 0
        if self.fd is None:
            return
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError as exc:
            with contextlib.suppress(Exception):
                self._trouble(f"cannot write it: {exc.strerror or exc}; its lines are dropped")
            return
        self._fine()


def _q(value: bytes) -> str:
    text = value.decode("latin-1")
    if '"' in text or "\\" in text or not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    return text
