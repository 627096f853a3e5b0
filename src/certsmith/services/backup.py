"""Back up a state directory into one tar archive, and restore it on another machine.

The archive holds everything a new machine needs — sites, accounts, versions with their keys,
the ``live/`` symlinks, the local CA, renewal state, alert channels, the audit log and the
install records (``installs/<server>/<name>.json``: what ``get --SERVER`` and ``install`` did,
with their options) — plus a manifest (``certsmith-backup.json``) first. The files certsmith
wrote into web servers are not in it: they belong to the old machine's server tree, and
re-running the recorded ``certsmith install`` on the new one writes them for its tree
(:func:`reinstall_commands` says which). It is written 0600 next to its destination and renamed into
place, so ``FILE`` is never half-written.

Restore trusts nothing in the archive. The manifest lists every member with its SHA-256 and
carries its own (:mod:`backup_manifest`); its entries are checked for safety before anything is
unpacked (:mod:`backup_checks`); the archive is read once, to the end of the compressed stream,
each member compared with its entry, into a staging directory (:mod:`backup_reader`). Only when
all of that passed are the top-level entries the archive carries moved into place with one rename
each. An entry the archive does not carry (an empty one counts as not carried) stays as it is,
and whatever a restore would replace that differs from the backup needs ``--force`` and is named.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from certsmith.base.store import keys as store_keys
from certsmith.base.store.fs import atomic_write, fsync_dir
from certsmith.base.store.layout import FORMAT_KEY
from certsmith.base.version import VERSION as CERTSMITH_VERSION
from certsmith.errors import CertsmithError, NotFoundError, UsageError
from certsmith.services import backup_manifest as manifest_format
from certsmith.services.backup_checks import ENTRIES, UnsafeArchive, check_entries, check_keys
from certsmith.services.backup_manifest import Entry, Manifest
from certsmith.services.backup_reader import ArchiveError, ArchiveReader, open_archive

MANIFEST = manifest_format.NAME
FORMAT = manifest_format.FORMAT
VERSION = manifest_format.VERSION
_CHUNK = 1 << 20
# Small archives are assembled in memory, larger ones in a temporary file beside FILE.
_SPOOL = 32 << 20


class BackupError(CertsmithError):
    """The archive could not be written, or is not a certsmith backup that is safe to restore."""


@dataclass(frozen=True)
class Summary:
    """What went into (or came out of) an archive."""

    path: Path
    home: Path
    certificates: tuple[str, ...]
    accounts: int
    files: int
    replaced: str = ""  # what a forced restore replaced, for a person ("" when nothing)

    def line(self, verb: str) -> str:
        names = ", ".join(self.certificates) if self.certificates else "none"
        count = len(self.certificates)
        return (
            f"{verb} {count} certificate{'s' if count != 1 else ''} ({names}), "
            f"{self.accounts} account{'s' if self.accounts != 1 else ''}, "
            f"{self.files} files"
        )


# -- what a home holds ---------------------------------------------------------------------------


def _skip(name: str) -> bool:
    """Temporary files of the store (``.x.<pid>.tmp``) are never worth keeping."""
    return name.startswith(".") and name.endswith(".tmp")


def certificate_names(home: Path) -> list[str]:
    """Certificates in a home: site files and live links."""
    names: set[str] = set()
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        names.update(
            n[: -len(".toml")]
            for n in os.listdir(home / "sites")
            if n.endswith(".toml") and not n.startswith(".")
        )
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        names.update(n for n in os.listdir(home / "live") if not n.startswith("."))
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        names.update(n for n in os.listdir(home / "archive") if not n.startswith("."))
    return sorted(names)


def reinstall_commands(home: Path) -> list[str]:
    """The commands that make this machine's web servers serve what the install records say
    the old one did (a restore brings the records, not the server files)."""
    out: list[str] = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for kind in sorted(os.listdir(home / "installs")):
            with contextlib.suppress(NotADirectoryError):
                for entry in sorted(os.listdir(home / "installs" / kind)):
                    if not entry.endswith(".json") or entry.startswith("."):
                        continue
                    try:
                        record = json.loads((home / "installs" / kind / entry).read_bytes())
                    except (OSError, ValueError):
                        continue
                    if isinstance(record, dict):
                        out.append(_reinstall(kind, entry[: -len(".json")], record))
    return out


def _reinstall(kind: str, name: str, record: dict[str, Any]) -> str:
    import shlex

    if record.get("stage") != "installed":  # only the challenge mapping of 'get --SERVER'
        return (
            f"certsmith get {shlex.quote(name)} --{kind}    # renewals answer HTTP-01 "
            f"through {kind}"
        )
    opts = record.get("options") or {}
    words = ["certsmith", "install", kind, name]
    flags = {
        "redirect": "--redirect",
        "hsts": "--hsts",
        "proxy_to": "--proxy-to",
        "listen_address": "--listen-address",
    }  # (listen_address: an older record)
    for key, flag in flags.items():
        if opts.get(key) not in (None, ""):
            words += [flag, str(opts[key])]
    for address in opts.get("listen_addresses") or ():
        words += ["--listen-address", str(address)]
    for key, flag, default in (
        ("http_port", "--http-port", 80),
        ("https_port", "--https-port", 443),
    ):
        if opts.get(key) not in (None, default):
            words += [flag, str(opts[key])]
    return " ".join(shlex.quote(w) for w in words)


def _count_accounts(home: Path) -> int:
    n = 0
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for ca in os.scandir(home / "accounts"):
            if ca.is_dir(follow_symlinks=False):
                n += sum(
                    1
                    for e in os.scandir(ca.path)
                    if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
                )
    return n


def _walk(home: Path, tops: tuple[str, ...] = ENTRIES) -> Iterator[str]:
    """Relative names to archive, parents before children, in the order of ``tops``."""
    for top in tops:
        path = home / top
        if not os.path.lexists(path):
            continue
        yield top
        if path.is_symlink() or not path.is_dir():
            continue
        # An unreadable directory fails the backup: os.walk would skip it without a word.
        for root, dirs, files in os.walk(path, onerror=_raise):
            dirs[:] = sorted(d for d in dirs if not _skip(d))
            rel = os.path.relpath(root, home)
            # os.walk lists symlinks to directories under dirs; they are entries, not trees.
            links = [d for d in dirs if os.path.islink(os.path.join(root, d))]
            dirs[:] = [d for d in dirs if d not in links]
            for name in sorted([*files, *links]):
                if not _skip(name):
                    yield f"{rel}/{name}"
            for d in dirs:
                yield f"{rel}/{d}"


# -- backup --------------------------------------------------------------------------------------


def _open_for_writing(path: Path, raw: IO[bytes]) -> tarfile.TarFile:
    """xz for ``.tar.xz`` / ``.txz``, else gzip."""
    if path.name.lower().endswith((".tar.xz", ".txz")):
        return tarfile.open(fileobj=raw, mode="w:xz", format=tarfile.PAX_FORMAT)
    return tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT)


class _Hashing:
    """Reads a file for the archive while hashing it: the digest is of the very bytes stored."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.digest = f, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.digest.update(data)
        return data


