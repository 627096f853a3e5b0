"""Is a certificate version servable? The four files parse and the key matches the certificate.

A web server pointed at ``live/<name>/`` fails to start on a missing key or a truncated chain,
so ``list`` and ``renew`` check the live set instead of trusting the state file.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certsmith.errors import StoreError

FILES = ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem")
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class Damaged(Exception):
    """The version cannot be served; ``str()`` says which file and why."""


def _read(directory: Path, filename: str) -> bytes:
    path = directory / filename
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise Damaged(f"{filename} is missing") from None
    except IsADirectoryError:
        raise Damaged(f"{filename} is a directory") from None
    except OSError as exc:  # not damage: the operator has to fix access
        raise StoreError(f"cannot read {path}: {exc.strerror}") from exc


def examine(directory: Path) -> x509.Certificate:
    """The certificate of the intact version in ``directory``; raises ``Damaged`` otherwise
    (``StoreError`` if a file cannot be read at all)."""
    if not os.path.isdir(directory):
        raise Damaged("the version directory is missing")
    data = {f: _read(directory, f) for f in FILES}
    try:
        cert = x509.load_pem_x509_certificate(data["cert.pem"])
    except ValueError:
        raise Damaged("cert.pem is not a PEM certificate") from None
    if data["chain.pem"].strip():
        try:
            x509.load_pem_x509_certificates(data["chain.pem"])
        except ValueError:
            raise Damaged("chain.pem is not a PEM certificate chain") from None
    if data["fullchain.pem"] != data["cert.pem"] + data["chain.pem"]:  # (as written: cheap)
        try:
            full = x509.load_pem_x509_certificates(data["fullchain.pem"])
        except ValueError:
            raise Damaged("fullchain.pem is not a PEM certificate chain") from None
        if full[0] != cert:
            raise Damaged("fullchain.pem does not start with cert.pem")
    try:
        key = serialization.load_pem_private_key(
            data["privkey.pem"], None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError):
        raise Damaged("privkey.pem is not an unencrypted PEM private key") from None
    if key.public_key().public_bytes(*_SPKI) != cert.public_key().public_bytes(*_SPKI):
        raise Damaged("privkey.pem does not match cert.pem")
    return cert
