"""``certsmith local``: certificates from the local development CA, written where asked.

Everything is validated before anything is written: names, allowed domains, the CSR, the output
directories. Only then is the CA created or its intermediate replaced, and the files written.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from certsmith.base import der
from certsmith.base.identifiers import Identifier, parse_identifiers
from certsmith.base.keytypes import DEFAULT_KEY_TYPE, check_key_type, check_offered_key
from certsmith.base.nameconstraints import Constraints, parse_allowed
from certsmith.base.store.fs import atomic_write
from certsmith.core.issuers.localca import DEFAULT_LEAF_DAYS, LocalCA, check_days, check_permitted
from certsmith.errors import StoreError, UsageError

P12_PASSWORD = "changeit"  # the Java / mkcert convention; the file is for local development


# NamedTuples rather than dataclasses: as immutable, and much cheaper to define; this module
# is on the start-up path of every ``certsmith local``.
class LocalRequest(NamedTuple):
    names: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    forget: tuple[str, ...] = ()
    key_type: str = DEFAULT_KEY_TYPE
    days: int = DEFAULT_LEAF_DAYS
    client: bool = False
    csr: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    pkcs12: bool = False
    p12_file: Path | None = None


class LocalResult(NamedTuple):
    identifiers: tuple[Identifier, ...]
    ca_dir: Path
    constraints: Constraints
    ca_created: bool = False
    constraints_changed: bool = False
    cert_file: Path | None = None
    key_file: Path | None = None
    p12_file: Path | None = None
    not_after: dt.datetime | None = None
    written: tuple[Path, ...] = ()


def file_stem(ident: Identifier) -> str:
    """``*.app.test`` -> ``_wildcard.app.test``; ``::1`` -> ``__1`` (a file name, like mkcert)."""
    return ident.value.replace("*", "_wildcard").replace(":", "_")


def ca_dir(home: Path) -> Path:
    return LocalCA(home).path


def _read_csr(path: Path) -> tuple[tuple[Identifier, ...], bytes]:
    """The names and public key (SPKI DER) of a CSR file, or one clear error.

    Refused rather than quietly trimmed: a key certsmith would not generate itself, and names
    other than DNS names and IP addresses (e-mail, URI, otherName, ...). The intermediate's
    name constraints cover only DNS and IP names, so any other kind would escape them."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read CSR {path}: {exc.strerror or exc}") from None
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        csr = (
            x509.load_pem_x509_csr(data) if b"-----BEGIN" in data else x509.load_der_x509_csr(data)
        )
        spki = _csr_spki(csr.public_bytes(serialization.Encoding.DER))
    except (ValueError, StopIteration, der.DerError):
        raise UsageError(f"cannot read CSR {path}: not a PEM or DER certificate request") from None
    check_offered_key(spki, f"CSR {path}")
    try:
        signed = csr.is_signature_valid
    except ValueError:  # cryptography loads the key only now: e.g. a point off its curve
        raise UsageError(f"CSR {path} has an invalid public key") from None
    if not signed:
        raise UsageError(f"CSR {path} has an invalid signature")
    names: list[str] = []
    refused: list[str] = []
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    except ValueError:
        raise UsageError(f"CSR {path} has malformed extensions") from None
    for entry in san:
        if isinstance(entry, x509.DNSName):
            names.append(entry.value)
        elif isinstance(entry, x509.IPAddress):
            names.append(str(entry.value))
        else:
            refused.append(_other_name(entry))
    if refused:
        shown = ", ".join(refused[:5]) + (f" and {len(refused) - 5} more" if refused[5:] else "")
        raise UsageError(
            f"CSR {path} asks for names the local CA does not certify: {shown} "
            "(it signs DNS names and IP addresses only)"
        )
    if not names:
        cns = csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        names = [str(cn.value) for cn in cns]
    if not names:
        raise UsageError(f"CSR {path} names no host (no subjectAltName, no common name)")
    return parse_identifiers(names), spki


def _csr_spki(request: bytes) -> bytes:
    """The SubjectPublicKeyInfo of a CSR (DER), read without loading the key: a key type
    ``cryptography`` cannot load still gets the same clear refusal."""
    _, body, _ = der.read(request)
    _, info, _ = next(der.children(body))
    _version, _subject, (_, _, spki), *_attributes = der.children(info)
    return spki


