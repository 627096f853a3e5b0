"""A small real upstream app for the proxy tests: HTTP/1.1 keep-alive on asyncio + httptools,
plus a WebSocket echo (the ``websockets`` package) on a second port. Run as a process:

    python -m tests.support.upstream --port P [--ws-port W]

Endpoints (plain HTTP):
  GET  /hello               "hello" (Content-Length)
  GET  /headers             the request head as JSON (what the proxy forwarded)
  GET  /bytes?n=N[&chunked] N bytes, streamed in 64 KiB pieces (chunked or Content-Length)
  POST /upload              consumes the body as it arrives; answers its length and SHA-256
  GET  /slow?s=SECONDS      answers after SECONDS
  GET  /stats               connections accepted and open so far, requests per path (JSON)
  ANY  /once                "once" on a connection's first request; on a later request on the
                            same kept-alive connection: closes it without answering
  GET  /endless-head?n=N    a response head that never ends (N bytes of header lines, then the
                            connection closes)
  ANY  /misframed?kind=K    more than the framing says: K=long "hello" + 5 bytes past its
                            Content-Length, K=204 / K=304 with a body, K=head a body even to HEAD
  an Upgrade request        never switched: answered (or not) as its path says, and whatever the
                            client sends after it is read and discarded
  HEAD any of them          the head only
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import httptools

PIECE = b"x" * 65536


class Stats:
    accepted = 0
    open = 0
    requests: ClassVar[dict[str, int]] = {}


class AppConnection(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.served = 0  # requests on this connection
        self.upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        Stats.accepted += 1
        Stats.open += 1

    def connection_lost(self, exc: Exception | None) -> None:
        Stats.open -= 1
        for task in self.tasks:
            task.cancel()

    def data_received(self, data: bytes) -> None:
        if self.upgraded:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.upgraded = True
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.size = 0
        self.digest = hashlib.sha256()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode(), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        self.digest.update(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode()
        parts = urlsplit(self.url.decode())
        query = parse_qs(parts.query, keep_blank_values=True)
        head_only = method == "HEAD"
        path = parts.path
        Stats.requests[path] = Stats.requests.get(path, 0) + 1
        self.served += 1
        if path == "/once":
            if self.served == 1:
                self.reply(200, b"once", head_only)
            else:
                assert self.transport is not None
                self.transport.close()
        elif path == "/endless-head":
            n = int(query.get("n", ["0"])[0])
            task = asyncio.get_running_loop().create_task(self.endless_head(n))
            self.tasks.add(task)
        elif path == "/misframed":
            kind = query.get("kind", ["long"])[0]
            assert self.transport is not None
            if kind == "long":
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA")
            elif kind in ("204", "304"):
                self.transport.write(b"HTTP/1.1 %s X\r\n\r\nbody" % kind.encode())
            else:
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        elif path == "/hello":
            self.reply(200, b"hello", head_only)
        elif path == "/headers":
            self.reply(
                200,
                json.dumps(
                    {"method": method, "target": self.url.decode(), "headers": self.headers}
                ).encode(),
                head_only,
                b"application/json",
            )
        elif path == "/upload":
            self.reply(
                200,
                json.dumps({"size": self.size, "sha256": self.digest.hexdigest()}).encode(),
                head_only,
            )
        elif path == "/stats":
            self.reply(
                200,
                json.dumps(
                    {"accepted": Stats.accepted, "open": Stats.open, "requests": Stats.requests}
                ).encode(),
                head_only,
            )
        elif path == "/bytes":
            n = int(query.get("n", ["0"])[0])
            task = asyncio.get_running_loop().create_task(
                self.stream(n, "chunked" in query, head_only)
            )
            self.tasks.add(task)
        elif path == "/slow":
            delay = float(query.get("s", ["1"])[0])
            loop = asyncio.get_running_loop()
            loop.call_later(delay, self.reply, 200, b"slow", head_only)
        else:
            self.reply(404, b"not found", head_only)

    def reply(
        self, status: int, body: bytes, head_only: bool, ctype: bytes = b"text/plain"
    ) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        head = b"HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (
            status,
            ctype,
            len(body),
        )
        self.transport.write(head if head_only else head + body)

    async def stream(self, n: int, chunked: bool, head_only: bool) -> None:
        assert self.transport is not None
        transport = self.transport
        if chunked:
            transport.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        else:
            transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
        if head_only:
            return
        left = n
        while left > 0:
            piece = PIECE[: min(left, len(PIECE))]
            left -= len(piece)
            transport.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            while transport.get_write_buffer_size() > 1 << 20:
                await asyncio.sleep(0.001)
                if transport.is_closing():
                    return
        if chunked:
            transport.write(b"0\r\n\r\n")

    async def endless_head(self, n: int) -> None:
        assert self.transport is not None
        transport = self.transport
        transport.write(b"HTTP/1.1 200 OK\r\n")
        line = b"X-Filler: " + b"y" * 1000 + b"\r\n"
        for _ in range(n // len(line)):
            transport.write(line)
            while transport.get_write_buffer_size() > 1 << 20:
                await asyncio.sleep(0.001)
                if transport.is_closing():
                    return
        transport.close()


async def _ws_echo(ws: object) -> None:
    async for message in ws:  # type: ignore[attr-defined]
        await ws.send(message)  # type: ignore[attr-defined]


async def main(port: int, ws_port: int | None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(AppConnection, "127.0.0.1", port, backlog=4096)
    if ws_port:
        from websockets.asyncio.server import serve

        await serve(_ws_echo, "127.0.0.1", ws_port)
    print("ready", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ws-port", type=int)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.ws_port))
