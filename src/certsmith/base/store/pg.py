"""PostgreSQL store: the state several certsmith nodes share, in one database; the live files
each node's web servers read, materialized on that node's local disk.

The database holds everything but the live files (tables below, created and upgraded by the
store itself on first use: ``MIGRATIONS``, an ordered list, the number applied kept in
``certsmith_schema_version``):

- ``certsmith_kv(key, data, private)``: keyed bytes. ``certsmith_appends(key, seq, data)``: the
  records appended to a key (the audit log), one INSERT each; ``get`` returns the key's data
  followed by its records in ``seq`` order, ``put`` replaces both.
- ``certsmith_versions(name, version)``, ``certsmith_version_files(name, version, file, data,
  private)``: certificate lineages, one row per file; ``certsmith_live(name, version)``: the
  live pointer.
- ``certsmith_leases(name, token, holder, expires)``: one row per lease name, never deleted,
  so tokens only grow. A lease is taken by one statement on the database's clock (the row is
  free once ``expires`` has passed; a release sets it to ``-infinity``); renew and release are
  UPDATEs conditional on (name, token). A write with ``fence=lease`` locks that row (FOR
  SHARE) in its own transaction and writes nothing (StaleLeaseError) unless it still carries
  the lease's token and has not expired; a new holder's statement waits for that lock, so no
  fenced write can land after a takeover. No session state (advisory locks, LISTEN, prepared
  statements): it works through PgBouncer in transaction pooling mode.
- ``certsmith_meta(name, data)``: ``keycheck``, a constant sealed with the node's key, so a
  node with another key file is refused before it writes anything.

Private data (``put(private=True)`` and the private files of a version) is sealed with AES-GCM
(256-bit key) before it leaves the process: ``0x01 || nonce(12) || ciphertext+tag``, the key
name (``kv:KEY``, ``file:NAME/VERSION/FILE``) as associated data so rows cannot be swapped. The
key lives only in ``key_file`` on each node (one line, the 32 bytes in base64; created 0600 if
missing; refused if group or others can read it): copy it to every node, never into the
database. Leases last ``DEFAULT_TTL`` seconds unless ``lock(ttl=...)`` says otherwise.

Locally, ``publish`` and ``relink`` write the version under ``home/archive/NAME/N/`` (privkey
0600) and switch the ``home/live/NAME`` symlink with one rename, as ``FileStore`` does.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import stat
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from certsmith.base.store.base import Lease
from certsmith.base.store.fs import atomic_write, fsync_dir
from certsmith.base.store.keys import key_parts
from certsmith.errors import LockedError, StaleLeaseError, StoreError

DEFAULT_TTL = 60.0  # seconds a lease lasts unrenewed (a holder that vanished frees it then)
KEY_BYTES = 32
_SEALED = b"\x01"
_KEYCHECK = b"certsmith key check"
_SCHEMA_LOCK = 0x63657274736D6974  # pg_advisory_xact_lock: one migrating transaction at a time

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE certsmith_kv (
            key text PRIMARY KEY, data bytea NOT NULL, private boolean NOT NULL)""",
        """CREATE TABLE certsmith_appends (
            key text NOT NULL REFERENCES certsmith_kv (key) ON DELETE CASCADE,
            seq bigserial, data bytea NOT NULL, PRIMARY KEY (key, seq))""",
        """CREATE TABLE certsmith_versions (
            name text NOT NULL, version integer NOT NULL,
            created timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (name, version))""",
        """CREATE TABLE certsmith_version_files (
            name text NOT NULL, version integer NOT NULL, file text NOT NULL,
            data bytea NOT NULL, private boolean NOT NULL,
            PRIMARY KEY (name, version, file),
            FOREIGN KEY (name, version) REFERENCES certsmith_versions ON DELETE CASCADE)""",
        """CREATE TABLE certsmith_live (
            name text PRIMARY KEY, version integer NOT NULL,
            FOREIGN KEY (name, version) REFERENCES certsmith_versions)""",
        """CREATE TABLE certsmith_leases (
            name text PRIMARY KEY, token bigint NOT NULL, holder text NOT NULL,
            expires timestamptz NOT NULL)""",
        """CREATE TABLE certsmith_meta (name text PRIMARY KEY, data bytea NOT NULL)""",
    ),
)

