"""The proxy's own cost per keep-alive request, without sockets: a repeatable measure.

wrk's req/s on a shared machine swings by 15% or more between runs, and that is more than most
changes to the hot path are worth. This runs the real code a request goes through — the TLS
layer (with a real client ``SSLObject`` on the other side), the fast or general HTTP path, the
upstream pool — on in-memory transports, and reports the cost per request:

    .venv/bin/python bench/proxy_hotpath.py              # microseconds (noisy, quick)
    .venv/bin/python bench/proxy_hotpath.py --callgrind  # instructions (valgrind; repeatable)

``--request browser`` sends a 400-byte browser-like head instead of wrk's one-field head. The
instruction count includes the client's share of TLS (one encryption and one decryption per
request); compare counts, not absolute values, before and after a change.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from certsmith.services.proxy import config, server, tls, upstream
from certsmith.services.proxy.certs import SiteContexts, dispatch_context
from certsmith.services.proxy.issuing import ensure_local_sites

REQUESTS = {
    "wrk": b"GET / HTTP/1.1\r\nHost: localhost:8443\r\n\r\n",
    "browser": (
        b"GET /static/app.js?v=3 HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n"
        b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like "
        b"Gecko) Chrome/126.0 Safari/537.36\r\nAccept: */*\r\nAccept-Language: en-US,"
        b"en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\nReferer: https://localhost/"
        b"\r\nCookie: session=abcdef0123456789; theme=dark\r\nSec-Fetch-Dest: script\r\n"
        b"Sec-Fetch-Mode: no-cors\r\nSec-Fetch-Site: same-origin\r\n\r\n"
    ),
}
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 01 Dec 2026 19:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\n"
    b"hello world\n"
)


class Transport:
    """An event-loop transport that keeps what is written."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def writelines(self, pieces: list[bytes]) -> None:
        self.sent.extend(pieces)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


async def run(home: Path, request: bytes, count: int, warm: int) -> float:
    """Seconds per request, after ``warm`` requests."""
    conf = config.from_cli(["localhost"], "127.0.0.1:9", hsts=True)
    contexts = SiteContexts(home, conf.sites)
    dispatch = dispatch_context()
    worker = server.Worker(conf, contexts, [], [], dispatch)
    contexts.install(dispatch)
    raw = Transport()
    conn = tls.TlsTransport(server.HttpsConnection(worker), dispatch, worker.tls_buffers)
    conn.connection_made(raw)  # type: ignore[arg-type]
    client_ctx = ssl.create_default_context(cafile=str(home / "ca" / "root.pem"))
    cin, cout = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(cin, cout, server_hostname="localhost")
    buffer = worker.tls_buffers.raw

    def to_server(data: bytes) -> None:
        buffer[: len(data)] = data
        conn.buffer_updated(len(data))

    def to_client() -> None:
        for data in raw.sent:
            cin.write(data)
        raw.sent.clear()

    for _ in range(10):
        try:
            client.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        to_server(cout.read())
        to_client()
        if done:
            break
    pool = worker.sites[0].pool
    app = upstream.UpstreamConnection(pool)
    app_side = Transport()
    app.connection_made(app_side)  # type: ignore[arg-type]
    pool.release(app)
    reply = bytearray(65536)

    def one() -> int:
        client.write(request)
        to_server(cout.read())
        app.data_received(RESPONSE)
        app_side.sent.clear()
        to_client()
        return client.read(65536, reply)  # type: ignore[arg-type, return-value]

    for _ in range(warm):
        size = one()
    if warm:
        assert bytes(reply[:size]).endswith(b"hello world\n"), bytes(reply[:size])
    start = time.perf_counter()
    for _ in range(count):
        one()
    return (time.perf_counter() - start) / max(count, 1)


def callgrind(args: argparse.Namespace) -> int:
    """Instructions per request: the difference of two runs, ``count`` requests apart."""
    if not shutil.which("valgrind"):
        print("valgrind not found (apt install valgrind)")
        return 2
    totals = []
    for count in (0, args.count):
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--request",
            args.request,
            "--count",
            str(count),
            "--home",
            str(args.home),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
        totals.append(int(re.search(r"Collected : (\d+)", out).group(1)))  # type: ignore[union-attr]
    print(
        f"{args.request}: {(totals[1] - totals[0]) / args.count:,.0f} instructions per request "
        f"(callgrind, {args.count} requests)"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--request", choices=sorted(REQUESTS), default="wrk")
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--home", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    made = args.home is None
    if made:
        args.home = Path(tempfile.mkdtemp(prefix="bench-hotpath-"))
        ensure_local_sites(
            config.from_cli(["localhost"], "127.0.0.1:9"), args.home, lambda _line: None
        )
    try:
        if args.callgrind:
            args.count = args.count or 3000
            return callgrind(args)
        if args.count is not None:  # (one measured run, as callgrind needs it)
            asyncio.run(run(args.home, REQUESTS[args.request], args.count, 2000))
            return 0
        best = min(
            asyncio.run(run(args.home, REQUESTS[args.request], 20000, 2000)) for _ in range(5)
        )
        print(f"{args.request}: {best * 1e6:.2f} us per request (best of 5 x 20,000)")
        return 0
    finally:
        if made:
            shutil.rmtree(args.home, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
