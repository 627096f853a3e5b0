"""Key types certsmith can generate (names only; no cryptography import here)."""

from __future__ import annotations

from certsmith.errors import UsageError

KEY_TYPES = ("ecdsa-p256", "ecdsa-p384", "rsa2048", "rsa3072", "rsa4096")
DEFAULT_KEY_TYPE = "ecdsa-p256"


def check_key_type(value: str) -> str:
    value = value.lower()
    if value not in KEY_TYPES:
        raise UsageError(f"unknown key type {value!r}; choose one of {', '.join(KEY_TYPES)}")
    return value
