"""Broken chains for ``certsmith check`` tests, and a real server to serve them.

Certificates are made with ``cryptography``: any key (RSA of any size, ECDSA), any validity
window, an empty subject, and SHA-1 signatures (``cryptography`` no longer signs with SHA-1, so
the signature is made by hand over a TBS that names sha1WithRSAEncryption). They are served by
``openssl s_server``, which sends the chain exactly in the order given and can be limited to
chosen TLS versions and ciphers, as a misconfigured server would be.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.net import (
    LOOPBACK,
    die_with_parent,
    free_port,
    port_open,
    stop_process,
    wait_until,
)

Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_SHA256_RSA = bytes.fromhex("2a864886f70d01010b")  # OID 1.2.840.113549.1.1.11, DER body
_SHA1_RSA = bytes.fromhex("2a864886f70d010105")  # OID 1.2.840.113549.1.1.5, same length


@dataclass(frozen=True)
class Made:
    cert: x509.Certificate
    key: Key

    @property
    def name(self) -> str:
        return self.cert.subject.rfc4514_string().removeprefix("CN=")

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(body)) + body


def _resign_sha1(cert: x509.Certificate, key: rsa.RSAPrivateKey) -> x509.Certificate:
    """The same certificate signed with SHA-1 (the OIDs have the same length, so only the
    algorithm bytes change inside the TBS)."""
    tbs = cert.tbs_certificate_bytes
    assert tbs.count(_SHA256_RSA) == 1
    tbs = tbs.replace(_SHA256_RSA, _SHA1_RSA)
    signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    algorithm = _tlv(0x30, _tlv(0x06, _SHA1_RSA) + b"\x05\x00")
    return x509.load_der_x509_certificate(
        _tlv(0x30, tbs + algorithm + _tlv(0x03, b"\x00" + signature))
    )


def make(
    cn: str,
    *,
    issuer: Made | None = None,
    ca: bool = False,
    key: Key | None = None,
    names: tuple[str, ...] = (),
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    sha1: bool = False,
    empty_subject: bool = False,
) -> Made:
    """A CA (``ca=True``) or a server certificate for ``names`` (default ``cn``), signed by
    ``issuer`` (self-signed without one). ``empty_subject`` makes an ACME-style leaf: no
    subject, the names in a critical subjectAltName (RFC 5280 4.2.1.6)."""
    now = dt.datetime.now(dt.UTC)
    key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([] if empty_subject else [x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    signer = issuer.key if issuer else key
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
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False
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
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names or (cn,)]), empty_subject
        )
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False
        )
    cert = builder.sign(signer, hashes.SHA256())
    if sha1:
        assert isinstance(signer, rsa.RSAPrivateKey)
        cert = _resign_sha1(cert, signer)
    return Made(cert, key)


class SServer:
    """``openssl s_server -www`` on 127.0.0.1 serving ``leaf`` then ``chain`` in that order.

    ``args`` go to s_server as they are (e.g. ``-tls1_2 -cipher AES128-GCM-SHA256``). Weak
    keys and SHA-1 need ``-cipher ALL:@SECLEVEL=0`` for OpenSSL 3 to load them at all.
    """

    def __init__(
        self, directory: Path, leaf: Made, chain: tuple[Made, ...] = (), args: tuple[str, ...] = ()
    ) -> None:
        self.port = free_port()
        stem = directory / f"sserver-{self.port}"
        self._files = {
            "cert": stem.with_suffix(".crt"),
            "key": stem.with_suffix(".key"),
            "chain": stem.with_suffix(".chain"),
            "log": stem.with_suffix(".log"),
        }
        self._files["cert"].write_bytes(leaf.pem())
        self._files["key"].write_bytes(leaf.key_pem())
        self._files["key"].chmod(0o600)
        self._files["chain"].write_bytes(b"".join(c.pem() for c in chain))
        self._argv = [
            "openssl",
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            f"{LOOPBACK}:{self.port}",
            "-cert",
            str(self._files["cert"]),
            "-key",
            str(self._files["key"]),
            *(["-cert_chain", str(self._files["chain"])] if chain else []),
            *args,
        ]
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def log(self) -> str:
        return self._files["log"].read_text(errors="replace")

    def start(self) -> Self:
        self._log = self._files["log"].open("wb")
        self._proc = subprocess.Popen(
            self._argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        wait_until(
            lambda: port_open(self.port),
            what=f"openssl s_server on {self.port}",
            proc=self._proc,
            log=self.log,
        )
        return self

    def close(self) -> None:
        stop_process(self._proc)
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
