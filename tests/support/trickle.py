"""A server that answers one byte at a time, every ``interval`` seconds, forever: each read
gets data long before any per-read timeout, so only a total deadline ends the exchange.
Plain TCP, or TLS with a self-signed certificate for 127.0.0.1 (``ca_file`` verifies it).
Threads on 127.0.0.1; stopped by ``close()``."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from pathlib import Path
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.net import LOOPBACK, free_port, port_open, wait_until


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trickle")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "trickle.pem", directory / "trickle.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class TrickleServer:
    """After reading the client's first bytes (unless ``speak_first``, as SMTP does), sends
    ``answer`` one byte per ``interval`` seconds, then keeps sending spaces."""

    def __init__(
        self,
        directory: Path,
        *,
        tls: bool = False,
        answer: bytes = b"HTTP/1.1 200 OK\r\n",
        speak_first: bool = False,
        interval: float = 0.5,
    ) -> None:
        self.port = free_port()
        self.answer = answer
        self.speak_first = speak_first
        self.interval = interval
        self._context: ssl.SSLContext | None = None
        self.ca_file: Path | None = None
        if tls:
            self.ca_file, key = _self_signed(directory)
            self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._context.load_cert_chain(self.ca_file, key)
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((LOOPBACK, self.port))
        self._sock.listen(16)
        self._stop = threading.Event()
        self.connections = 0
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self._context else 'http'}://{LOOPBACK}:{self.port}"

    def start(self) -> Self:
        self._thread.start()
        wait_until(lambda: port_open(self.port), what=f"trickle server on {self.port}")
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        self.connections += 1
        try:
            conn = self._context.wrap_socket(raw, server_side=True) if self._context else raw
            if not self.speak_first:
                conn.recv(65536)
            data = self.answer
            i = 0
            while not self._stop.wait(self.interval):
                conn.sendall(data[i : i + 1] if i < len(data) else b" ")
                i += 1
        except OSError:
            pass
        finally:
            raw.close()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=5)
