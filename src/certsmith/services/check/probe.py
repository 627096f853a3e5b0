"""The I/O shell of ``certsmith check``: TLS handshakes and HTTP requests, nothing judged here."""

from __future__ import annotations

import contextlib
import socket
import ssl
import warnings
from concurrent.futures import ThreadPoolExecutor

from certsmith.services.check.target import Target
from certsmith.services.check.verdict import (
    TLS_VERSIONS,
    CipherProbe,
    HttpAnswer,
    Observation,
    parse_response_head,
)

_HEAD_LIMIT = 65536


# OpenSSL cipher strings for the TLS 1.2 probes: key exchange with forward secrecy, and without.
FORWARD_SECRET = "kECDHE:kDHE"
STATIC_RSA = "kRSA"


def _context(version: str | None = None, ciphers: str = "ALL") -> ssl.SSLContext:
    """A client context that accepts anything (judging is verdict.py's job), old versions too."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # Security level 0: OpenSSL 3 otherwise refuses TLS 1.0/1.1, RSA-1024 and SHA-1
        # before we can report them. A restricted list must hold, or the probe would lie.
        with contextlib.suppress(ssl.SSLError) if ciphers == "ALL" else contextlib.nullcontext():
            ctx.set_ciphers(f"{ciphers}:@SECLEVEL=0")
        if version is None:
            with contextlib.suppress(ValueError, ssl.SSLError):
                ctx.minimum_version = ssl.TLSVersion.TLSv1
        else:
            tls = {
                "TLSv1": ssl.TLSVersion.TLSv1,
                "TLSv1.1": ssl.TLSVersion.TLSv1_1,
                "TLSv1.2": ssl.TLSVersion.TLSv1_2,
                "TLSv1.3": ssl.TLSVersion.TLSv1_3,
            }[version]
            ctx.minimum_version = tls
            ctx.maximum_version = tls
    return ctx


def _sni(target: Target) -> str | None:
    return None if target.is_ip else target.host


def _chain(sock: ssl.SSLSocket) -> tuple[bytes, ...]:
    """The certificates as the server sent them, leaf first (DER)."""
    public = getattr(sock, "get_unverified_chain", None)  # Python 3.13+
    if public is not None:
        return tuple(bytes(c) for c in public())
    sslobj = getattr(sock, "_sslobj", None)
    certs = sslobj.get_unverified_chain() if sslobj is not None else None
    if certs:
        return tuple(c.public_bytes(ssl._ssl.ENCODING_DER) for c in certs)  # type: ignore[attr-defined]
    leaf = sock.getpeercert(binary_form=True)
    return (leaf,) if leaf else ()


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < _HEAD_LIMIT:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _request(target: Target) -> bytes:
    host = f"[{target.host}]" if ":" in target.host else target.host
    return (
        f"GET {target.path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: certsmith-check\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode()


def _describe(exc: BaseException, what: str) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {what}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {what}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer from {what} (timed out)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {what} failed: {exc.reason or exc}"
    return f"cannot connect to {what}: {getattr(exc, 'strerror', None) or exc}"


def _offers(target: Target, version: str, timeout: float) -> bool:
    try:
        with (
            socket.create_connection((target.address, target.port), timeout=timeout) as raw,
            _context(version).wrap_socket(raw, server_hostname=_sni(target)),
        ):
            return True
    except (OSError, ValueError):
        return False


def _cipher(target: Target, ciphers: str, timeout: float) -> tuple[bool, str | None]:
    """The TLS 1.2 cipher the server picks among ``ciphers`` only: (True, name), (True, None)
    when it refuses them all, (False, None) when the connection itself failed (a time-out on
    a loaded machine says nothing about the server's ciphers)."""
    try:
        with (
            socket.create_connection((target.address, target.port), timeout=timeout) as raw,
            _context("TLSv1.2", ciphers).wrap_socket(raw, server_hostname=_sni(target)) as sock,
        ):
            chosen = sock.cipher()
            return True, chosen[0] if chosen else None
    except (ssl.SSLError, ConnectionResetError):
        return True, None
    except (OSError, ValueError):
        return False, None


def _http(target: Target, timeout: float) -> HttpAnswer:
    assert target.http_port is not None
    where = f"{target.address}:{target.http_port}"
    try:
        with socket.create_connection((target.address, target.http_port), timeout=timeout) as sock:
            sock.sendall(_request(target))
            return parse_response_head(_read_head(sock))
    except OSError as exc:
        return HttpAnswer(error=_describe(exc, where))


def observe(target: Target, timeout: float = 10.0) -> Observation:
    """Connect, fetch the chain and an HTTPS response head, probe versions and plain HTTP."""
    where = f"{target.address}:{target.port}"
    with ThreadPoolExecutor(max_workers=len(TLS_VERSIONS) + 3) as pool:
        offered = {v: pool.submit(_offers, target, v, timeout) for v in TLS_VERSIONS}
        forward_secret = pool.submit(_cipher, target, FORWARD_SECRET, timeout)
        static_rsa = pool.submit(_cipher, target, STATIC_RSA, timeout)
        http = pool.submit(_http, target, timeout) if target.http_port else None
        try:
            with (
                socket.create_connection((target.address, target.port), timeout=timeout) as raw,
                _context().wrap_socket(raw, server_hostname=_sni(target)) as sock,
            ):
                chain = _chain(sock)
                protocol = sock.version()
                try:
                    sock.sendall(_request(target))
                    https = parse_response_head(_read_head(sock))
                except OSError as exc:
                    https = HttpAnswer(error=_describe(exc, where))
        except (OSError, ValueError) as exc:
            return Observation(error=_describe(exc, where))
        versions = tuple(v for v in TLS_VERSIONS if offered[v].result())
        (fs_known, fs), (rsa_known, rsa) = forward_secret.result(), static_rsa.result()
        tls12 = CipherProbe(forward_secret=fs, static_rsa=rsa) if fs_known and rsa_known else None
        return Observation(
            chain_der=chain,
            protocol=protocol,
            versions=versions,
            https=https,
            http=http.result() if http else None,
            tls12=tls12,
        )