_TAKE = """
INSERT INTO certsmith_leases AS l (name, token, holder, expires)
VALUES (%(name)s, 1, %(holder)s, now() + make_interval(secs => %(ttl)s))
ON CONFLICT (name) DO UPDATE
    SET token = l.token + 1, holder = excluded.holder, expires = excluded.expires
    WHERE l.expires <= now()
RETURNING token"""


def read_key_file(path: Path) -> bytes:
    """The 32-byte key in ``path`` (created, 0600, if missing); StoreError if others can read
    it or it is not one base64 line of 32 bytes."""
    try:
        _create_key_file(path)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            mode = stat.S_IMODE(os.fstat(fd).st_mode)
            raw = os.read(fd, 4096)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StoreError(f"cannot read the store key file {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise StoreError(
            f"the store key file {path} is readable by others (mode {mode:04o}): chmod 600 it"
        )
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise StoreError(f"the store key file {path} is not one base64 line of {KEY_BYTES} bytes")
    return key


def _create_key_file(path: Path) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = base64.b64encode(os.urandom(KEY_BYTES)) + b"\n"
    atomic_write(tmp, data, 0o600)
    try:
        os.link(tmp, path)  # never replaces a key another process created meanwhile
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


class PostgresStore:
    """State in the PostgreSQL database ``url``; live files under ``home``; private data sealed
    with the key in ``key_file``. Connects on first use."""

    def __init__(self, url: str, home: Path, key_file: Path) -> None:
        self.home = Path(home)
        self.key_file = Path(key_file)
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError:
            raise StoreError("the PostgreSQL URL of the store is not valid") from None
        params.setdefault("connect_timeout", 10)
        self._conninfo = make_conninfo("", **params)
        host = str(params.get("host") or "localhost")
        self.server = f"{host}:{params.get('port') or 5432}"
        self.database = str(params.get("dbname") or params.get("user") or "")
        self._password = str(params.get("password") or "")
        self._aead = AESGCM(read_key_file(self.key_file))
        self._conn: psycopg.Connection[Any] | None = None
        self._pid = os.getpid()
        self._mutex = threading.RLock()

    # -- the database -----------------------------------------------------------------------

    def _fail(self, doing: str, exc: psycopg.Error) -> StoreError:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        reason = lines[0] if lines else type(exc).__name__
        reason = reason.rpartition(" failed: ")[2].removeprefix("FATAL:").strip()
        if self._password:
            reason = reason.replace(self._password, "***")
        return StoreError(f"{doing} PostgreSQL at {self.server}: {reason}")

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is not None and self._pid == os.getpid() and not self._conn.closed:
            return self._conn
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True, prepare_threshold=None)
        except psycopg.Error as exc:
            raise self._fail("cannot connect to", exc) from None
        try:
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS certsmith_schema_version (version integer NOT NULL)"
                )
                row = conn.execute("SELECT max(version) FROM certsmith_schema_version").fetchone()
                current = int(row[0]) if row and row[0] is not None else 0
                if current > len(MIGRATIONS):
                    raise StoreError(
                        f"the store database {self.database} at {self.server} has schema "
                        f"version {current}, newer than this certsmith knows "
                        f"({len(MIGRATIONS)}): upgrade certsmith"
                    )
                for statements in MIGRATIONS[current:]:
                    for sql in statements:
                        conn.execute(sql.encode())
                if current < len(MIGRATIONS):
                    conn.execute("DELETE FROM certsmith_schema_version")
                    conn.execute(
                        "INSERT INTO certsmith_schema_version VALUES (%s)", (len(MIGRATIONS),)
                    )
                self._check_key(conn)
        except psycopg.Error as exc:
            raise self._fail("cannot set up the store in", exc) from None

    def _check_key(self, conn: psycopg.Connection[Any]) -> None:
        row = conn.execute("SELECT data FROM certsmith_meta WHERE name = 'keycheck'").fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO certsmith_meta VALUES ('keycheck', %s)",
                (self._seal(b"keycheck", _KEYCHECK),),
            )
            return
        try:
            self._open(b"keycheck", bytes(row[0]))
        except StoreError:
            raise StoreError(
                f"the store key file {self.key_file} is not the key the database "
                f"{self.database} at {self.server} was written with: copy it from another node"
            ) from None

    @contextlib.contextmanager
    def _tx(self, doing: str) -> Iterator[psycopg.Connection[Any]]:
        """One transaction (committed when the block ends, rolled back if it raises); a
        database error becomes one StoreError line."""
        with self._mutex:
            conn = self._connect()
            try:
                with conn.transaction():
                    yield conn
            except psycopg.Error as exc:
                raise self._fail(f"cannot {doing} in", exc) from None

    def close(self) -> None:
        with self._mutex:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # -- encryption -------------------------------------------------------------------------

    def _seal(self, aad: bytes, data: bytes) -> bytes:
        nonce = os.urandom(12)
        return _SEALED + nonce + self._aead.encrypt(nonce, data, aad)

    def _open(self, aad: bytes, blob: bytes) -> bytes:
        if blob[:1] != _SEALED or len(blob) < 29:
            raise StoreError(f"{aad.decode(errors='replace')} in the store is not sealed data")
        try:
            return self._aead.decrypt(blob[1:13], blob[13:], aad)
        except InvalidTag:
            raise StoreError(
                f"cannot decrypt {aad.decode(errors='replace')} with the store key file "
                f"{self.key_file}: wrong key, or the row was tampered with"
            ) from None

    # -- fencing ----------------------------------------------------------------------------

    def _fence(self, conn: psycopg.Connection[Any], fence: Lease | None) -> None:
        """Refuse the transaction's writes unless ``fence`` is the newest, unexpired lease on
        its name; the row stays locked (FOR SHARE) until the transaction ends."""
        if fence is None:
            return
        if not isinstance(fence, PostgresLease) or fence.store.where_db != self.where_db:
            raise StaleLeaseError(f"lease {fence.name} belongs to another store")
        row = conn.execute(
            "SELECT token, expires > now() FROM certsmith_leases WHERE name = %s FOR SHARE",
            (fence.name,),
        ).fetchone()
        if fence.released or row is None or int(row[0]) != fence.token or not row[1]:
            newer = f"superseded by token {row[0]}" if row and row[0] != fence.token else "lost"
            raise StaleLeaseError(
                f"lease {fence.name} (token {fence.token}) was {newer}: another certsmith "
                "process took over or the lease expired; nothing was written"
            )

    @property
    def where_db(self) -> str:
        return f"{self.server}/{self.database}"

    # -- local side -------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the local directory (``live`` 0755, ``archive`` 0700) and the schema."""
        try:
            self.home.mkdir(parents=True, exist_ok=True, mode=0o755)
            (self.home / "archive").mkdir(exist_ok=True, mode=0o700)
            (self.home / "live").mkdir(exist_ok=True, mode=0o755)
        except OSError as exc:
            raise StoreError(f"cannot create state directory {self.home}: {exc.strerror}") from exc
        with self._mutex:
            self._connect()

    def live_path(self, name: str) -> Path:
        return self.home / "live" / name

    # -- keyed bytes ------------------------------------------------------------------------

    def where(self, key: str) -> str:
        key_parts(key)
        return f"{key} in the database {self.database} at {self.server}"

    def get(self, key: str) -> bytes | None:
        key_parts(key)
        with self._tx("read") as conn:
            row = conn.execute(
                """SELECT data, private, (SELECT string_agg(a.data, ''::bytea ORDER BY a.seq)
                   FROM certsmith_appends a WHERE a.key = kv.key)
                   FROM certsmith_kv kv WHERE key = %s""",
                (key,),
            ).fetchone()
        if row is None:
            return None
        data = bytes(row[0])
        if row[1]:
            data = self._open(f"kv:{key}".encode(), data)
        return data + (bytes(row[2]) if row[2] is not None else b"")

    def exists(self, key: str) -> bool:
        key_parts(key)
        with self._tx("read") as conn:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM certsmith_kv WHERE key = %s OR starts_with(key, %s))",
                (key, key + "/"),
            ).fetchone()
        return bool(row and row[0])

    def put(
        self, key: str, data: bytes, *, private: bool = False, fence: Lease | None = None
    ) -> None:
        key_parts(key)
        stored = self._seal(f"kv:{key}".encode(), data) if private else data
        with self._tx("write") as conn:
            self._fence(conn, fence)
            conn.execute(
                """INSERT INTO certsmith_kv (key, data, private) VALUES (%s, %s, %s)
                   ON CONFLICT (key)
                   DO UPDATE SET data = excluded.data, private = excluded.private""",
                (key, stored, private),
            )
            conn.execute("DELETE FROM certsmith_appends WHERE key = %s", (key,))

    def append(self, key: str, data: bytes) -> None:
        """One INSERT per record: concurrent appenders' records never interleave."""
        key_parts(key)
        with self._tx("write") as conn:
            conn.execute(
                "INSERT INTO certsmith_kv (key, data, private) VALUES (%s, '', false)"
                " ON CONFLICT (key) DO NOTHING",
                (key,),
            )
            row = conn.execute("SELECT private FROM certsmith_kv WHERE key = %s", (key,)).fetchone()
            if row is not None and row[0]:
                raise StoreError(f"cannot append to {key}: it holds private data")
            conn.execute("INSERT INTO certsmith_appends (key, data) VALUES (%s, %s)", (key, data))

    def list(self, prefix: str) -> list[str]:
        """The keys directly under ``prefix``, and the ``prefix/child`` of deeper ones (as a
        directory lists its subdirectories), sorted."""
        key_parts(prefix)
        start = prefix + "/"
        with self._tx("read") as conn:
            rows = conn.execute(
                "SELECT DISTINCT split_part(substr(key, %s), '/', 1) FROM certsmith_kv"
                " WHERE starts_with(key, %s)",
                (len(start) + 1, start),
            ).fetchall()
        return sorted(f"{start}{r[0]}" for r in rows if r[0] and not r[0].startswith("."))

    def delete(self, key: str, *, fence: Lease | None = None) -> None:
        """Delete ``key`` and every key under it (absent is no error)."""
        key_parts(key)
        with self._tx("delete") as conn:
            self._fence(conn, fence)
            conn.execute(
                "DELETE FROM certsmith_kv WHERE key = %s OR starts_with(key, %s)",
                (key, key + "/"),
            )

    # -- leases -----------------------------------------------------------------------------

    def lock(
        self, name: str, *, ttl: float | None = None, wait: float | None = None
    ) -> PostgresLease:
        """Take lease ``name`` for ``ttl`` seconds (``DEFAULT_TTL``): free once its holder
        released it or let it expire. ``wait=None`` polls until it is free, ``wait=0`` fails
        at once (LockedError)."""
        ttl = DEFAULT_TTL if ttl is None else float(ttl)
        holder = f"{socket.gethostname()}:{os.getpid()}"
        deadline = None if wait is None else time.monotonic() + wait
        delay = 0.01
        while True:
            with self._tx("take a lease") as conn:
                row = conn.execute(_TAKE, {"name": name, "holder": holder, "ttl": ttl}).fetchone()
                if row is None:
                    held = conn.execute(
                        "SELECT holder FROM certsmith_leases WHERE name = %s", (name,)
                    ).fetchone()
            if row is not None:
                return PostgresLease(self, name, int(row[0]), ttl)
            if deadline is not None and time.monotonic() >= deadline:
                by = f" (held by {held[0]})" if held else ""
                raise LockedError(
                    f"{name} is locked by another certsmith process{by}; try again later"
                )
            pause = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
            delay = min(delay * 2, 0.5)

    # -- certificate versions ---------------------------------------------------------------

    def versions(self, name: str) -> Iterator[int]:
        with self._tx("read") as conn:
            rows = conn.execute(
                "SELECT version FROM certsmith_versions WHERE name = %s ORDER BY version", (name,)
            ).fetchall()
        return iter([int(r[0]) for r in rows])

    def live_version(self, name: str) -> int | None:
        with self._tx("read") as conn:
            row = conn.execute(
                "SELECT version FROM certsmith_live WHERE name = %s", (name,)
            ).fetchone()
        return int(row[0]) if row else None

    def publish(
        self,
        name: str,
        files: Mapping[str, bytes],
        private: frozenset[str],
        *,
        fence: Lease | None = None,
    ) -> int:
        """Store version n+1 of ``name`` and make it live in one transaction, then write it
        locally and switch ``live/name`` to it with one rename."""
        key_parts(name)
        self.ensure()
        staging: Path | None = None
        try:
            with self._tx("publish") as conn:
                self._fence(conn, fence)
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (name,))
                row = conn.execute(
                    "SELECT coalesce(max(version), 0) + 1 FROM certsmith_versions WHERE name = %s",
                    (name,),
                ).fetchone()
                version = int(row[0]) if row else 1
                conn.execute(
                    "INSERT INTO certsmith_versions (name, version) VALUES (%s, %s)",
                    (name, version),
                )
                for filename, data in files.items():
                    secret = filename in private
                    aad = f"file:{name}/{version}/{filename}".encode()
                    conn.execute(
                        "INSERT INTO certsmith_version_files VALUES (%s, %s, %s, %s, %s)",
                        (
                            name,
                            version,
                            filename,
                            self._seal(aad, data) if secret else data,
                            secret,
                        ),
                    )
                self._set_live(conn, name, version)
                staging = self._stage(name, version, files, private)
        except BaseException:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            raise
        self._switch(name, version, staging)
        return version

    def relink(self, name: str, version: int, *, fence: Lease | None = None) -> None:
        """Make the stored ``version`` live again (repair) and materialize it here."""
        key_parts(name)
        self.ensure()
        staging: Path | None = None
        try:
            with self._tx("relink") as conn:
                self._fence(conn, fence)
                known = conn.execute(
                    "SELECT 1 FROM certsmith_versions WHERE name = %s AND version = %s",
                    (name, version),
                ).fetchone()
                if known is None:
                    raise StoreError(f"certificate {name} has no version {version} to relink")
                self._set_live(conn, name, version)
                if not (self.home / "archive" / name / str(version)).is_dir():
                    files, secret = self._files(conn, name, version)
                    staging = self._stage(name, version, files, secret)
        except BaseException:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            raise
        self._switch(name, version, staging)

    def materialize(self, name: str) -> bool:
        """Write the database's live version of ``name`` into this node's ``live/name`` unless
        it already points there (another node published or relinked it)."""
        key_parts(name)
        self.ensure()
        staging: Path | None = None
        try:
            with self._tx("materialize") as conn:
                row = conn.execute(
                    "SELECT version FROM certsmith_live WHERE name = %s", (name,)
                ).fetchone()
                if row is None:
                    return False
                version = int(row[0])
                final = self.home / "archive" / name / str(version)
                if final.is_dir() and self._points_at(name, version):
                    return False
                if not final.is_dir():
                    files, secret = self._files(conn, name, version)
                    staging = self._stage(name, version, files, secret)
        except BaseException:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            raise
        self._switch(name, version, staging)
        return True

    def _points_at(self, name: str, version: int) -> bool:
        try:
            return os.readlink(self.live_path(name)) == f"../archive/{name}/{version}"
        except OSError:
            return False

    def _files(
        self, conn: psycopg.Connection[Any], name: str, version: int
    ) -> tuple[dict[str, bytes], frozenset[str]]:
        """A stored version's files, private ones unsealed, and which are private."""
        rows = conn.execute(
            "SELECT file, data, private FROM certsmith_version_files"
            " WHERE name = %s AND version = %s",
            (name, version),
        ).fetchall()
        files: dict[str, bytes] = {}
        secret: set[str] = set()
        for filename, data, is_private in rows:
            blob = bytes(data)
            if is_private:
                blob = self._open(f"file:{name}/{version}/{filename}".encode(), blob)
                secret.add(filename)
            files[filename] = blob
        return files, frozenset(secret)

    def _set_live(self, conn: psycopg.Connection[Any], name: str, version: int) -> None:
        conn.execute(
            """INSERT INTO certsmith_live (name, version) VALUES (%s, %s)
               ON CONFLICT (name) DO UPDATE SET version = excluded.version""",
            (name, version),
        )

    def _stage(
        self, name: str, version: int, files: Mapping[str, bytes], private: frozenset[str]
    ) -> Path:
        """Write a version's files into a staging directory next to where it goes."""
        archive = self.home / "archive" / name
        try:
            archive.mkdir(mode=0o700, parents=True, exist_ok=True)
            staging = archive / f".{version}.{os.getpid()}.tmp"
            shutil.rmtree(staging, ignore_errors=True)
            # 0755: web servers started as root drop privileges only after reading the files;
            # the key itself is 0600.
            staging.mkdir(mode=0o755)
            os.chmod(staging, 0o755)
            for filename, data in files.items():
                atomic_write(staging / filename, data, 0o600 if filename in private else 0o644)
        except OSError as exc:
            raise StoreError(f"cannot write certificate {name}: {exc.strerror or exc}") from exc
        return staging

    def _switch(self, name: str, version: int, staging: Path | None) -> None:
        """Move a staged version into place (if any) and point ``live/name`` at it."""
        archive = self.home / "archive" / name
        final = archive / str(version)
        live = self.live_path(name)
        try:
            if staging is not None:
                if final.exists():
                    shutil.rmtree(final)
                os.rename(staging, final)
                fsync_dir(archive)
            tmp_link = live.with_name(f".{name}.{os.getpid()}.tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp_link.unlink()
            os.symlink(f"../archive/{name}/{version}", tmp_link)
            os.replace(tmp_link, live)
            fsync_dir(live.parent)
        except OSError as exc:
            raise StoreError(f"cannot switch {live}: {exc.strerror or exc}") from exc


class PostgresLease:
    """A row of ``certsmith_leases`` holding our token until ``expires`` (database clock)."""

    def __init__(self, store: PostgresStore, name: str, token: int, ttl: float) -> None:
        self.store = store
        self.name = name
        self.token = token
        self.ttl = ttl
        self.released = False

    def renew(self, ttl: float | None = None) -> None:
        """Extend the lease by ``ttl`` (the one it was taken with) from now; StaleLeaseError
        if it was released, expired or taken over."""
        if ttl is not None:
            self.ttl = float(ttl)
        if not self.released:
            with self.store._tx("renew a lease") as conn:
                cur = conn.execute(
                    """UPDATE certsmith_leases SET expires = now() + make_interval(secs => %s)
                       WHERE name = %s AND token = %s AND expires > now()""",
                    (self.ttl, self.name, self.token),
                )
            if cur.rowcount == 1:
                return
        raise StaleLeaseError(
            f"lease {self.name} (token {self.token}) was released, expired or taken over"
        )

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        with self.store._tx("release a lease") as conn:
            conn.execute(
                """UPDATE certsmith_leases SET expires = '-infinity'
                   WHERE name = %s AND token = %s AND expires > now()""",
                (self.name, self.token),
            )

    def __enter__(self) -> PostgresLease:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc and exc[0] is not None:
            # Already failing: the lease expires by itself if the database is gone too.
            with contextlib.suppress(StoreError):
                self.release()
        else:
            self.release()
