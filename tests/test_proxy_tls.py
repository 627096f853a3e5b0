"""The proxy's TLS layer without sockets: a real client SSLObject on one side, TlsTransport on
the other, bytes handed over in whatever pieces the test chooses (as TCP may deliver them)."""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path
from typing import Any

import pytest

from certsmith.base.identifiers import parse_identifiers
from certsmith.core.issuers.localca import LocalCA
from certsmith.services.proxy import certs, tls


class Raw:
    """The event loop's transport, recorded."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = self.aborted = self.paused = False

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def writelines(self, pieces: list[bytes]) -> None:
        self.sent.extend(pieces)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 4242) if name == "peername" else default


class App:
    def __init__(self) -> None:
        self.transport: Any = None
        self.ready = 0
        self.data: list[bytes] = []
        self.lost = False
        self.pause_after: int | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def tls_ready(self) -> None:
        self.ready += 1

    def data_received(self, data: bytes) -> None:
        self.data.append(data)
        if self.pause_after is not None and len(self.data) >= self.pause_after:
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    home = tmp_path_factory.mktemp("home")
    ca = LocalCA(home)
    inter = ca.ensure()
    leaf = ca.issue(list(parse_identifiers(["localhost"])))
    chain, key = home / "chain.pem", home / "key.pem"
    chain.write_bytes(leaf.chain_pem)
    assert leaf.key_pem is not None
    key.write_bytes(leaf.key_pem)
    site = certs.site_context(str(chain), str(key))
    dispatch = certs.dispatch_context()

    def sni(sslobj: Any, name: str | None, _ctx: ssl.SSLContext) -> int | None:
        if name not in (None, "localhost"):
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME  # type: ignore[no-any-return]
        sslobj.context = site
        return None

    dispatch.sni_callback = sni
    assert inter is not None
    return dispatch, home / "ca" / "root.pem"


class Pair:
    """A client talking to a TlsTransport; ``pieces`` says how client bytes are cut up."""

    def __init__(self, pki: tuple[ssl.SSLContext, Path], name: str = "localhost") -> None:
        dispatch, root = pki
        self.raw, self.app = Raw(), App()
        self.buffers = tls.Buffers()
        self.server = tls.TlsTransport(self.app, dispatch, self.buffers)
        self.server.connection_made(self.raw)
        client = ssl.create_default_context(cafile=str(root))
        self.cin, self.cout = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.client = client.wrap_bio(self.cin, self.cout, server_hostname=name)

    def deliver(self, data: bytes, piece: int = 0) -> None:
        pieces = [data] if not piece else [data[i : i + piece] for i in range(0, len(data), piece)]
        for p in pieces:
            self.buffers.raw[: len(p)] = p
            self.server.buffer_updated(len(p))

    def to_client(self) -> None:
        for data in self.raw.sent:
            self.cin.write(data)
        self.raw.sent.clear()

    def handshake(self, piece: int = 0) -> None:
        for _ in range(10):
            try:
                self.client.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            self.deliver(self.cout.read(), piece)
            self.to_client()
            if done:
                return
        raise AssertionError("no handshake")

    def reply(self) -> bytes:
        self.to_client()
        out = b""
        while True:
            try:
                out += self.client.read(65536)
            except ssl.SSLWantReadError:
                return out


def test_handshake_then_data_both_ways(pki: Any) -> None:
    pair = Pair(pki)
    pair.handshake()
    assert pair.app.ready == 1 and pair.server.get_extra_info("ssl_object") is not None
    pair.client.write(b"GET / HTTP/1.1\r\n\r\n")
    pair.deliver(pair.cout.read())
    assert pair.app.data == [b"GET / HTTP/1.1\r\n\r\n"]
    pair.server.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert pair.reply() == b"HTTP/1.1 200 OK\r\n\r\n"


def test_a_large_write_goes_out_in_records(pki: Any) -> None:
    pair = Pair(pki)
    pair.handshake()
    body = bytes(range(256)) * 400  # 100 KiB: seven records
    pair.server.write(body)
    assert len(pair.raw.sent) == 7
    assert pair.reply() == body


@pytest.mark.parametrize("piece", [1, 3, 7, 100])
def test_records_split_across_reads(pki: Any, piece: int) -> None:
    pair = Pair(pki)
    pair.handshake(piece)
    for i in range(3):
        pair.client.write(b"request %d" % i)
    pair.deliver(pair.cout.read(), piece)
    assert b"".join(pair.app.data) == b"request 0request 1request 2"


def test_many_records_in_one_read_and_pause(pki: Any) -> None:
    pair = Pair(pki)
    pair.handshake()
    for i in range(5):
        pair.client.write(b"r%d" % i)
    pair.app.pause_after = 2
    pair.deliver(pair.cout.read())  # five records in one piece
    assert pair.app.data == [b"r0", b"r1"] and pair.raw.paused
    pair.app.pause_after = None
    pair.server.resume_reading()  # the three left in the buffer are read at once
    assert pair.app.data == [b"r0", b"r1", b"r2", b"r3", b"r4"] and not pair.raw.paused


def test_first_request_with_the_clients_finished(pki: Any) -> None:
    """TLS 1.3 clients send their first request right behind the Finished message."""
    pair = Pair(pki)
    with contextlib.suppress(ssl.SSLWantReadError):
        pair.client.do_handshake()
    pair.deliver(pair.cout.read())
    pair.to_client()
    pair.client.do_handshake()  # done on the client side: Finished is in cout
    pair.client.write(b"early request")
    pair.deliver(pair.cout.read())  # Finished and the request, one piece
    assert pair.app.ready == 1 and pair.app.data == [b"early request"]


def test_close_notify_and_close(pki: Any) -> None:
    pair = Pair(pki)
    pair.handshake()
    with pytest.raises(ssl.SSLWantReadError):
        pair.client.unwrap()  # sends close_notify, waits for ours
    pair.deliver(pair.cout.read())
    assert pair.raw.closed  # answered with close_notify, then closed
    pair.to_client()
    pair.client.unwrap()
    pair.server.write(b"too late")  # ignored once closing
    assert pair.raw.sent == []


def test_unknown_name_gets_the_alert(pki: Any) -> None:
    pair = Pair(pki, "other.test")
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        pair.handshake()
    assert pair.raw.closed and pair.app.ready == 0


def test_garbage_and_writes_before_the_handshake(pki: Any) -> None:
    pair = Pair(pki)
    pair.server.write(b"nothing can be sent yet")
    assert pair.raw.sent == []
    pair.deliver(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")  # plain HTTP on the TLS port
    assert pair.raw.closed and pair.app.ready == 0 and pair.app.data == []
