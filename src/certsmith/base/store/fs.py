"""Filesystem store (DESIGN.md layout).

Every write is temp file + fsync + rename, so a crash leaves either the old or the new file.
A certificate version is written whole under ``archive/<name>/<n>/`` before ``live/<name>`` (a
symlink) is switched with one rename, so the four files always change together.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from certsmith.base.crashpoints import crash_point
from certsmith.base.store.base import Lease
from certsmith.base.store.keys import key_parts
from certsmith.base.store.layout import FORMAT, FORMAT_KEY, has_state
from certsmith.errors import LockedError, StaleLeaseError, StoreError

_VERSION = re.compile(r"^[0-9]+$")
PRIVATE_DIRS = ("accounts", "archive", "ca", "locks", "state")


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically; the file has ``mode`` from its first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        crash_point(f"write:{path.name}")
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


class FileStore:
    """State under one directory; see DESIGN.md "State on disk"."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self._home = str(self.home)

    # -- plumbing -------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.home.joinpath(*key_parts(key))

    def ensure(self) -> None:
        """Create the state directory tree with safe modes (idempotent); a new one gets the
        current layout version (``format``; see ``migrate``)."""
        try:
            fresh = not (self.home / FORMAT_KEY).exists() and not has_state(self.home)
            self.home.mkdir(parents=True, exist_ok=True, mode=0o755)
            if fresh:
                atomic_write(self.home / FORMAT_KEY, f"{FORMAT}\n".encode(), 0o644)
            for sub in PRIVATE_DIRS:
                (self.home / sub).mkdir(exist_ok=True, mode=0o700)
            for sub in ("sites", "live"):
                (self.home / sub).mkdir(exist_ok=True, mode=0o755)
        except OSError as exc:
            raise StoreError(f"cannot create state directory {self.home}: {exc.strerror}") from exc

    def _mkdirs(self, path: Path, private: bool) -> None:
        missing: list[Path] = []
        p = path
        while not p.exists():
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            private_here = private or d.relative_to(self.home).parts[0] in PRIVATE_DIRS
            d.mkdir(mode=0o700 if private_here else 0o755, exist_ok=True)

    # -- key/value ------------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        self._path(key)  # validates the key
        try:
            # (plain os calls: this is the renewal scan's hot path, once per certificate)
            with open(os.path.join(self._home, key), "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {self._path(key)}: {exc.strerror}") from exc

    def where(self, key: str) -> str:
        return str(self._path(key))

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def put(
        self, key: str, data: bytes, *, private: bool = False, fence: Lease | None = None
    ) -> None:
        path = self._path(key)
        with self._fenced(_as_file_lease(fence)):
            try:
                self.ensure()
                self._mkdirs(path.parent, private)
                atomic_write(path, data, 0o600 if private else 0o644)
            except OSError as exc:
                raise StoreError(f"cannot write {path}: {exc.strerror}") from exc

    def append(self, key: str, data: bytes) -> None:
        """One O_APPEND write: concurrent writers' records stay whole."""
        path = self._path(key)
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror}") from exc
        try:
            os.write(fd, data)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror}") from exc
        finally:
            os.close(fd)

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        try:
            names = sorted(os.listdir(base))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise StoreError(f"cannot read {base}: {exc.strerror}") from exc
        return [f"{prefix}/{n}" for n in names if not n.startswith(".")]

    def delete(self, key: str, *, fence: Lease | None = None) -> None:
        path = self._path(key)
        with self._fenced(_as_file_lease(fence)):
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StoreError(f"cannot delete {path}: {exc.strerror}") from exc

    def lock(self, name: str, *, ttl: float | None = None, wait: float | None = None) -> FileLease:
        """An exclusive lease shared by all processes using this home; released if we die
        (``flock``), so ``ttl`` needs no timer here.

        ``wait=None`` waits as long as needed, ``wait=0`` fails at once if held.
        """
        del ttl  # the kernel releases a dead holder's flock at once
        self.ensure()
        safe = name.replace("/", "_")
        path = self.home / "locks" / f"{safe}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot lock {path}: {exc.strerror}") from exc
        try:
            _flock(fd, name, wait)
        except BaseException:
            os.close(fd)
            raise
        return FileLease(self, name, fd)

    # -- fencing --------------------------------------------------------------------------------

    def _token_path(self, name: str) -> Path:
        return self.home / "locks" / f"{name.replace('/', '_')}.token"

    @contextlib.contextmanager
    def _fenced(self, fence: FileLease | None) -> Iterator[None]:
        """Hold the lease's token still while a write is made, and refuse the write unless
        ``fence`` is the newest lease on its name."""
        if fence is None:
            yield
            return
        if fence.store.home != self.home:
            raise StaleLeaseError(f"lease {fence.name} belongs to another store")
        mine = fence.token  # (drawn now if this is the lease's first fenced write)
        with _TokenFile(self._token_path(fence.name)) as tokens:
            current = tokens.read()
            if fence.released or current != mine:
                raise StaleLeaseError(
                    f"lease {fence.name} (token {mine}) was superseded by token {current}: "
                    "another certsmith process took over; nothing was written"
                )
            yield

    # -- certificate versions -------------------------------------------------------------------

    def versions(self, name: str) -> Iterator[int]:
        try:
            entries = os.listdir(self.home / "archive" / name)
        except FileNotFoundError:
            return iter(())
        except OSError as exc:
            raise StoreError(f"cannot read {self.home / 'archive' / name}: {exc.strerror}") from exc
        return iter(sorted(int(e) for e in entries if _VERSION.match(e)))

    def live_path(self, name: str) -> Path:
        return self.home / "live" / name

    def live_version(self, name: str) -> int | None:
        try:
            target = os.readlink(os.path.join(self._home, "live", name))
        except (FileNotFoundError, OSError):
            return None
        last = os.path.basename(target.rstrip("/"))
        return int(last) if _VERSION.match(last) else None

    def publish(
        self,
        name: str,
        files: Mapping[str, bytes],
        private: frozenset[str],
        *,
        fence: Lease | None = None,
    ) -> int:
        """Write version n+1 of ``name`` whole, then point ``live/name`` at it with one rename."""
        with self._fenced(_as_file_lease(fence)):
            return self._publish(name, files, private)

    def _publish(self, name: str, files: Mapping[str, bytes], private: frozenset[str]) -> int:
        self.ensure()
        archive = self.home / "archive" / name
        try:
            archive.mkdir(mode=0o700, exist_ok=True)
            os.chmod(archive, 0o700)
            existing = list(self.versions(name))
            version = (existing[-1] if existing else 0) + 1
            staging = archive / f".{version}.{os.getpid()}.tmp"
            if staging.exists():
                shutil.rmtree(staging)
            # 0755: web servers started as root drop privileges only after reading the files;
            # the key itself is 0600.
            staging.mkdir(mode=0o755)
            os.chmod(staging, 0o755)
            for filename, data in files.items():
                atomic_write(staging / filename, data, 0o600 if filename in private else 0o644)
                crash_point(f"publish:wrote:{filename}")
            final = archive / str(version)
            os.rename(staging, final)
            fsync_dir(archive)
            crash_point("publish:archived")
            live = self.live_path(name)
            tmp_link = live.with_name(f".{name}.{os.getpid()}.tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp_link.unlink()
            os.symlink(f"../archive/{name}/{version}", tmp_link)
            crash_point("publish:linked")
            os.replace(tmp_link, live)
            fsync_dir(live.parent)
        except OSError as exc:
            raise StoreError(f"cannot write certificate {name}: {exc.strerror or exc}") from exc
        self._prune_staging(archive)
        return version

    def materialize(self, name: str) -> bool:
        """Nothing to do: ``live/`` is this store's own state, already on the local disk."""
        key_parts(name)
        return False

    def relink(self, name: str, version: int, *, fence: Lease | None = None) -> None:
        """Point ``live/name`` at an existing ``version`` with one rename (repairs a damaged
        live set; the caller holds the lineage lock)."""
        with self._fenced(_as_file_lease(fence)):
            self._relink(name, version)

    def _relink(self, name: str, version: int) -> None:
        live = self.live_path(name)
        tmp_link = live.with_name(f".{name}.{os.getpid()}.tmp")
        try:
            with contextlib.suppress(FileNotFoundError):
                tmp_link.unlink()
            os.symlink(f"../archive/{name}/{version}", tmp_link)
            os.replace(tmp_link, live)
            fsync_dir(live.parent)
        except OSError as exc:
            raise StoreError(f"cannot relink {live}: {exc.strerror or exc}") from exc

    def _prune_staging(self, archive: Path) -> None:
        """Remove staging directories left by crashed processes (never a published version)."""
        for entry in archive.iterdir():
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                pid = entry.name.split(".")[-2]
                if pid.isdigit() and _pid_alive(int(pid)):
                    continue
                shutil.rmtree(entry, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _flock(fd: int, name: str, wait: float | None) -> None:
    deadline = None if wait is None else time.monotonic() + wait
    delay = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait is None else fcntl.LOCK_NB))
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise StoreError(f"cannot lock {name}: {exc.strerror}") from exc
            if deadline is None or time.monotonic() >= deadline:
                raise LockedError(
                    f"{name} is locked by another certsmith process; try again later"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


class _TokenFile:
    """``locks/NAME.token``: the newest fencing token, read and changed under its own flock
    (a fenced write and a new lease's draw never interleave)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> _TokenFile:
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open {self.path}: {exc.strerror}") from exc
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def read(self) -> int:
        raw = os.pread(self.fd, 64, 0).strip()
        return int(raw) if raw.isdigit() else 0

    def write(self, token: int) -> None:
        data = b"%d\n" % token
        os.pwrite(self.fd, data, 0)
        os.ftruncate(self.fd, len(data))
        os.fsync(self.fd)


class FileLease:
    """A held ``flock`` on ``locks/NAME.lock``. Its fencing token is drawn (the stored counter
    plus one) the first time it is needed, so taking a lease writes nothing until a fenced
    write is made."""

    def __init__(self, store: FileStore, name: str, fd: int) -> None:
        self.store = store
        self.name = name
        self._fd = fd
        self._token: int | None = None
        self.released = False

    @property
    def token(self) -> int:
        if self._token is None:
            if self.released:
                raise StaleLeaseError(f"lease {self.name} was released")
            with _TokenFile(self.store._token_path(self.name)) as tokens:
                self._token = tokens.read() + 1
                tokens.write(self._token)
        return self._token

    def renew(self, ttl: float | None = None) -> None:
        if self.released:
            raise StaleLeaseError(f"lease {self.name} was released")

    def release(self) -> None:
        if not self.released:
            self.released = True
            os.close(self._fd)

    def __enter__(self) -> FileLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        if not getattr(self, "released", True):
            with contextlib.suppress(OSError):
                os.close(self._fd)


def _as_file_lease(fence: Lease | None) -> FileLease | None:
    if fence is None or isinstance(fence, FileLease):
        return fence
    raise StaleLeaseError(f"lease {fence.name} belongs to another store")
