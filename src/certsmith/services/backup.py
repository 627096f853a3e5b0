"""Back up a state directory into one tar archive, and restore it on another machine.

The archive holds everything a new machine needs — sites, accounts, versions with their keys,
the ``live/`` symlinks, the local CA, renewal state, alert channels, the audit log and the
install records (``installs/<server>/<name>.json``: what ``get --SERVER`` and ``install`` did,
with their options) — plus a manifest (``certsmith-backup.json``) first. The files certsmith
wrote into web servers are not in it: they belong to the old machine's server tree, and
re-running the recorded ``certsmith install`` on the new one writes them for its tree
(:func:`reinstall_commands` says which). It is written 0600 next to its destination and renamed into
place, so ``FILE`` is never half-written.

Restore trusts nothing in the archive: every member is checked before anything is written
(relative names inside the known top-level entries, only files, directories and symlinks, no
member below a symlink, symlinks resolving inside the home without passing through another
symlink). It is unpacked into a staging directory and then moved into place with renames.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import lzma
import os
import shutil
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from certsmith import __version__
from certsmith.base.store.fs import fsync_dir
from certsmith.errors import CertsmithError, NotFoundError, UsageError

MANIFEST = "certsmith-backup.json"
FORMAT = "certsmith-backup"
VERSION = 1
# Restored in this order, ``live`` last so its symlinks never point at a missing version.
ENTRIES = ("sites", "accounts", "ca", "state", "archive", "events.jsonl", "alerts.toml",
           "installs", "live")
FILES = frozenset({"events.jsonl", "alerts.toml"})
_CHUNK = 1 << 20
# What a damaged archive raises while being read.
_DAMAGED = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError)


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

    def line(self, verb: str) -> str:
        names = ", ".join(self.certificates) if self.certificates else "none"
        count = len(self.certificates)
        return (f"{verb} {count} certificate{'s' if count != 1 else ''} ({names}), "
                f"{self.accounts} account{'s' if self.accounts != 1 else ''}, "
                f"{self.files} files")


# -- what a home holds ---------------------------------------------------------------------------


def _skip(name: str) -> bool:
    """Temporary files of the store (``.x.<pid>.tmp``) are never worth keeping."""
    return name.startswith(".") and name.endswith(".tmp")


def certificate_names(home: Path) -> list[str]:
    """Certificates in a home: site files and live links."""
    names: set[str] = set()
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        names.update(n[: -len(".toml")] for n in os.listdir(home / "sites")
                     if n.endswith(".toml") and not n.startswith("."))
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
        return (f"certsmith get {shlex.quote(name)} --{kind}    # renewals answer HTTP-01 "
                f"through {kind}")
    opts = record.get("options") or {}
    words = ["certsmith", "install", kind, name]
    flags = {"redirect": "--redirect", "hsts": "--hsts", "proxy_to": "--proxy-to",
             "listen_address": "--listen-address"}  # (listen_address: an older record)
    for key, flag in flags.items():
        if opts.get(key) not in (None, ""):
            words += [flag, str(opts[key])]
    for address in opts.get("listen_addresses") or ():
        words += ["--listen-address", str(address)]
    for key, flag, default in (("http_port", "--http-port", 80),
                               ("https_port", "--https-port", 443)):
        if opts.get(key) not in (None, default):
            words += [flag, str(opts[key])]
    return " ".join(shlex.quote(w) for w in words)


def _count_accounts(home: Path) -> int:
    n = 0
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for ca in os.scandir(home / "accounts"):
            if ca.is_dir(follow_symlinks=False):
                n += sum(1 for e in os.scandir(ca.path)
                         if e.is_dir(follow_symlinks=False) and not e.name.startswith("."))
    return n


def _walk(home: Path) -> Iterator[str]:
    """Relative names to archive, parents before children, in :data:`ENTRIES` order."""
    for top in ENTRIES:
        path = home / top
        if not os.path.lexists(path):
            continue
        yield top
        if path.is_symlink() or not path.is_dir():
            continue
        for root, dirs, files in os.walk(path):
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


def _tarinfo(home: Path, tar: tarfile.TarFile, rel: str) -> tarfile.TarInfo:
    info = tar.gettarinfo(str(home / rel), arcname=rel)
    # Owners belong to the old machine; restore gives files to whoever runs it.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


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
    names = certificate_names(home)
    manifest = json.dumps({
        "format": FORMAT, "version": VERSION, "certsmith": __version__,
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "certificates": names,
    }, indent=1).encode()

    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    files = 0
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise BackupError(f"cannot write {dest}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb", closefd=False) as raw, _open_for_writing(dest, raw) as tar:
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode = len(manifest), 0o600
            info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
            tar.addfile(info, _bytes_reader(manifest))
            # live/ is read before archive/ is walked: a version published meanwhile may be
            # missing from live, but live never points at a version missing from the archive.
            for rel in _walk(home):
                info = _tarinfo(home, tar, rel)
                if info.isreg():
                    with open(home / rel, "rb") as f:
                        tar.addfile(info, f)
                    files += 1
                elif info.isdir() or info.issym():
                    tar.addfile(info)
        os.fsync(fd)
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
            verb = "read" if what is not dest else "write"
            raise BackupError(f"cannot {verb} {what}: {exc.strerror or exc}") from exc
        raise
    return Summary(dest, home, tuple(names), _count_accounts(home), files)


def _bytes_reader(data: bytes) -> IO[bytes]:
    import io

    return io.BytesIO(data)


# -- restore: checks (pure, on the member list) --------------------------------------------------


def _refuse(archive: Path, why: str) -> BackupError:
    return BackupError(f"refusing to restore {archive}: {why}")


def check_members(archive: Path,
                  members: list[tarfile.TarInfo]) -> dict[str, tarfile.TarInfo]:
    """The members to restore, by name; raises :class:`BackupError` on anything unsafe."""
    if not members or members[0].name != MANIFEST or not members[0].isreg():
        raise BackupError(f"{archive} is not a certsmith backup (no {MANIFEST})")
    seen: dict[str, tarfile.TarInfo] = {}
    for m in members[1:]:
        name = m.name
        parts = name.split("/")
        if name.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise _refuse(archive, f"unsafe member name {name!r}")
        if name in seen:
            raise _refuse(archive, f"member {name!r} appears twice")
        if parts[0] not in ENTRIES:
            raise _refuse(archive, f"unexpected member {name!r}")
        if parts[0] in FILES and not (len(parts) == 1 and m.isreg()):
            raise _refuse(archive, f"{parts[0]} must be a regular file")
        if parts[0] not in FILES and len(parts) == 1 and not m.isdir():
            raise _refuse(archive, f"{parts[0]} must be a directory")
        if not (m.isreg() or m.isdir() or m.issym()):
            raise _refuse(archive, f"{name!r} is not a file, directory or symlink")
        for i in range(1, len(parts)):
            parent = seen.get("/".join(parts[:i]))
            if parent is not None and not parent.isdir():
                raise _refuse(archive, f"{name!r} lies below a non-directory member")
        seen[name] = m
    for name, m in seen.items():
        if m.issym():
            _check_link(archive, name, m.linkname, seen)
    return seen


def _check_link(archive: Path, name: str, target: str,
                members: dict[str, tarfile.TarInfo]) -> None:
    """A symlink must resolve inside the home, through real directories only."""
    if not target or target.startswith("/"):
        raise _refuse(archive, f"symlink {name!r} points outside the state directory")
    stack = name.split("/")[:-1]
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                raise _refuse(archive, f"symlink {name!r} points outside the state directory")
            stack.pop()
            continue
        stack.append(part)
        hop = members.get("/".join(stack))
        if hop is not None and hop.issym():
            raise _refuse(archive, f"symlink {name!r} points through another symlink")


def read_manifest(archive: Path, tar: tarfile.TarFile, member: tarfile.TarInfo) -> dict[str, Any]:
    f = tar.extractfile(member)
    try:
        data = json.loads(f.read(1 << 20)) if f else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BackupError(f"{archive} is not a certsmith backup (bad {MANIFEST})")
    version = data.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise BackupError(f"{archive} is a backup format version {version!r}; "
                          f"this certsmith reads up to {VERSION}: upgrade certsmith")
    return data


# -- restore: I/O --------------------------------------------------------------------------------


def _open(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, mode="r:*")
    except FileNotFoundError:
        raise NotFoundError(f"no such file: {archive}") from None
    except IsADirectoryError:
        raise UsageError(f"{archive} is a directory, not a backup archive") from None
    except PermissionError:
        raise BackupError(f"cannot read {archive}: permission denied") from None
    except (*_DAMAGED, OSError) as exc:
        raise BackupError(f"{archive} is not a certsmith backup (not a tar archive)") from exc


def _extract(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], into: Path) -> int:
    """Unpack checked members below ``into`` (which we just created); returns the file count."""
    files = 0
    dirs: list[tuple[Path, int]] = []
    for name, m in members.items():
        path = into.joinpath(*name.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        mode = m.mode & 0o777  # never setuid/setgid/sticky from an archive
        if m.isdir():
            path.mkdir(mode=0o700, exist_ok=True)
            dirs.append((path, mode))
        elif m.issym():
            os.symlink(m.linkname, path)
        else:
            src = tar.extractfile(m)
            if src is None:
                raise BackupError(f"cannot read {name!r} from the archive")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.fchmod(fd, mode)
                with os.fdopen(fd, "wb", closefd=False) as out:
                    shutil.copyfileobj(src, out, _CHUNK)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.utime(path, (m.mtime, m.mtime))
            files += 1
    # Directory modes last: a 0500 directory would have refused its own files.
    for path, mode in reversed(dirs):
        os.chmod(path, mode)
    return files


def _has_certificates(home: Path) -> list[str]:
    return certificate_names(home) if home.is_dir() else []


def restore(archive: Path, home: Path, *, force: bool = False) -> Summary:
    """Restore ``archive`` into ``home``; refuses unsafe archives and, without ``force``, a home
    that already has certificates."""
    archive = archive.absolute()
    home = home.absolute()
    with _open(archive) as tar:
        try:
            members = tar.getmembers()
        except (*_DAMAGED, OSError) as exc:
            raise BackupError(f"{archive} is not a certsmith backup (damaged archive)") from exc
        checked = check_members(archive, members)
        manifest = read_manifest(archive, tar, members[0])
        existing = _has_certificates(home)
        if existing and not force:
            raise UsageError(f"{home} already has certificates ({', '.join(existing)}); "
                             f"use --force to replace them")
        exists = home.exists()
        if exists and not home.is_dir():
            raise UsageError(f"{home} exists and is not a directory")
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
            files = _extract(tar, checked, staging)
            if exists:
                _swap_entries(staging, home)
            else:
                os.chmod(staging, 0o755)
                os.rename(staging, home)
                fsync_dir(home.parent)
        except _DAMAGED as exc:
            raise BackupError(f"{archive} is damaged; nothing was restored") from exc
        except OSError as exc:
            raise BackupError(f"cannot restore into {home}: {exc.strerror or exc}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    names = manifest.get("certificates")
    certs = tuple(str(n) for n in names) if isinstance(names, list) else ()
    return Summary(archive, home, certs, _count_accounts(home), files)


def _swap_entries(staging: Path, home: Path) -> None:
    """Move each top-level entry from ``staging`` into ``home`` with one rename each."""
    trash = staging / ".old"
    trash.mkdir(mode=0o700)
    for top in ENTRIES:
        new = staging / top
        dest = home / top
        if os.path.lexists(dest):
            os.rename(dest, trash / top)
        if os.path.lexists(new):
            os.rename(new, dest)
    fsync_dir(home)
