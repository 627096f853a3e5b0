"""Loopback ports and readiness polling shared by the server fixtures.

Ports come from a per-worker range (pytest-xdist sets PYTEST_XDIST_WORKER) below the kernel's
ephemeral range, and each candidate is checked free for both TCP and UDP on 127.0.0.1, so
parallel workers and outgoing connections do not collide with the servers we start.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
LOOPBACK6 = "::1"
_RANGE_START = 10000
_RANGE_SIZE = 900  # per slot; 20 slots fit under the usual ephemeral range (32768+)
_lock = threading.Lock()


def _slot() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        return int(worker[2:]) % 20
    return 19 - (os.getpid() % 4)  # not under xdist (benchmarks, a plain pytest run)


_counter = itertools.count(random.randrange(_RANGE_SIZE))


def _is_free(port: int) -> bool:
    for family, host in ((socket.AF_INET, LOOPBACK), (socket.AF_INET6, LOOPBACK6)):
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(family, kind) as s:
                try:
                    s.bind((host, port))
                except OSError:
                    return False
    return True


def free_port() -> int:
    """A port free for TCP and UDP on 127.0.0.1 and [::1] (the web server fixtures listen on
    both), from this worker's range."""
    base = _RANGE_START + _slot() * _RANGE_SIZE
    with _lock:
        for _ in range(_RANGE_SIZE):
            port = base + next(_counter) % _RANGE_SIZE
            if _is_free(port):
                return port
    raise RuntimeError("no free loopback port in this worker's range")


_PRIVILEGED_START = 100
_PRIVILEGED_SIZE = 45  # per slot; 20 slots end at 1000, under ip_unprivileged_port_start


def free_privileged_port() -> int:
    """A port below 1024 free on 127.0.0.1, from this worker's range: only root binds it, as
    :443 on a real machine (a server that dropped its privileges cannot open it)."""
    base = _PRIVILEGED_START + _slot() * _PRIVILEGED_SIZE
    with _lock:
        for _ in range(_PRIVILEGED_SIZE):
            port = base + next(_counter) % _PRIVILEGED_SIZE
            if _is_free(port):
                return port
    raise RuntimeError("no free privileged loopback port in this worker's range")


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class ServerDied(RuntimeError):
    pass


def wait_until(
    probe: Callable[[], T | None],
    *,
    what: str,
    timeout: float = 15.0,
    proc: subprocess.Popen[bytes] | None = None,
    log: Callable[[], str] | None = None,
) -> T:
    """Poll ``probe`` until it returns something truthy, with a deadline.

    Between attempts we block on the server process itself (``proc.wait`` with a short
    timeout), so a server that dies is reported at once with its log instead of waiting
    the deadline out. Without a process, a threading.Event provides the short pause.
    """
    deadline = time.monotonic() + timeout
    pause = 0.005
    idle = threading.Event()
    while True:
        result = probe()
        if result:
            return result
        if proc is not None and proc.poll() is not None:
            tail = log()[-3000:] if log else ""
            raise ServerDied(f"{what}: process exited with {proc.returncode}\n{tail}")
        if time.monotonic() > deadline:
            tail = log()[-3000:] if log else ""
            raise TimeoutError(f"{what}: not ready after {timeout}s\n{tail}")
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=pause)
        else:
            idle.wait(pause)
        pause = min(pause * 2, 0.1)


def die_with_parent() -> None:
    """``preexec_fn`` for servers: own session (a terminal's Ctrl-C reaches only pytest, which
    then stops them in teardown) and SIGTERM when the starting process dies, so a killed test
    run leaves no Pebble or lighttpd behind (Linux ``PR_SET_PDEATHSIG``)."""
    os.setsid()
    if _prctl is not None:
        _prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    # Resolved here, not in the forked child (no imports between fork and exec).
    try:
        import ctypes

        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; always reaps the process."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