def _member(home: Path, tar: tarfile.TarFile, rel: str) -> tarfile.TarInfo:
    info = tar.gettarinfo(str(home / rel), arcname=rel)
    # Owners belong to the old machine; restore gives files to whoever runs it.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = int(info.mtime)  # (a float would add a PAX header to every member)
    return info


def _entry(info: tarfile.TarInfo, digest: str = "") -> Entry:
    kind = "file" if info.isreg() else "dir" if info.isdir() else "link"
    return Entry(
        info.name,
        kind,
        info.mode & 0o7777,
        int(info.mtime),
        size=info.size if kind == "file" else 0,
        sha256=digest,
        target=info.linkname,
    )


@contextlib.contextmanager
def _lineage_locks(home: Path, names: list[str]) -> Iterator[None]:
    """Hold the locks every lineage writer (get, renew, the proxy, import, install) holds while
    it publishes a version, then the local CA's, always in this order: no certificate, its
    state or the CA changes while the backup reads them. A home this user cannot write (so no
    lock file can be made) is read without them; the order of reading below still keeps
    ``live/`` pointing at versions in the archive."""
    from certsmith.base.store import open_store
    from certsmith.errors import StoreError

    store = open_store(home)
    with contextlib.ExitStack() as stack:
        for lock in [*(store_keys.lineage_lease(n) for n in sorted(names)), store_keys.CA_LEASE]:
            try:
                stack.enter_context(store.lock(lock))
            except (PermissionError, StoreError):
                break
            except OSError as exc:
                if exc.errno != errno.EROFS:
                    raise
                break
        yield


def _collect(home: Path, spool: tarfile.TarFile) -> list[Entry]:
    """Copy the home's entries into ``spool`` (an uncompressed tar); returns their entries.

    ``live/`` is read first and stored last: a version is immutable once published and is
    complete in ``archive/`` before any link names it, so every link read before the archive is
    walked names a version the walk finds (a version published meanwhile is merely not live)."""
    entries: list[Entry] = []
    live = [_member(home, spool, rel) for rel in _walk(home, ("live",))]
    for rel in _walk(home, tuple(t for t in ENTRIES if t != "live")):
        info = _member(home, spool, rel)
        if info.isreg():
            with open(home / rel, "rb") as f:
                reader = _Hashing(f)
                spool.addfile(info, reader)  # type: ignore[arg-type]
            entries.append(_entry(info, reader.digest.hexdigest()))
        elif info.isdir() or info.issym():
            spool.addfile(info)
            entries.append(_entry(info))
    for info in live:
        if info.isdir() or info.issym():
            spool.addfile(info)
            entries.append(_entry(info))
    return entries


