"""The manifest of a backup archive: what every member must be, and a checksum of itself.

A backup's first member, ``certsmith-backup.json``, lists every other member in archive order
with its type, mode, modification time and, for a file, its size and SHA-256 (for a symlink, its
target), and carries a SHA-256 of its own content. Restore compares each member it reads with
its entry, so one flipped byte anywhere — a tar header, a file, the manifest itself — or a
member lost because a damaged header ended the archive early is refused before anything is put
in place. The encoding is canonical (sorted keys, fixed indentation): the manifest's bytes must
be exactly what encoding its parsed content gives, so even a changed space is noticed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from certsmith.errors import CertsmithError

NAME = "certsmith-backup.json"
FORMAT = "certsmith-backup"
VERSION = 2
KINDS = frozenset({"file", "dir", "link"})
# Far beyond any real state directory (a thousand certificates with ten versions each hold
# some 60 000 entries), small enough that a hostile manifest cannot exhaust memory.
MAX_ENTRIES = 500_000
MAX_BYTES = 256 << 20
MAX_NAME = 1024


class ManifestError(CertsmithError):
    """The manifest is missing, damaged, foreign or from a newer certsmith."""


@dataclass(frozen=True)
class Entry:
    """One member as the backup wrote it."""

    name: str
    kind: str  # file | dir | link, or the tar type of anything else (refused by the checks)
    mode: int
    mtime: int
    size: int = 0
    sha256: str = ""
    target: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.kind,
            "mode": self.mode,
            "mtime": self.mtime,
        }
        if self.kind == "file":
            out["size"], out["sha256"] = self.size, self.sha256
        elif self.kind == "link":
            out["target"] = self.target
        return out


@dataclass(frozen=True)
class Manifest:
    """A verified manifest."""

    data: dict[str, Any]
    entries: tuple[Entry, ...]

    @property
    def layout(self) -> int:
        """The state directory's layout version the backup was made from (1 before it was
        recorded); restore writes it back, and the next run upgrades from there."""
        value = self.data.get("layout", 1)
        return value if isinstance(value, int) and value >= 1 else 1

    @property
    def certificates(self) -> tuple[str, ...]:
        names = self.data.get("certificates")
        return tuple(str(n) for n in names) if isinstance(names, list) else ()


def _dump(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=True) + "\n").encode()


def encode(meta: dict[str, Any], entries: list[Entry]) -> bytes:
    """The manifest's bytes: ``meta`` plus the entries, sealed with their SHA-256."""
    body = {**meta, "format": FORMAT, "version": VERSION, "members": [e.to_json() for e in entries]}
    body["sha256"] = hashlib.sha256(_dump(body)).hexdigest()
    return _dump(body)


def decode(raw: bytes) -> Manifest:
    """Parse and verify a manifest; :class:`ManifestError` says what is wrong, in a phrase."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ManifestError(f"not a certsmith backup (bad {NAME})")
    version = data.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ManifestError(
            f"a backup format version {version!r}; this certsmith reads up to "
            f"{VERSION}: upgrade certsmith"
        )
    if version < VERSION:
        raise ManifestError(
            f"a backup format version {version} has no checksums, so its "
            f"contents cannot be verified; make a new backup with this certsmith "
            f"(or, from a machine that is gone, unpack it by hand with tar "
            f"and check the keys before use)"
        )
    seal = data.pop("sha256", None)
    if seal != hashlib.sha256(_dump(data)).hexdigest():
        raise ManifestError(f"{NAME} does not match its checksum (damaged)")
    data["sha256"] = seal
    if _dump(data) != raw:
        raise ManifestError(f"{NAME} is not in its written form (damaged)")
    members = data.get("members")
    if not isinstance(members, list) or len(members) > MAX_ENTRIES:
        raise ManifestError(f"{NAME} has no valid member list")
    return Manifest(data, tuple(_entry(m) for m in members))


def _entry(raw: Any) -> Entry:
    def need(key: str, kind: type) -> Any:
        value = raw.get(key) if isinstance(raw, dict) else None
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ManifestError(f"{NAME} has a malformed member entry ({key})")
        return value

    name, kind = need("name", str), need("type", str)
    if len(name) > MAX_NAME:
        raise ManifestError(f"{NAME} names a member longer than {MAX_NAME} characters")
    entry = Entry(name, kind, need("mode", int), need("mtime", int))
    if kind == "file":
        size, digest = need("size", int), need("sha256", str)
        if size < 0 or len(digest) != 64:
            raise ManifestError(f"{NAME} has a malformed member entry ({name!r})")
        return Entry(name, kind, entry.mode, entry.mtime, size=size, sha256=digest)
    if kind == "link":
        return Entry(name, kind, entry.mode, entry.mtime, target=need("target", str))
    return entry
