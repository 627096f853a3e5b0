"""TLS-ALPN-01 (RFC 8737): a self-signed certificate carrying the key authorization's digest,
served to a TLS client that offers only the ALPN protocol ``acme-tls/1``.

The solver writes ``<directory>/<name>.pem`` (the certificate and its key, 0600); a running
``certsmith proxy`` (any of its workers) picks the file up within a second and answers the CA's
validation on its HTTPS port, while every other client of that name keeps its usual certificate.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import re
import time
from pathlib import Path

from certsmith.base.solverspec import TlsAlpnSpec
from certsmith.core.solvers.base import OneAtATime
from certsmith.errors import ChallengeError

ACME_IDENTIFIER_OID = "1.3.6.1.5.5.7.1.31"  # id-pe-acmeIdentifier
PICKUP_WAIT = 1.5  # seconds: the proxy's workers look for new challenge files every second
_NAME = re.compile(r"^[a-z0-9.-]{1,253}$")


def challenge_certificate(domain: str, key_authorization: str) -> bytes:
    """PEM certificate + key for ``domain`` with the critical acmeIdentifier extension."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    digest = hashlib.sha256(key_authorization.encode()).digest()
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ACME challenge")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier(ACME_IDENTIFIER_OID), b"\x04\x20" + digest
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class TlsAlpnSolver(OneAtATime):
    """Answers TLS-ALPN-01 through a running certsmith proxy (files in ``directory``)."""

    challenge_type = "tls-alpn-01"

    def __init__(self, directory: str) -> None:
        self.dir = Path(directory)

    def prepare(self) -> None:
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ChallengeError(f"cannot create {self.dir}: {exc.strerror}") from exc

    def _path(self, domain: str) -> Path:
        if not _NAME.match(domain):
            raise ChallengeError(f"TLS-ALPN-01 is not available for {domain!r} (DNS names only)")
        return self.dir / f"{domain}.pem"

    def present(self, domain: str, token: str, key_authorization: str) -> None:
        from certsmith.base.store.fs import atomic_write

        path = self._path(domain)
        try:
            atomic_write(path, challenge_certificate(domain, key_authorization), 0o600)
        except OSError as exc:
            raise ChallengeError(f"cannot write {path}: {exc.strerror}") from exc
        os.utime(self.dir)  # (the rename already changed it; be explicit for the watchers)
        time.sleep(PICKUP_WAIT)

    def cleanup(self, domain: str, token: str) -> None:
        with contextlib.suppress(OSError, ChallengeError):
            self._path(domain).unlink()

    def close(self) -> None:
        pass


def from_spec(spec: TlsAlpnSpec) -> TlsAlpnSolver:
    return TlsAlpnSolver(spec.webroot)
