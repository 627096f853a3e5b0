"""Proof that a web server runs the configuration certsmith just wrote.

A reload command's exit status proves little: ``nginx -s reload`` exits 0 when the new
configuration cannot bind (nginx keeps the old one), ``apache2ctl graceful`` and lighttpd's
SIGUSR1 return before the new generation is up. So after a reload certsmith asks the server
itself, as a client would: the HTTPS port presents the certificate just installed (for the
site's name, by SNI), and the HTTP port answers the redirect that was asked for. Reloads are
graceful and take a moment, so every check polls until a deadline.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass

from certsmith.base.policy import ACME_CHALLENGE_PREFIX

ACME_PROBE = ACME_CHALLENGE_PREFIX + "certsmith-health"
REDIRECT_PROBE = "/certsmith-redirect-check"
PROOF_TIMEOUT = 15.0  # seconds a graceful reload may take on a loaded machine


@dataclass(frozen=True)
class Expectation:
    """What the running server shows once the new configuration is live.

    ``https_port``/``leaf_der``: the HTTPS port (on ``https_host``, default ``host``) presents
    exactly this leaf for ``hostname`` (sent by SNI unless it is an address); ``redirect``:
    (status, Location) a plain-HTTP request for ``REDIRECT_PROBE`` with ``Host: hostname``
    gets; ``probe``: (path, body) a plain-HTTP GET with ``Host: hostname`` answers with 200
    (the challenge mapping)."""

    host: str
    http_port: int
    hostname: str = ""
    https_port: int | None = None
    leaf_der: bytes | None = None
    redirect: tuple[int, str] | None = None
    probe: tuple[str, bytes] | None = None
    https_host: str = ""

    @property
    def sni(self) -> str | None:
        return sni_for(self.hostname) if self.hostname else None

    @property
    def http_where(self) -> str:
        return _where(self.host, self.http_port)


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connect_host(address: str) -> str:
    """Where a local client reaches a listener bound to ``address`` (wildcards: loopback)."""
    address = address.strip("[]")
    if address in ("", "*", "0.0.0.0"):
        return "127.0.0.1"
    if address == "::":
        return "::1"
    return address


def hostname_for(name: str) -> str:
    """A name the site answers to: a label under a wildcard."""
    return "certsmith-check" + name[1:] if name.startswith("*.") else name


def sni_for(name: str) -> str | None:
    """What a client sends by SNI for ``name``: nothing for an address."""
    with contextlib.suppress(ValueError):
        import ipaddress

        ipaddress.ip_address(name.strip("[]"))
        return None
    return name


def leaf_of(fullchain_pem: bytes) -> bytes:
    """DER of the first certificate in a PEM chain."""
    text = fullchain_pem.decode("ascii", "replace")
    end_marker = "-----END CERTIFICATE-----"
    start = text.index("-----BEGIN CERTIFICATE-----")
    end = text.index(end_marker, start) + len(end_marker)
    return ssl.PEM_cert_to_DER_cert(text[start:end])


def serial_of(der: bytes) -> str:
    from cryptography import x509

    return f"{x509.load_der_x509_certificate(der).serial_number:x}"


def served_leaf(host: str, port: int, sni: str | None, timeout: float = 3.0) -> bytes:
    """The leaf a TLS client is shown (not verified: only its identity matters here)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise OSError("no certificate presented")
    return der


def http_get(
    host: str, port: int, hostname: str, path: str, timeout: float = 3.0
) -> tuple[int, str, bytes]:
    """(status, Location, body) of one plain-HTTP GET with ``Host: hostname``."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {hostname}\r\nConnection: close\r\n"
        "User-Agent: certsmith\r\n\r\n"
    ).encode()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while len(data) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    head = head_bytes.decode("latin-1").split("\r\n")
    parts = head[0].split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise OSError(f"no HTTP answer on {_where(host, port)}")
    location = ""
    for line in head[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == "location":
            location = value.strip()
    return int(parts[1]), location, body


def answers_http(host: str, port: int) -> bool:
    """One attempt: something accepts a connection there and answers HTTP."""
    try:
        http_get(host, port, host, ACME_PROBE, timeout=1.0)
    except OSError:
        return False
    return True


def wait_serving(host: str, port: int, timeout: float = PROOF_TIMEOUT) -> bool:
    """True once the server answers HTTP on (host, port), polling until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if answers_http(host, port):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def missing(expect: Expectation) -> str | None:
    """One round of checks: what the server does not show (yet), or None once it all holds."""
    if not answers_http(expect.host, expect.http_port):
        return f"nothing answers HTTP on {expect.http_where}"
    if expect.https_port is not None and expect.leaf_der is not None:
        tls_host = expect.https_host or expect.host
        where = _where(tls_host, expect.https_port)
        try:
            der = served_leaf(tls_host, expect.https_port, expect.sni)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
            return f"nothing answers TLS on {where} ({reason})"
        if der != expect.leaf_der:
            return (
                f"{where} serves certificate serial {serial_of(der)} for {expect.hostname}, "
                f"not the installed {serial_of(expect.leaf_der)}"
            )
    if expect.redirect is not None:
        status, location = expect.redirect
        try:
            got, got_location, _body = http_get(
                expect.host, expect.http_port, expect.hostname, REDIRECT_PROBE
            )
        except OSError as exc:
            return f"no answer to the redirect check on {expect.http_where} ({exc})"
        if (got, got_location) != (status, location):
            return (
                f"http://{expect.hostname}{REDIRECT_PROBE} on {expect.http_where} answers "
                f"{got} {got_location or '(no Location)'}, not {status} {location}"
            )
    if expect.probe is not None:
        path, body = expect.probe
        try:
            got, _location, got_body = http_get(
                expect.host, expect.http_port, expect.hostname, path
            )
        except OSError as exc:
            return f"no answer to the challenge check on {expect.http_where} ({exc})"
        if got != 200 or got_body.strip() != body:
            return (
                f"http://{expect.hostname}{path} on {expect.http_where} answers {got}, "
                "not the file in certsmith's challenge directory"
            )
    return None


def prove(
    expect: Expectation | Sequence[Expectation], timeout: float = PROOF_TIMEOUT
) -> str | None:
    """Poll ``missing`` until everything holds (None) or ``timeout``: the last shortfall.
    Several expectations (one per address the site listens on) must all hold."""
    pending = [expect] if isinstance(expect, Expectation) else list(expect)
    deadline = time.monotonic() + timeout
    while True:
        shortfall = None
        for item in list(pending):
            shortfall = missing(item)
            if shortfall is not None:
                break
            pending.remove(item)
        if shortfall is None or time.monotonic() > deadline:
            return shortfall
        time.sleep(0.1)
