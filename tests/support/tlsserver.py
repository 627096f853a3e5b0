"""Small real servers for ``certsmith check`` tests: a TLS server (Python ssl, any chain, any
TLS versions) answering HTTP, and a plain HTTP server answering a fixed status. Both run in
threads on 127.0.0.1 and serve every connection until closed."""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
import socket
import ssl
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.net import LOOPBACK, free_port, port_open, wait_until


class _Server(abc.ABC):
    def __init__(self) -> None:
        self.port = free_port()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((LOOPBACK, self.port))
        self._sock.listen(16)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        wait_until(lambda: port_open(self.port), what=f"test server on {self.port}")
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve_one, args=(conn,), daemon=True).start()

    def _serve_one(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError), conn:
            self.handle(conn)

    @abc.abstractmethod
    def handle(self, conn: socket.socket) -> None:
        """Serve one accepted connection."""

    @staticmethod
    def _answer(conn: socket.socket, head: str) -> None:
        conn.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        conn.sendall(head.encode())

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class TlsServer(_Server):
    """Serves ``certfile`` (leaf first, then whatever chain it holds) on TLS."""

    def __init__(
        self,
        certfile: Path,
        keyfile: Path,
        *,
        versions: tuple[str, ...] = (),
        headers: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(certfile), str(keyfile))
        if versions:
            tls = {
                "TLSv1": ssl.TLSVersion.TLSv1,
                "TLSv1.1": ssl.TLSVersion.TLSv1_1,
                "TLSv1.2": ssl.TLSVersion.TLSv1_2,
                "TLSv1.3": ssl.TLSVersion.TLSv1_3,
            }
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.set_ciphers("ALL:@SECLEVEL=0")
                ctx.minimum_version = tls[versions[0]]
                ctx.maximum_version = tls[versions[-1]]
        self.ctx = ctx
        self.head = (
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n"
            + "".join(f"{h}\r\n" for h in headers)
            + "\r\n"
        )

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with self.ctx.wrap_socket(conn, server_side=True) as tls:
            self._answer(tls, self.head)


class HttpServer(_Server):
    """Plain HTTP: ``status`` with an optional Location header."""

    def __init__(self, status: int = 200, location: str | None = None) -> None:
        super().__init__()
        loc = f"Location: {location}\r\n" if location else ""
        self.head = f"HTTP/1.1 {status} X\r\n{loc}Content-Length: 0\r\nConnection: close\r\n\r\n"

    def handle(self, conn: socket.socket) -> None:
        self._answer(conn, self.head)


@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def make_cert(
    cn: str,
    *,
    issuer: Issued | None = None,
    names: tuple[str, ...] = (),
    ca: bool = False,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Issued:
    """A certificate made with ``cryptography``: a CA (``ca=True``) or a leaf for ``names``,
    signed by ``issuer`` (self-signed without one)."""
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(days=1))
        .not_valid_after(not_after or now + dt.timedelta(days=90))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), False
        )
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names or (cn,)]), False
        )
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False
        )
    return Issued(builder.sign(signer_key, hashes.SHA256()), key)
