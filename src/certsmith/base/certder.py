"""X.509 certificates built and read with :mod:`certsmith.base.der` (RFC 5280 profile subset).

Building is pure; :func:`sign` is the one step that needs a private key (``cryptography``
primitives, imported when called). Used by the local CA, whose hot path must start fast.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from typing import Any, NamedTuple

from certsmith.base import der
from certsmith.base.identifiers import Identifier

# Object identifiers (encoded once).
OID_CN = der.oid("2.5.4.3")
OID_O = der.oid("2.5.4.10")
OID_OU = der.oid("2.5.4.11")
EXT_SKI = der.oid("2.5.29.14")
EXT_KEY_USAGE = der.oid("2.5.29.15")
EXT_SAN = der.oid("2.5.29.17")
EXT_BASIC = der.oid("2.5.29.19")
EXT_NAME_CONSTRAINTS = der.oid("2.5.29.30")
EXT_AKI = der.oid("2.5.29.35")
EXT_EKU = der.oid("2.5.29.37")
EKU_SERVER = der.oid("1.3.6.1.5.5.7.3.1")
EKU_CLIENT = der.oid("1.3.6.1.5.5.7.3.2")
ALG_ECDSA_SHA256 = der.seq(der.oid("1.2.840.10045.4.3.2"))
ALG_ECDSA_SHA384 = der.seq(der.oid("1.2.840.10045.4.3.3"))
ALG_RSA_SHA256 = der.seq(der.oid("1.2.840.113549.1.1.11"), der.null())

# KeyUsage bits (RFC 5280 4.2.1.3).
DIGITAL_SIGNATURE = 0
KEY_ENCIPHERMENT = 2
KEY_CERT_SIGN = 5
CRL_SIGN = 6


def name(*, cn: str | None = None, o: str | None = None, ou: str | None = None) -> bytes:
    rdns = []
    for attr, value in ((OID_O, o), (OID_OU, ou), (OID_CN, cn)):
        if value:
            rdns.append(der.set_of(der.seq(attr, der.utf8(value[:64]))))
    return der.seq(*rdns)


def key_id(spki: bytes) -> bytes:
    """RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING contents."""
    import hashlib

    _, body, _ = der.read(spki)
    parts = list(der.children(body))
    bits = parts[1][1]
    return hashlib.sha1(bits[1:]).digest()


class Extension(NamedTuple):
    oid: bytes
    value: bytes
    critical: bool = False

    def to_der(self) -> bytes:
        crit = der.boolean(True) if self.critical else b""
        return der.seq(self.oid, crit, der.octet_string(self.value))


def basic_constraints(ca: bool, path_length: int | None = None) -> Extension:
    parts = [der.boolean(True)] if ca else []
    if ca and path_length is not None:
        parts.append(der.integer(path_length))
    return Extension(EXT_BASIC, der.seq(*parts), critical=True)


def key_usage(bits: set[int]) -> Extension:
    return Extension(EXT_KEY_USAGE, der.named_bits(bits), critical=True)


def extended_key_usage(*oids: bytes) -> Extension:
    return Extension(EXT_EKU, der.seq(*oids))


def subject_alt_names(identifiers: Sequence[Identifier]) -> Extension:
    names = []
    for ident in identifiers:
        if ident.is_ip:
            names.append(der.implicit(7, ipaddress.ip_address(ident.value).packed))
        else:
            names.append(der.implicit(2, ident.value.encode("ascii")))
    return Extension(EXT_SAN, der.seq(*names))


def subject_key_id(spki: bytes) -> Extension:
    return Extension(EXT_SKI, der.octet_string(key_id(spki)))


def authority_key_id(keyid: bytes) -> Extension:
    return Extension(EXT_AKI, der.seq(der.implicit(0, keyid)))


class Template(NamedTuple):
    """Everything in a TBSCertificate except the signature algorithm."""

    serial: int
    issuer: bytes
    subject: bytes
    not_before: dt.datetime
    not_after: dt.datetime
    spki: bytes
    extensions: tuple[Extension, ...] = ()

    def tbs(self, algorithm: bytes) -> bytes:
        return der.seq(
            der.explicit(0, der.integer(2)),
            der.integer(self.serial),
            algorithm,
            self.issuer,
            der.seq(der.time(self.not_before), der.time(self.not_after)),
            self.subject,
            self.spki,
            der.explicit(3, der.seq(*(e.to_der() for e in self.extensions))),
        )


def new_serial() -> int:
    import os

    # 159 random bits: positive, at most 20 octets, at least 64 bits of entropy (CA/B BR 7.1).
    return int.from_bytes(os.urandom(20), "big") >> 1 | 1 << 150


_CURVES = {"secp256r1": der.oid("1.2.840.10045.3.1.7"), "secp384r1": der.oid("1.3.132.0.34")}
_EC_PUBLIC_KEY = der.oid("1.2.840.10045.2.1")


def ec_pkcs8(key: Any, spki: bytes) -> bytes | None:
    """PKCS#8 DER of an EC key on a curve we issue (RFC 5208 + RFC 5915), else ``None``.

    ``cryptography``'s own serialiser imports its SSH and cipher modules on first use, which
    costs more than the rest of ``certsmith local`` together; this is the same structure.
    """
    curve = _CURVES.get(getattr(getattr(key, "curve", None), "name", ""))
    if curve is None:
        return None
    size = (key.curve.key_size + 7) // 8
    secret = key.private_numbers().private_value.to_bytes(size, "big")
    _, body, _ = der.read(spki)
    point = list(der.children(body))[1][1]  # BIT STRING contents, unused-bits octet included
    inner = der.seq(
        der.integer(1), der.octet_string(secret), der.explicit(1, der.tlv(der.BIT_STRING, point))
    )
    return der.seq(der.integer(0), der.seq(_EC_PUBLIC_KEY, curve), der.octet_string(inner))


def _ecdsa(digest: Any) -> Any:
    """``ec.ECDSA(digest)`` without the OpenSSL backend import its constructor does (that import
    is only for RFC 6979 deterministic signing, which we do not use)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    class _RandomizedECDSA(ec.ECDSA):
        def __init__(self, algorithm: Any) -> None:  # no super(): that is the slow part
            self._digest = algorithm

        @property
        def algorithm(self) -> Any:
            return self._digest

        @property
        def deterministic_signing(self) -> bool:
            return False

    return _RandomizedECDSA(digest)


