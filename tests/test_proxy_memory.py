"""One client must not grow the proxy's memory without bound (issue 11, severe 1).

A real proxy (a supervisor and two workers) in front of the real test upstream; one raw TLS
client floods it in one of the ways a buffer could grow (pipelined requests behind a slow one,
an endless chunked trailer, bytes after an Upgrade the upstream has not answered, pipelined
POST bodies) and never reads a byte of what comes back, or the upstream sends a response head
that never ends. Each flood is bounded (``FLOOD`` bytes, ``FLOOD_TIME`` seconds). Meanwhile a
second client keeps asking for ``/hello`` on new connections and must get its answers, and
the resident memory of all the proxy's processes, summed, must stay within ``BOUND`` of what
it was before: nginx stops reading after a few MB, and so must we.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.net import LOOPBACK
from tests.support.proxy import Proxy, UpstreamApp, tls_request, vm_rss_kib

FLOOD = 64 * 1024 * 1024  # bytes one client sends at most
FLOOD_TIME = 40.0  # seconds a flood lasts at most
STALL = 3.0  # seconds without a byte accepted: the proxy stopped reading
BOUND = 16 * 1024  # KiB the proxy's processes may grow by, together, during one flood
PAD = b"X-Pad: " + b"p" * 1000 + b"\r\n"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamApp]:
    with UpstreamApp(tmp_path_factory.mktemp("upstream")) as app:
        yield app


@pytest.fixture
def proxy(upstream: UpstreamApp, tmp_path: Path) -> Iterator[Proxy]:
    """A fresh proxy per flood: memory one flood made the allocator keep would hide the
    next one's growth."""
    with Proxy(
        tmp_path / "home", ["localhost", "--to", upstream.address, "--workers", "2"]
    ) as server:
        yield server


def proxy_rss_kib(proxy: Proxy) -> int:
    """Resident memory of the supervisor and its workers, summed."""
    assert proxy.proc is not None
    total = 0
    for pid in [proxy.proc.pid, *proxy.workers()]:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += vm_rss_kib(pid)  # (a process that just exited holds nothing)
    return total


class Flood(threading.Thread):
    """One TLS connection that sends ``first`` then ``repeat`` over and over and never reads,
    until FLOOD bytes went out, FLOOD_TIME passed, or the proxy stopped taking them; then it
    stays open (what it made the proxy hold stays held) until ``release``."""

    def __init__(self, proxy: Proxy, first: bytes, repeat: bytes) -> None:
        super().__init__(daemon=True)
        self.proxy = proxy
        self.first = first
        self.repeat = repeat
        self.sent = 0
        self.finished = threading.Event()
        self.release = threading.Event()

    def run(self) -> None:
        try:
            self._send()
        finally:
            self.finished.set()

    def _send(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect((LOOPBACK, self.proxy.https_port))
        ctx = ssl._create_unverified_context()
        with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
            tls.settimeout(STALL)
            block = self.repeat * max(1, 65536 // len(self.repeat))
            end = time.monotonic() + FLOOD_TIME
            try:
                tls.sendall(self.first)
                self.sent += len(self.first)
                while self.sent < FLOOD and time.monotonic() < end:
                    tls.sendall(block)
                    self.sent += len(block)
            except (TimeoutError, OSError):
                pass  # the proxy stopped reading, or refused and closed: the flood is over
            self.finished.set()
            self.release.wait(timeout=120)


def _served(proxy: Proxy) -> bool:
    got = tls_request(
        proxy.https_port,
        "localhost",
        b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        timeout=30,
    )
    return got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"hello")


def _while_flooding(proxy: Proxy, flood: Flood) -> tuple[int, int]:
    """The second client's answers while ``flood`` runs (asserted all good), and the peak
    growth of the proxy's resident memory in KiB (sampled between the second client's
    requests, and once more when the flood is over, with its connection still open)."""
    for _ in range(4):  # (warm: the first requests of each worker allocate for good)
        assert _served(proxy)
    base = proxy_rss_kib(proxy)
    peak = base
    served = failed = 0
    flood.start()
    try:
        while not flood.finished.is_set() or served == 0:
            if _served(proxy):
                served += 1
            else:
                failed += 1
            peak = max(peak, proxy_rss_kib(proxy))
        if _served(proxy):
            served += 1
        else:
            failed += 1
        peak = max(peak, proxy_rss_kib(proxy))
    finally:
        flood.release.set()
        flood.join(timeout=30)
    assert failed == 0, f"{failed} requests of the second client failed"
    return served, peak - base


FLOODS = {
    "pipelined GETs behind a slow one": (
        b"GET /slow?s=50 HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET /hello HTTP/1.1\r\nHost: localhost\r\n" + PAD + b"\r\n",
    ),
    "an endless chunked trailer": (
        b"POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n",
        b"X-Trailer: " + b"t" * 1000 + b"\r\n",
    ),
    "bytes after an Upgrade not yet answered": (
        b"GET /slow?s=50 HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\n"
        b"Upgrade: websocket\r\n\r\n",
        b"u" * 4096,
    ),
    "pipelined POST bodies": (
        b"GET /slow?s=50 HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 60000\r\n\r\n" + b"b" * 60000,
    ),
}


@pytest.mark.parametrize("kind", list(FLOODS))
def test_one_flooding_client_does_not_grow_memory(proxy: Proxy, kind: str) -> None:
    flood = Flood(proxy, *FLOODS[kind])
    served, grown = _while_flooding(proxy, flood)
    assert served >= 2
    assert grown < BOUND, f"{kind}: RSS grew by {grown} KiB after {flood.sent} bytes sent"


class EndlessHead(Flood):
    """One request whose upstream response head never ends (FLOOD bytes of header lines)."""

    answer = b""

    def run(self) -> None:
        try:
            self.answer = tls_request(
                self.proxy.https_port,
                "localhost",
                b"GET /endless-head?n=%d HTTP/1.1\r\nHost: localhost\r\n"
                b"Connection: close\r\n\r\n" % FLOOD,
                timeout=60,
            )
        finally:
            self.finished.set()


def test_endless_upstream_response_head_is_502_at_once(proxy: Proxy) -> None:
    ask = EndlessHead(proxy, b"", b"")
    served, grown = _while_flooding(proxy, ask)
    assert served >= 2
    assert ask.answer.startswith(b"HTTP/1.1 502 "), ask.answer[:200]
    assert grown < BOUND, f"RSS grew by {grown} KiB"
