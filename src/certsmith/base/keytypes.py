"""Key types certsmith can generate, and which of them a given public key is.

No ``cryptography`` import here: public keys are read from their DER (SubjectPublicKeyInfo) with
:mod:`certsmith.base.der`, so the local CA can check a CSR's key on its fast path.
"""

from __future__ import annotations

from typing import NamedTuple

from certsmith.base import der
from certsmith.errors import UsageError

KEY_TYPES = ("ecdsa-p256", "ecdsa-p384", "rsa2048", "rsa3072", "rsa4096")
DEFAULT_KEY_TYPE = "ecdsa-p256"
RSA_EXPONENT = 65537  # what certsmith generates, and what every TLS stack expects

_RSA = "1.2.840.113549.1.1.1"
_EC = "1.2.840.10045.2.1"
# Named curves: (key type certsmith offers or None, name for messages, coordinate size).
_CURVES: dict[str, tuple[str | None, str, int]] = {
    "1.2.840.10045.3.1.7": ("ecdsa-p256", "P-256", 32),
    "1.3.132.0.34": ("ecdsa-p384", "P-384", 48),
    "1.3.132.0.35": (None, "P-521", 66),
    "1.3.132.0.10": (None, "secp256k1", 32),
    "1.2.840.10045.3.1.1": (None, "P-192", 24),
    "1.3.132.0.33": (None, "P-224", 28),
    "1.3.36.3.3.2.8.1.1.7": (None, "brainpoolP256r1", 32),
    "1.3.36.3.3.2.8.1.1.11": (None, "brainpoolP384r1", 48),
    "1.3.36.3.3.2.8.1.1.13": (None, "brainpoolP512r1", 64),
    "1.2.156.10197.1.301": (None, "SM2", 32),
}
_OTHER_ALGORITHMS = {
    "1.3.101.112": "Ed25519",
    "1.3.101.113": "Ed448",
    "1.3.101.110": "X25519",
    "1.3.101.111": "X448",
    "1.2.840.113549.1.1.10": "RSA-PSS",
    "1.2.840.113549.1.1.7": "RSA-OAEP",
    "1.2.840.10040.4.1": "DSA",
    "1.2.840.10046.2.1": "Diffie-Hellman",
    "1.2.840.113549.1.3.1": "Diffie-Hellman",
}


def check_key_type(value: str) -> str:
    value = value.lower()
    if value not in KEY_TYPES:
        raise UsageError(f"unknown key type {value!r}; choose one of {', '.join(KEY_TYPES)}")
    return value


class PublicKeyKind(NamedTuple):
    """What a public key is: its ``--key-type`` name if certsmith offers it, and a description
    for messages (``RSA 1024-bit``, ``ECDSA P-521``, ``Ed25519``)."""

    key_type: str | None
    description: str


def public_key_kind(spki: bytes) -> PublicKeyKind:
    """Classify a SubjectPublicKeyInfo (DER) against the key types certsmith generates.

    Strict on purpose: a key counts as ``rsa2048`` only if it is rsaEncryption with a 2048-bit
    modulus and exponent 65537, and as ``ecdsa-p256`` only with the named curve and an
    uncompressed point, exactly as certsmith itself would make it."""
    try:
        _, body, end = der.read(spki)
        if end != len(spki):
            raise der.DerError("trailing bytes")
        (_, algorithm, _), (key_tag, key_bits, _) = der.children(body)
        parts = list(der.children(algorithm))
        oid_tag, oid_value, _ = parts[0]
        if oid_tag != der.OID or key_tag != der.BIT_STRING or key_bits[:1] != b"\x00":
            raise der.DerError("not a SubjectPublicKeyInfo")
        dotted = der.read_oid(oid_value)
        params = parts[1] if len(parts) > 1 else None
        if dotted == _RSA:
            return _rsa_kind(key_bits)
        if dotted == _EC:
            return _ec_kind(params, key_bits)
    except (der.DerError, ValueError, IndexError):  # ValueError: too few or many elements
        return PublicKeyKind(None, "not a readable public key")
    return PublicKeyKind(None, _OTHER_ALGORITHMS.get(dotted, f"of algorithm {dotted}"))


def _rsa_kind(key_bits: bytes) -> PublicKeyKind:
    _, rsa_key, _ = der.read(key_bits[1:])
    (n_tag, n_value, _), (e_tag, e_value, _) = der.children(rsa_key)
    if n_tag != der.INTEGER or e_tag != der.INTEGER:
        raise der.DerError("not an RSA public key")
    modulus = int.from_bytes(n_value, "big", signed=True)
    exponent = int.from_bytes(e_value, "big", signed=True)
    if modulus <= 0 or exponent <= 0:
        raise der.DerError("not an RSA public key")
    size = modulus.bit_length()
    if exponent != RSA_EXPONENT:
        return PublicKeyKind(None, f"RSA {size}-bit with public exponent {exponent}")
    name = f"rsa{size}"
    return PublicKeyKind(name if name in KEY_TYPES else None, f"RSA {size}-bit")


def _ec_kind(params: tuple[int, bytes, bytes] | None, key_bits: bytes) -> PublicKeyKind:
    if params is None or params[0] != der.OID:
        return PublicKeyKind(None, "ECDSA with explicit curve parameters")
    curve = der.read_oid(params[1])
    known = _CURVES.get(curve)
    if known is None:
        return PublicKeyKind(None, f"ECDSA on curve {curve}")
    key_type, name, size = known
    point = key_bits[1:]
    if key_type is not None and (point[:1] != b"\x04" or len(point) != 1 + 2 * size):
        return PublicKeyKind(None, f"ECDSA {name} with a compressed or malformed point")
    return PublicKeyKind(key_type, f"ECDSA {name}")


def check_offered_key(spki: bytes, what: str) -> str:
    """The ``--key-type`` name of ``spki``, or one clear error: certsmith's local CA signs only
    the keys certsmith would generate itself (no RSA-1024, no P-521, no Ed25519, ...), so a
    certificate it issues never carries a key that browsers or policy tools reject."""
    kind = public_key_kind(spki)
    if kind.key_type is None:
        raise UsageError(
            f"{what}: the key is {kind.description}; the local CA signs only the "
            f"key types --key-type offers ({', '.join(KEY_TYPES)})"
        )
    return kind.key_type
