"""Read a backup archive once, front to back, verifying every byte and bounding every size.

The archive is read as a stream (so a pipe works too): the manifest first, then each member is
compared with its manifest entry and unpacked into a staging directory, then the compressed
stream is read to its very end, which is where gzip and xz keep the checksum of everything
before it (a flipped byte in the trailer, or a cut one, is caught only there). Nothing counts
as read until all of that passed. How much is read is bounded by what the manifest announces,
and the manifest by a fixed limit, so ``/dev/zero``, a decompression bomb or an endless stream
ends with one line instead of never.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import lzma
import os
import stat
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast

from certsmith.errors import CertsmithError, NotFoundError, UsageError
from certsmith.services.backup_checks import restored_mode
from certsmith.services.backup_manifest import (
    MAX_BYTES,
    NAME,
    Entry,
    Manifest,
    ManifestError,
    decode,
)

_CHUNK = 1 << 20
_SLACK = 64 << 10  # end-of-archive blocks, record padding, read-ahead
# What a damaged stream raises while being read (BadGzipFile is an OSError).
DAMAGED = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)


class ArchiveError(CertsmithError):
    """A phrase saying what is wrong with the archive."""


class _Bounded(io.RawIOBase):
    """A reader that refuses to go past ``limit`` bytes (which may be raised once known)."""

    def __init__(self, inner: IO[bytes], limit: int, what: str) -> None:
        self.inner, self.limit, self.count, self.what = inner, limit, 0, what

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        want = self.limit - self.count + 1 if size is None or size < 0 else size
        data = self.inner.read(min(want, self.limit - self.count + 1))
        self.count += len(data)
        if self.count > self.limit:
            raise ArchiveError(f"{self.what} is longer than its manifest allows")
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


@contextlib.contextmanager
def open_archive(path: Path) -> Iterator[IO[bytes]]:
    """The archive's bytes; only a regular file or a pipe, never a device or directory."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NotFoundError(f"no such file: {path}") from None
    except OSError as exc:
        raise ArchiveError(f"cannot read {path}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{path} is a directory, not a backup archive")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        raise UsageError(f"{path} is not a regular file, not a backup archive")
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise ArchiveError(f"cannot read {path}: {exc.strerror}") from None
    with f:
        yield f


class ArchiveReader:
    """One pass over an archive: :meth:`manifest`, then :meth:`unpack`."""

    def __init__(self, raw: IO[bytes]) -> None:
        first = MAX_BYTES + _SLACK
        self._raw = _Bounded(raw, first + first // 32 + _SLACK, "the archive")
        buffered = io.BufferedReader(self._raw, _CHUNK)
        magic = buffered.peek(6)[:6]
        stream: IO[bytes]
        if magic[:2] == b"\x1f\x8b":
            stream = cast(IO[bytes], gzip.GzipFile(fileobj=buffered, mode="rb"))
        elif magic == b"\xfd7zXZ\x00":
            stream = cast(IO[bytes], lzma.LZMAFile(buffered))  # noqa: SIM115
        else:
            stream = buffered
        self._data = _Bounded(stream, first, "the archive")
        self._tar: tarfile.TarFile | None = None

    def manifest(self) -> Manifest:
        """The first member, verified; raises :class:`ArchiveError`."""
        try:
            # (closed with the file: the caller owns it)
            self._tar = tarfile.open(fileobj=self._data, mode="r|")  # type: ignore[call-overload]  # noqa: SIM115
            first = self._tar.next()
            if first is None or first.name != NAME or not first.isreg() or first.size > MAX_BYTES:
                raise ArchiveError(f"not a certsmith backup (no {NAME})")
            f = self._tar.extractfile(first)
            raw = f.read() if f is not None else b""
        except tarfile.ReadError as exc:
            raise ArchiveError("not a certsmith backup (not a tar archive)") from exc
        except DAMAGED as exc:
            raise ArchiveError(
                f"not a certsmith backup, or damaged before the end of {NAME} ({exc})"
            ) from exc
        try:
            manifest = decode(raw)
        except ManifestError as exc:
            raise ArchiveError(str(exc)) from None
        # From here on the manifest says how much there is to read.
        total = (
            self._data.count
            + _SLACK
            + sum(
                2048 + 2 * len(e.name.encode()) + -(-e.size // 512) * 512 for e in manifest.entries
            )
        )
        self._data.limit = total
        self._raw.limit = total + total // 32 + _SLACK
        return manifest

    def unpack(self, manifest: Manifest, into: Path) -> int:
        """Unpack every member below ``into`` (which the caller created empty), each compared
        with its entry, then read the stream to its end; returns the number of files."""
        assert self._tar is not None
        entries = manifest.entries
        files = 0
        dirs: list[tuple[Path, int]] = []
        try:
            for entry in entries:
                member = self._tar.next()
                if member is None:
                    raise ArchiveError(f"the archive ends before {entry.name} (damaged)")
                _same(member, entry)
                path = into.joinpath(*entry.name.split("/"))
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                if entry.kind == "dir":
                    path.mkdir(mode=0o700, exist_ok=True)
                    dirs.append((path, restored_mode(entry)))
                elif entry.kind == "link":
                    os.symlink(entry.target, path)
                else:
                    self._unpack_file(member, entry, path)
                    files += 1
            if self._tar.next() is not None:
                raise ArchiveError("the archive holds members its manifest does not list")
            while self._data.read(_CHUNK):
                pass  # the compressed stream's own checksum is at its very end
        except ArchiveError:
            raise
        except DAMAGED as exc:
            raise ArchiveError(f"the compressed data is damaged ({exc})") from exc
        # Directory modes last: a 0500 directory would have refused its own files.
        for path, mode in reversed(dirs):
            os.chmod(path, mode)
        return files

    def _unpack_file(self, member: tarfile.TarInfo, entry: Entry, path: Path) -> None:
        assert self._tar is not None
        src = self._tar.extractfile(member)
        if src is None:
            raise ArchiveError(f"cannot read {entry.name} from the archive")
        digest = hashlib.sha256()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, restored_mode(entry))
            with os.fdopen(fd, "wb", closefd=False) as out:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        if digest.hexdigest() != entry.sha256:
            raise ArchiveError(
                f"{entry.name} does not match its checksum in the manifest (damaged)"
            )
        os.utime(path, (entry.mtime, entry.mtime))


_KIND = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "link",
}


def _same(member: tarfile.TarInfo, entry: Entry) -> None:
    """The member's header says what its manifest entry says."""
    kind = _KIND.get(member.type, "other")
    if member.name != entry.name:
        raise ArchiveError(
            f"member {member.name!r} is not where the manifest lists {entry.name!r} (damaged)"
        )
    if kind != entry.kind:
        raise ArchiveError(
            f"{entry.name} is not a file, directory or symlink"
            if kind == "other"
            else f"{entry.name} is a {kind}, the manifest says {entry.kind} (damaged)"
        )
    if (
        (member.mode & 0o7777) != entry.mode
        or int(member.mtime) != entry.mtime
        or (kind == "file" and member.size != entry.size)
        or (kind == "link" and member.linkname != entry.target)
    ):
        raise ArchiveError(f"the header of {entry.name} does not match the manifest (damaged)")
