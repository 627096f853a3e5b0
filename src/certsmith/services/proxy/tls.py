"""TLS for the proxy's client connections, on a plain event-loop transport.

An ``ssl.SSLObject`` with two memory BIOs per connection, driven from the raw socket's bytes.
The event loop's own TLS transport (uvloop's SSLProtocol) would do the same job, but it keeps a
256 KiB receive buffer per connection (at least one resident page each, idle or not), calls
OpenSSL through ``ssl.py``'s Python wrappers and ends every read in an ``SSLWantReadError``.
Here all connections of a worker share the receive and plaintext buffers (one event-loop
thread; each read is consumed before the next one starts), a read that brought whole records
is decrypted without an exception, and an alert OpenSSL writes when it refuses a handshake
(``unrecognized_name`` for an unknown SNI) reaches the client before the connection closes.

:class:`TlsTransport` is the protocol the event loop sees and the transport the application
protocol sees (``write``, ``close``, ``abort``, ``pause_reading``, ``get_extra_info``, ...). The
application gets ``connection_made`` when the TCP connection arrives (so its deadlines cover the
handshake), ``tls_ready()`` once the handshake is done, then ``data_received`` with plaintext.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any, Protocol

_WantRead = ssl.SSLWantReadError
_ZeroReturn = ssl.SSLZeroReturnError
_SSLError = ssl.SSLError
PLAIN_MAX = 65536  # the largest TLS record plaintext is 16 KiB; a read never needs more
# A memory BIO keeps the largest size it ever held, for the life of the connection: bytes go
# in and out of OpenSSL in pieces of at most these sizes, so a connection that once moved a
# large body does not keep a large buffer afterwards.
RAW_READ = 32 * 1024
WRITE_PIECE = 16 * 1024  # one TLS record


class App(Protocol):
    """What the application protocol on top provides."""

    def connection_made(self, transport: Any) -> None: ...

    def tls_ready(self) -> None: ...

    def data_received(self, data: bytes) -> None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...


class Buffers:
    """One worker's shared buffers: raw bytes from the socket, plaintext from OpenSSL."""

    __slots__ = ("plain", "raw")

    def __init__(self, raw_size: int = RAW_READ) -> None:
        self.raw = memoryview(bytearray(raw_size))
        self.plain = memoryview(bytearray(PLAIN_MAX))


class TlsTransport(asyncio.BufferedProtocol):
    __slots__ = (
        "app",
        "buffers",
        "closing",
        "context",
        "core",
        "incoming",
        "outgoing",
        "paused",
        "raw",
        "ready",
        "sslobj",
    )

    def __init__(self, app: App, context: ssl.SSLContext, buffers: Buffers) -> None:
        self.app = app
        self.context = context
        self.buffers = buffers
        self.raw: Any = None
        self.sslobj: ssl.SSLObject | None = None
        self.core: Any = None
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.ready = False
        self.paused = False
        self.closing = False

    # -- the event loop's side ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = transport
        self.sslobj = self.context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        # Reads and writes go to the C object under ssl.SSLObject when there is one: its
        # read/write are what SSLObject's Python methods call, minus a frame each.
        self.core = getattr(self.sslobj, "_sslobj", self.sslobj)
        self.app.connection_made(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffers.raw

    def buffer_updated(self, nbytes: int) -> None:
        self.incoming.write(self.buffers.raw[:nbytes])
        if self.ready:
            self._read()
        else:
            self._handshake()

    def eof_received(self) -> bool:
        return False  # the client is done: close (TLS has no half-close we serve)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.app.connection_lost(exc)

    def pause_writing(self) -> None:
        self.app.pause_writing()

    def resume_writing(self) -> None:
        self.app.resume_writing()

    # -- TLS --------------------------------------------------------------------------------------

    def _handshake(self) -> None:
        sslobj = self.sslobj
        assert sslobj is not None
        try:
            sslobj.do_handshake()
        except _WantRead:
            self._flush()
            return
        except (_SSLError, OSError):
            # Refused (no shared protocol or cipher, an unknown name, garbage): OpenSSL wrote
            # an alert saying why; send it and close.
            self._flush()
            self.closing = True
            self.raw.close()
            return
        self._flush()
        self.ready = True
        self.app.tls_ready()
        if self.incoming.pending and not self.closing:
            self._read()  # the first request came with the client's Finished

    def _read(self) -> None:
        sslobj = self.core
        plain = self.buffers.plain
        incoming = self.incoming
        app = self.app
        while not self.paused and not self.closing:
            try:
                size = sslobj.read(PLAIN_MAX, plain)
            except _WantRead:
                break
            except _ZeroReturn:  # close_notify (when the ssl module raises for it)
                self.close()
                return
            except (_SSLError, OSError):
                self.abort()
                return
            if not size:  # close_notify
                self.close()
                return
            app.data_received(plain[:size].tobytes())
            if not incoming.pending:
                break  # every record that came is read; asking again would raise WantRead
        if self.outgoing.pending:
            self._flush()  # (post-handshake messages: session tickets, key updates)

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.raw.write(data)

    # -- the application's side (a transport) ---------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.closing or not self.ready:
            return  # (nothing can be sent before the handshake: the caller gives up anyway)
        if len(data) <= WRITE_PIECE:
            self.core.write(data)
            self.raw.write(self.outgoing.read())
            return
        view = memoryview(data)
        records = []
        for start in range(0, len(view), WRITE_PIECE):
            self.core.write(view[start : start + WRITE_PIECE])
            records.append(self.outgoing.read())
        self.raw.writelines(records)

    def close(self) -> None:
        """Send close_notify and whatever is buffered, then close."""
        if self.closing:
            return
        self.closing = True
        if self.ready and self.sslobj is not None:
            # (unwrap then waits for the client's close_notify, which is not needed here)
            with contextlib.suppress(_SSLError, OSError):
                self.sslobj.unwrap()
            self._flush()
        self.raw.close()

    def abort(self) -> None:
        self.closing = True
        if self.raw is not None:
            self.raw.abort()

    def is_closing(self) -> bool:
        return self.closing or self.raw is None or bool(self.raw.is_closing())

    def pause_reading(self) -> None:
        if not self.paused:
            self.paused = True
            if not self.closing:
                self.raw.pause_reading()

    def resume_reading(self) -> None:
        if self.paused:
            self.paused = False
            if not self.closing:
                self.raw.resume_reading()
                if self.ready and self.incoming.pending:
                    self._read()  # records that arrived before the pause

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self.sslobj
        return self.raw.get_extra_info(name, default) if self.raw is not None else default