def _other_name(entry: object) -> str:
    """A subjectAltName entry that is not a DNS name or IP address, for a message."""
    from cryptography import x509

    if isinstance(entry, x509.RFC822Name):
        shown = f"e-mail {entry.value}"
    elif isinstance(entry, x509.UniformResourceIdentifier):
        shown = f"URI {entry.value}"
    elif isinstance(entry, x509.OtherName):
        shown = f"otherName {entry.type_id.dotted_string}"
    elif isinstance(entry, x509.DirectoryName):
        shown = f"directory name {entry.value.rfc4514_string()}"
    elif isinstance(entry, x509.RegisteredID):
        shown = f"registered ID {entry.value.dotted_string}"
    else:
        shown = type(entry).__name__
    return shown if shown.isprintable() else ascii(shown)


def _check_dir(path: Path) -> None:
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"cannot write {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"cannot write {path}: directory {parent} is not writable")


def _write(path: Path, data: bytes, mode: int) -> None:
    try:
        atomic_write(path, data, mode)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc


def issue(home: Path, request: LocalRequest, cwd: Path | None = None) -> LocalResult:
    """Validate ``request`` whole, then make the CA / intermediate as needed and write files."""
    key_type = check_key_type(request.key_type)
    check_days(request.days)
    allow = [parse_allowed(a) for a in request.allow]
    forget = [parse_allowed(f) for f in request.forget]
    spki: bytes | None = None
    if request.csr is not None:
        if request.names:
            raise UsageError("give either names or --csr, not both")
        if request.pkcs12 or request.key_file:
            raise UsageError(
                "--pkcs12 and --key-file need the private key; with --csr it stays with you"
            )
        identifiers, spki = _read_csr(request.csr)
    elif request.names:
        identifiers = parse_identifiers(request.names)
    else:
        identifiers = ()
    if not identifiers and not allow and not forget:
        raise UsageError("give at least one name, e.g. certsmith local localhost 127.0.0.1 ::1")

    ca = LocalCA(home)
    existed = ca.exists()
    current = ca.constraints() if existed else None
    wanted = ca.desired(allow, forget)
    changed = current is not None and wanted != current
    check_permitted(identifiers, wanted)

    if not identifiers:  # only a change to the CA's allowed names
        ca.ensure(wanted)
        return LocalResult(
            (), ca.path, wanted, ca_created=not existed, constraints_changed=changed or not existed
        )

    base = cwd or Path.cwd()
    stem = file_stem(identifiers[0])
    cert_file = base / (request.cert_file or f"{stem}.pem")
    key_file = None if spki is not None else base / (request.key_file or f"{stem}-key.pem")
    p12_file = base / (request.p12_file or f"{stem}.p12") if request.pkcs12 else None
    outputs = [p for p in (cert_file, key_file, p12_file) if p is not None]
    if len({p.resolve() for p in outputs}) != len(outputs):
        raise UsageError("the certificate, key and PKCS#12 files must be different files")
    for path in outputs:
        _check_dir(path)

    leaf = ca.issue(
        identifiers,
        key_type=key_type,
        days=request.days,
        client=request.client,
        public_key_der=spki,
        constraints=wanted,
    )
    written: list[Path] = []
    if key_file is not None and leaf.key_pem is not None:
        _write(key_file, leaf.key_pem, 0o600)
        written.append(key_file)
    _write(cert_file, leaf.chain_pem, 0o644)
    written.append(cert_file)
    if p12_file is not None:
        _write(p12_file, _pkcs12(leaf.key, leaf.cert_der, leaf.intermediate_der, stem), 0o600)
        written.append(p12_file)
    return LocalResult(
        identifiers,
        ca.path,
        wanted,
        ca_created=not existed,
        constraints_changed=changed,
        cert_file=cert_file,
        key_file=key_file,
        p12_file=p12_file,
        not_after=leaf.not_after,
        written=tuple(written),
    )


def _pkcs12(key: object, cert_der: bytes, intermediate_der: bytes, name: str) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12

    # Legacy algorithms on purpose: macOS Keychain and older Java read only these.
    encryption = (
        PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(50000)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())
        .build(P12_PASSWORD.encode())
    )
    return pkcs12.serialize_key_and_certificates(
        name.encode(),
        key,  # type: ignore[arg-type]
        x509.load_der_x509_certificate(cert_der),
        [x509.load_der_x509_certificate(intermediate_der)],
        encryption,
    )


def describe_names(identifiers: Sequence[Identifier]) -> str:
    return ", ".join(i.value for i in identifiers)