def backup(home: Path, dest: Path) -> Summary:
    """Write a backup of ``home`` to ``dest`` (0600, atomically)."""
    home = home.absolute()
    dest = dest.absolute()
    if not home.is_dir():
        raise NotFoundError(f"no state directory at {home}: nothing to back up")
    if dest.is_dir():
        raise UsageError(f"{dest} is a directory; give the name of the archive file")
    if dest.resolve().is_relative_to(home.resolve()):
        raise UsageError(f"write the backup outside the state directory {home}")
    if not dest.parent.is_dir():
        raise NotFoundError(f"no directory {dest.parent} to write {dest.name} into")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:  # first, so that an unwritable destination fails before any reading
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise BackupError(f"cannot write {dest}: {exc.strerror}") from exc
    try:
        names = certificate_names(home)
        with tempfile.SpooledTemporaryFile(_SPOOL, dir=str(dest.parent)) as spool_file:
            with (
                _lineage_locks(home, names),
                tarfile.open(fileobj=spool_file, mode="w", format=tarfile.PAX_FORMAT) as spool,
            ):
                entries = _collect(home, spool)
            manifest = manifest_format.encode(
                {
                    "certsmith": CERTSMITH_VERSION,
                    "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "certificates": names,
                    "layout": _layout(home),
                },
                entries,
            )
            accounts = _count_accounts(home)
            spool_file.seek(0)
            _write(fd, dest, manifest, spool_file)
        os.close(fd)
        fd = -1
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except BaseException as exc:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            what = exc.filename if exc.filename and str(exc.filename) != str(tmp) else dest
            verb = "read" if what is not dest and Path(what).is_relative_to(home) else "write"
            raise BackupError(f"cannot {verb} {what}: {exc.strerror or exc}") from exc
        raise
    files = sum(1 for e in entries if e.kind == "file")
    return Summary(dest, home, tuple(names), accounts, files)


def _write(fd: int, dest: Path, manifest: bytes, spool_file: IO[bytes]) -> None:
    """The archive into ``fd``: the manifest, then the spooled members. The caller writes it
    beside ``dest`` and renames it into place, so ``dest`` is never half-written."""
    os.fchmod(fd, 0o600)
    with (
        os.fdopen(fd, "wb", closefd=False) as raw,
        _open_for_writing(dest, raw) as tar,
        tarfile.open(fileobj=spool_file, mode="r:") as spool,
    ):
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode = len(manifest), 0o600
        info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
        tar.addfile(info, _bytes_reader(manifest))
        for member in spool:
            tar.addfile(member, spool.extractfile(member) if member.isreg() else None)
    os.fsync(fd)


def _bytes_reader(data: bytes) -> IO[bytes]:
    import io

    return io.BytesIO(data)


# -- restore -------------------------------------------------------------------------------------


def _refuse(archive: Path, why: str) -> BackupError:
    return BackupError(f"refusing to restore {archive}: {why}")


@dataclass(frozen=True)
class Plan:
    """Which top-level entries the archive replaces, and what in the home that would lose."""

    replace: frozenset[str]
    lost: tuple[str, ...]


def _carried(entries: dict[str, Entry]) -> frozenset[str]:
    """Top-level entries the archive has content for (an empty directory replaces nothing)."""
    return frozenset(name.split("/")[0] for name, e in entries.items() if e.kind != "dir")


def _home_entries(home: Path, top: str) -> Iterator[str]:
    path = home / top
    if not os.path.lexists(path):
        return
    if not path.is_dir() or path.is_symlink():
        yield top
        return
    for root, dirs, files in os.walk(path, onerror=_raise):
        rel = os.path.relpath(root, home)
        for name in [*files, *(d for d in dirs if os.path.islink(os.path.join(root, d)))]:
            if not _skip(name):
                yield f"{rel}/{name}"


def _raise(exc: OSError) -> None:
    raise exc


def _same_content(home: Path, rel: str, entry: Entry | None) -> bool:
    path = home / rel
    if entry is None:
        return False
    if path.is_symlink():
        return entry.kind == "link" and os.readlink(path) == entry.target
    if entry.kind != "file":
        return False
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest() == entry.sha256


def plan(home: Path, entries: dict[str, Entry]) -> Plan:
    """What restoring ``entries`` into ``home`` replaces; entries the archive does not carry
    (an existing local CA when the backup has none, say) stay as they are."""
    replace = _carried(entries)
    lost: list[str] = []
    if home.is_dir():
        for top in ENTRIES:
            if top in replace:
                lost += [
                    rel
                    for rel in _home_entries(home, top)
                    if not _same_content(home, rel, entries.get(rel))
                ]
    return Plan(replace, tuple(lost))