def signature_algorithm(key: Any) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ec

    if isinstance(key, ec.EllipticCurvePrivateKey):
        return ALG_ECDSA_SHA384 if key.curve.name == "secp384r1" else ALG_ECDSA_SHA256
    return ALG_RSA_SHA256


def sign(template: Template, issuer_key: Any) -> bytes:
    """The DER certificate for ``template``, signed with ``issuer_key`` (EC or RSA)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    algorithm = signature_algorithm(issuer_key)
    tbs = template.tbs(algorithm)
    if isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        digest = hashes.SHA384() if algorithm == ALG_ECDSA_SHA384 else hashes.SHA256()
        signature = issuer_key.sign(tbs, _ecdsa(digest))
    else:
        from cryptography.hazmat.primitives.asymmetric import padding

        signature = issuer_key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    return der.seq(tbs, algorithm, der.bit_string(signature))


class Parsed(NamedTuple):
    """The parts of a certificate the local CA reads back."""

    serial: int
    issuer: bytes
    subject: bytes
    not_before: dt.datetime
    not_after: dt.datetime
    spki: bytes
    extensions: dict[bytes, Extension]

    def extension(self, oid: bytes) -> bytes | None:
        ext = self.extensions.get(oid)
        return ext.value if ext else None

    @property
    def key_id(self) -> bytes:
        """The subject key identifier: from the extension if present, else computed."""
        value = self.extension(EXT_SKI)
        if value is not None:
            return der.read(value)[1]
        return key_id(self.spki)


def parse(cert: bytes) -> Parsed:
    _, body, _ = der.read(cert)
    _, tbs, _ = der.read(body)
    parts = list(der.children(tbs))
    if parts and parts[0][0] == 0xA0:
        parts = parts[1:]
    serial = int.from_bytes(parts[0][1], "big", signed=True)
    validity = [der.read_time(t, v) for t, v, _ in der.children(parts[3][1])]
    extensions: dict[bytes, Extension] = {}
    for tag, value, _ in parts[6:]:
        if tag != 0xA3:
            continue
        _, seq_body, _ = der.read(value)
        for _t, ext_body, _raw in der.children(seq_body):
            items = list(der.children(ext_body))
            critical = len(items) == 3 and items[1][1] == b"\xff"
            extensions[items[0][2]] = Extension(items[0][2], items[-1][1], critical)
    return Parsed(
        serial, parts[2][2], parts[4][2], validity[0], validity[1], parts[5][2], extensions
    )
