"""Private keys, CSRs and certificate facts (on ``cryptography``)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from certsmith.base.identifiers import Identifier
from certsmith.base.keytypes import check_key_type
from certsmith.errors import UsageError

PrivateKey = CertificateIssuerPrivateKeyTypes


def generate_key(key_type: str) -> PrivateKey:
    key_type = check_key_type(key_type)
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))


def key_to_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_key(pem: bytes) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError("cannot read private key (not an unencrypted PEM key)") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise UsageError("unsupported private key type (use RSA or ECDSA)")
    return key


def key_type_of(key: PrivateKey) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ecdsa-p384" if key.curve.name == "secp384r1" else "ecdsa-p256"
    if isinstance(key, rsa.RSAPrivateKey):
        return f"rsa{key.key_size}"
    return "unknown"


def san_entries(identifiers: Sequence[Identifier]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for ident in identifiers:
        if ident.is_ip:
            out.append(x509.IPAddress(ipaddress.ip_address(ident.value)))
        else:
            out.append(x509.DNSName(ident.value))
    return out


def make_csr(key: PrivateKey, identifiers: Sequence[Identifier]) -> bytes:
    """A CSR with every identifier as a SAN (and no subject CN: CAs take the SANs)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    builder = builder.add_extension(
        x509.SubjectAlternativeName(san_entries(identifiers)), critical=False
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def split_pem_chain(pem: bytes) -> list[bytes]:
    """Split concatenated PEM certificates into a list of PEM blocks."""
    marker = b"-----END CERTIFICATE-----"
    out = []
    for block in pem.split(marker):
        start = block.find(b"-----BEGIN CERTIFICATE-----")
        if start >= 0:
            out.append(block[start:] + marker + b"\n")
    return out


@dataclass(frozen=True)
class CertInfo:
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    names: tuple[str, ...]
    issuer: str
    key_type: str
    ari_id: str | None

    @property
    def lifetime(self) -> dt.timedelta:
        return self.not_after - self.not_before


def cert_info(pem: bytes) -> CertInfo:
    cert = x509.load_pem_x509_certificate(pem)
    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names += san.get_values_for_type(x509.DNSName)
        names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    issuer_cn = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    issuer = str(issuer_cn[0].value) if issuer_cn else cert.issuer.rfc4514_string()
    pub = cert.public_key()
    if isinstance(pub, ec.EllipticCurvePublicKey):
        ktype = "ecdsa-p384" if pub.curve.name == "secp384r1" else "ecdsa-p256"
    elif isinstance(pub, rsa.RSAPublicKey):
        ktype = f"rsa{pub.key_size}"
    else:
        ktype = "unknown"
    return CertInfo(
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        names=tuple(names),
        issuer=issuer,
        key_type=ktype,
        ari_id=ari_cert_id(cert),
    )


def ari_cert_id(cert: x509.Certificate) -> str | None:
    """RFC 9773 certificate identifier: base64url(AKI keyIdentifier) "." base64url(serial DER)."""
    import base64

    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return None
    if aki.key_identifier is None:
        return None
    serial = cert.serial_number
    raw = serial.to_bytes((serial.bit_length() + 8) // 8, "big", signed=True)

    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).decode().rstrip("=")

    return f"{b64(aki.key_identifier)}.{b64(raw)}"


def key_matches_cert(key_pem: bytes, cert_pem: bytes) -> bool:
    key = load_key(key_pem)
    cert = x509.load_pem_x509_certificate(cert_pem)
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(
        key.public_key().public_bytes(serialization.Encoding.DER, pub)
        == cert.public_key().public_bytes(serialization.Encoding.DER, pub)
    )