def describe(lost: tuple[str, ...]) -> str:
    """What the lost files are, for a person: certificates, the local CA, accounts, others."""
    certs: set[str] = set()
    accounts: set[str] = set()
    ca_keys = ca = False
    other = 0
    for rel in lost:
        parts = rel.split("/")
        if parts[0] in ("sites", "archive", "live", "state") and len(parts) > 1:
            name = parts[1]
            for suffix in (".toml", ".json"):
                if parts[0] in ("sites", "state") and name.endswith(suffix):
                    name = name[: -len(suffix)]
            certs.add(name)
        elif parts[0] == "ca":
            ca = True
            ca_keys = ca_keys or rel.endswith("key.pem") or rel == "ca/intermediate.pem"
        elif parts[0] == "accounts" and len(parts) > 3:
            accounts.add("/".join(parts[1:3]))
        else:
            other += 1
    words = []
    if certs:
        words.append(f"certificates ({', '.join(sorted(certs))})")
    if ca:
        words.append("a local CA with its root key" if ca_keys else "a local CA")
    if accounts:
        words.append(
            f"{len(accounts)} ACME account{'s' if len(accounts) != 1 else ''} "
            f"with {'their keys' if len(accounts) != 1 else 'its key'}"
        )
    if other:
        words.append(f"{other} other file{'s' if other != 1 else ''}")
    return ", ".join(words)


def restore(archive: Path, home: Path, *, force: bool = False) -> Summary:
    """Restore ``archive`` into ``home``. The whole archive is verified before anything in
    ``home`` changes; without ``force`` nothing the archive would replace may differ."""
    archive = archive.absolute()
    home = home.absolute()
    with open_archive(archive) as raw:
        reader = ArchiveReader(raw)
        try:
            manifest = reader.manifest()
            entries = check_entries(manifest.entries)
        except (ArchiveError, UnsafeArchive) as exc:
            raise _refuse(archive, str(exc)) from None
        exists = home.exists()
        if exists and not home.is_dir():
            raise UsageError(f"{home} exists and is not a directory")
        try:
            todo = plan(home, entries)
        except OSError as exc:
            raise BackupError(f"cannot read {exc.filename or home}: {exc.strerror}") from exc
        if todo.lost and not force:
            raise UsageError(
                f"{home} already has {describe(todo.lost)}; use --force to "
                f"replace them with the backup's"
            )
        files = _unpack_and_swap(archive, reader, manifest, entries, home, todo)
    return Summary(
        archive, home, manifest.certificates, _count_accounts(home), files, describe(todo.lost)
    )


def _unpack_and_swap(
    archive: Path,
    reader: ArchiveReader,
    manifest: Manifest,
    entries: dict[str, Entry],
    home: Path,
    todo: Plan,
) -> int:
    exists = home.exists()
    # Staging on the same filesystem as the destination, so the renames below are atomic:
    # beside a new home, inside an existing one (which may be a mount point).
    if exists:
        staging = home / f".restore.{os.getpid()}.tmp"
    else:
        home.parent.mkdir(parents=True, exist_ok=True)
        staging = home.with_name(f".{home.name}.restore.{os.getpid()}.tmp")
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        try:
            files = reader.unpack(manifest, staging)
            check_keys(staging, entries)  # a key the checksums vouch for may still be the wrong one
        except (ArchiveError, UnsafeArchive) as exc:
            raise _refuse(archive, str(exc)) from None
        if exists:
            _swap_entries(staging, home, todo.replace)
            atomic_write(home / FORMAT_KEY, f"{manifest.layout}\n".encode(), 0o644)
        else:
            atomic_write(staging / FORMAT_KEY, f"{manifest.layout}\n".encode(), 0o644)
            os.chmod(staging, 0o755)
            os.rename(staging, home)
            fsync_dir(home.parent)
    except OSError as exc:
        raise BackupError(f"cannot restore into {home}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return files


def _layout(home: Path) -> int:
    """The layout version of ``home`` (its ``format`` file; 1 without one)."""
    try:
        raw = (home / FORMAT_KEY).read_bytes().strip()
    except FileNotFoundError:
        return 1
    return int(raw) if raw.isdigit() else 1


def _swap_entries(staging: Path, home: Path, replace: frozenset[str]) -> None:
    """Move each top-level entry the archive carries from ``staging`` into ``home`` with one
    rename each; an entry it does not carry stays, or comes (empty) from the archive if the
    home has none."""
    trash = staging / ".old"
    trash.mkdir(mode=0o700)
    for top in ENTRIES:
        new = staging / top
        dest = home / top
        if not os.path.lexists(new):
            continue
        if os.path.lexists(dest):
            if top not in replace:
                continue
            os.rename(dest, trash / top)
        os.rename(new, dest)
    fsync_dir(home)
