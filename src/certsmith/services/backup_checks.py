"""What restore accepts from an archive: safe names, safe kinds, safe modes, keys that match.

The checks run on the manifest's entries before anything is unpacked (every member read later
must equal its entry, so they hold for the members too), and on the unpacked keys before
anything is moved into the state directory. They are pure, apart from reading the unpacked keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from certsmith.errors import CertsmithError
from certsmith.services.backup_manifest import Entry

# Restored in this order, ``live`` last so its symlinks never point at a missing version.
ENTRIES = (
    "sites",
    "accounts",
    "ca",
    "state",
    "archive",
    "events.jsonl",
    "alerts.toml",
    "installs",
    "dns-01",
    "live",
)
FILES = frozenset({"events.jsonl", "alerts.toml"})


class UnsafeArchive(CertsmithError):
    """A phrase saying which member is unsafe and why."""


def check_entries(entries: Iterable[Entry]) -> dict[str, Entry]:
    """The entries by name; raises :class:`UnsafeArchive` on anything restore must not write."""
    seen: dict[str, Entry] = {}
    for e in entries:
        name = e.name
        parts = name.split("/")
        if name.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise UnsafeArchive(f"unsafe member name {name!r}")
        if name in seen:
            raise UnsafeArchive(f"member {name!r} appears twice")
        if parts[0] not in ENTRIES:
            raise UnsafeArchive(f"unexpected member {name!r}")
        if parts[0] in FILES and not (len(parts) == 1 and e.kind == "file"):
            raise UnsafeArchive(f"{parts[0]} must be a regular file")
        if parts[0] not in FILES and len(parts) == 1 and e.kind != "dir":
            raise UnsafeArchive(f"{parts[0]} must be a directory")
        if e.kind not in ("file", "dir", "link"):
            raise UnsafeArchive(f"{name!r} is not a file, directory or symlink")
        seen[name] = e
    for name in seen:
        parts = name.split("/")
        for i in range(1, len(parts)):
            parent = seen.get("/".join(parts[:i]))
            if parent is not None and parent.kind != "dir":
                raise UnsafeArchive(f"{name!r} lies below a non-directory member")
    links = [e for e in seen.values() if e.kind == "link"]
    for e in links:
        _resolve(e.name, e.target, seen)
    for e in links:
        _check_live_link(e.name, e.target, seen)
    return seen


def _resolve(name: str, target: str, members: dict[str, Entry]) -> str:
    """Where a symlink leads, as a member name; it must stay inside the home, through real
    directories only."""
    if not target or target.startswith("/"):
        raise UnsafeArchive(f"symlink {name!r} points outside the state directory")
    stack = name.split("/")[:-1]
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                raise UnsafeArchive(f"symlink {name!r} points outside the state directory")
            stack.pop()
            continue
        stack.append(part)
        hop = members.get("/".join(stack))
        if hop is not None and hop.kind == "link":
            raise UnsafeArchive(f"symlink {name!r} points through another symlink")
    return "/".join(stack)


def _check_live_link(name: str, target: str, members: dict[str, Entry]) -> None:
    """The only symlinks certsmith writes are ``live/<name>``, each naming an archived version
    of that certificate: anything else is not from a backup, and a dangling one is damage."""
    parts = name.split("/")
    if len(parts) != 2 or parts[0] != "live":
        raise UnsafeArchive(f"symlink {name!r}: only live/<name> entries may be symlinks")
    where = _resolve(name, target, members).split("/")
    dest = members.get("/".join(where))
    if len(where) != 3 or where[:2] != ["archive", parts[1]] or dest is None or dest.kind != "dir":
        raise UnsafeArchive(
            f"{name} points at {target!r}, which is not an archived version "
            f"of {parts[1]} in the archive"
        )


def is_key(name: str) -> bool:
    """Files holding a private key (``privkey.pem``, an account's ``key.pem``, the local CA's
    ``root-key.pem`` and ``intermediate.pem``, which holds the intermediate's key)."""
    base = name.rsplit("/", 1)[-1]
    return base.endswith("key.pem") or name == "ca/intermediate.pem"


def restored_mode(e: Entry) -> int:
    """The mode a restored entry gets: keys 0600; other files at most 0644 and directories at
    most 0755 (the archive's bits, narrowed, never widened). Never executable files, setuid,
    setgid or sticky bits, whatever the archive says."""
    if e.kind == "dir":
        return (e.mode & 0o755) | 0o700
    if is_key(e.name):
        return 0o600
    return (e.mode & 0o644) | 0o600


def key_pairs(members: dict[str, Entry]) -> list[tuple[str, str]]:
    """(key, certificate) member names that must match: each version's ``privkey.pem`` and
    ``cert.pem``, and the local CA's root key and certificate."""
    pairs = []
    for name, e in members.items():
        parts = name.split("/")
        if (
            e.kind == "file"
            and len(parts) == 4
            and parts[0] == "archive"
            and parts[3] == "privkey.pem"
        ):
            cert = "/".join([*parts[:3], "cert.pem"])
            if cert in members:
                pairs.append((name, cert))
    if "ca/root-key.pem" in members and "ca/root.pem" in members:
        pairs.append(("ca/root-key.pem", "ca/root.pem"))
    return pairs


def check_keys(root: Path, members: dict[str, Entry]) -> None:
    """Every unpacked key below ``root`` matches its certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    for key_name, cert_name in key_pairs(members):
        try:
            key = serialization.load_pem_private_key(
                root.joinpath(*key_name.split("/")).read_bytes(), password=None
            )
        except (ValueError, TypeError):
            raise UnsafeArchive(f"{key_name} is not a readable private key") from None
        try:
            cert = x509.load_pem_x509_certificate(root.joinpath(*cert_name.split("/")).read_bytes())
        except ValueError:
            raise UnsafeArchive(f"{cert_name} is not a certificate") from None
        if key.public_key().public_bytes(der, pub) != cert.public_key().public_bytes(der, pub):
            raise UnsafeArchive(f"{key_name} does not match {cert_name}")
