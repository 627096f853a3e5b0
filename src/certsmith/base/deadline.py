"""A total deadline for one network exchange, not only a timeout per read.

Socket timeouts bound each read; a server that trickles one byte every few seconds never trips
them, and a request would hang forever. ``Deadline`` bounds the whole exchange: the sockets the
exchange opens (or reuses) in this thread are registered with it, and when the time is up they
are shut down, which wakes the blocked read with an error the caller then reports as a timeout.
The HTTP and SMTP clients register their sockets through ``watch``.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
from types import TracebackType

from certsmith.errors import UsageError

ENV = "CERTSMITH_NET_DEADLINE"
DEFAULT_SECONDS = 120.0
_current = threading.local()


def total_seconds() -> float:
    """The total time one network exchange may take: $CERTSMITH_NET_DEADLINE, else 120."""
    raw = os.environ.get(ENV)
    if not raw:
        return DEFAULT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"{ENV}={raw!r}: give a positive number of seconds")
    return value


class Deadline:
    """``with Deadline(seconds) as d:`` ... ``d.expired`` tells a timeout from other errors."""

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = total_seconds() if seconds is None else seconds
        self.expired = False
        self._sockets: list[tuple[int, int]] = []  # (fd, inode): see _shutdown
        self._lock = threading.Lock()
        self._timer = threading.Timer(self.seconds, self._expire)
        self._timer.daemon = True
        self._outer: Deadline | None = None

    def __enter__(self) -> Deadline:
        self._outer = getattr(_current, "deadline", None)
        _current.deadline = self
        self._timer.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._timer.cancel()
        _current.deadline = self._outer
        with self._lock:
            self._sockets.clear()

    def add(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        if fd < 0:
            return
        try:
            entry = (fd, os.fstat(fd).st_ino)
        except OSError:
            return
        with self._lock:
            if self.expired:
                _shutdown(*entry)
            else:
                self._sockets.append(entry)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for entry in self._sockets:
                _shutdown(*entry)


def _shutdown(fd: int, inode: int) -> None:
    """Shut down the socket behind ``fd``, if it is still the one registered.

    By descriptor, not by object: wrapping a socket in TLS detaches the original object, and
    the descriptor is what the blocked read waits on. The inode check makes sure a descriptor
    closed and reused meanwhile (another thread's connection) is left alone."""
    with contextlib.suppress(OSError):
        if os.fstat(fd).st_ino != inode:
            return
        dup = socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM)  # shuts down the socket,
        try:  # not just the duplicate descriptor
            dup.shutdown(socket.SHUT_RDWR)
        finally:
            dup.close()


def watch(sock: socket.socket | None) -> None:
    """Put ``sock`` under this thread's current deadline (and every enclosing one)."""
    deadline: Deadline | None = getattr(_current, "deadline", None)
    while sock is not None and deadline is not None:
        deadline.add(sock)
        deadline = deadline._outer
