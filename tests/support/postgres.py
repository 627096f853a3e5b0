"""A throw-away PostgreSQL cluster for the PostgreSQL store's tests.

``Postgres()``: ``initdb`` into a temporary directory (Debian's server binaries, the newest
version under /usr/lib/postgresql), then ``postgres`` on 127.0.0.1 and a free port, its Unix
socket in the same directory, under tests/support/supervise.py so it dies with the test run.
When we are root it runs as the ``postgres`` system user (PostgreSQL refuses root). The
superuser ``certsmith`` logs in over TCP with a password (scram-sha-256), as a real node would.

``database(name)`` creates a database once and returns its URL; ``node_store(where)`` (for
``tests/test_store.py``'s ``make_store``) is a store on the running cluster whose database is
named after ``where``: two calls with the same ``where`` are two nodes sharing one database
(each with its own local home, both with the same key file, as copied to every node).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from types import TracebackType

import psycopg

from certsmith.base.store.pg import PostgresStore
from tests.support.dns.common import as_root, chown, start_supervised, wait_supervised
from tests.support.net import LOOPBACK, free_port, stop_process, wait_until

USER = "certsmith"
OS_USER = "postgres"


def bin_dir() -> Path:
    """Debian's server binaries: /usr/lib/postgresql/<newest version>/bin."""
    root = Path("/usr/lib/postgresql")
    versions = (
        sorted(
            (p for p in root.iterdir() if p.name.isdigit() and (p / "bin" / "postgres").exists()),
            key=lambda p: int(p.name),
        )
        if root.is_dir()
        else []
    )
    if not versions:
        raise RuntimeError(
            "no PostgreSQL server under /usr/lib/postgresql: scripts/deps/postgres.sh"
        )
    return versions[-1] / "bin"


class Postgres:
    def __init__(self) -> None:
        self.bin = bin_dir()
        self.port = free_port()
        self.host = LOOPBACK
        self.password = secrets.token_urlsafe(18)
        self.workdir = Path(tempfile.mkdtemp(prefix="certsmith-pg-"))
        self.workdir.chmod(0o755)  # postgres (the user) must reach data/ and run/
        self.data = self.workdir / "data"
        self.run = self.workdir / "run"
        self.control = self.workdir / "supervise"
        self.log_path = self.workdir / "postgres.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._created: set[str] = set()
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- lifecycle
    def _as_user(self) -> list[str]:
        if not as_root():
            return []
        return ["setpriv", f"--reuid={OS_USER}", f"--regid={OS_USER}", "--init-groups", "--"]

    def _initdb(self) -> None:
        for path in (self.data, self.run):
            path.mkdir(mode=0o700)
            chown(path, OS_USER)
        pwfile = self.run / "pwfile"
        pwfile.touch(mode=0o600)
        pwfile.write_text(self.password + "\n")
        chown(pwfile, OS_USER)
        try:
            proc = subprocess.run(
                [
                    *self._as_user(),
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    USER,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                cwd=self.workdir,
            )
        finally:
            pwfile.unlink()
        if proc.returncode != 0:
            raise RuntimeError(f"initdb exited {proc.returncode}: {proc.stdout}{proc.stderr}")

    def start(self) -> Postgres:
        """initdb, start postgres; returns when a password login succeeds."""
        self._initdb()
        cmd = [
            *self._as_user(),
            str(self.bin / "postgres"),
            "-D",
            str(self.data),
            "-k",
            str(self.run),
            "-h",
            self.host,
            "-p",
            str(self.port),
            # a throw-away cluster: no durability, little memory
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "shared_buffers=16MB",
            "-c",
            "max_connections=200",
        ]
        try:
            self._proc = start_supervised(cmd, self.control, self.log_path, self.workdir)
            wait_supervised(
                self._ready,
                what=f"postgres ({self.host}:{self.port})",
                control=self.control,
                proc=self._proc,
                log=self.log_text,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        try:
            with psycopg.connect(self.url("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """A fast shutdown (SIGINT: clients still connected are disconnected), then the
        supervisor."""
        state = (self.control / "state").read_text().split() if self._proc else []
        if state[:1] == ["running"]:
            try:
                os.kill(int(state[2]), signal.SIGINT)
            except (OSError, ValueError, IndexError):
                pass
            else:

                def stopped() -> bool:
                    return (self.control / "state").read_text().split()[:1] == ["stopped"]

                with contextlib.suppress(TimeoutError):
                    wait_until(stopped, what="postgres shutdown", timeout=30)
        stop_process(self._proc)
        self._proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Postgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- databases
    def url(self, dbname: str, *, password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql://{USER}:{secret}@{self.host}:{self.port}/{dbname}"

    def database(self, name: str) -> str:
        """Create database ``name`` (once) and return its URL."""
        with self._lock:
            if name not in self._created:
                with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{name}"'.encode())
                self._created.add(name)
        return self.url(name)

    def dump(self, dbname: str) -> bytes:
        """``pg_dump`` of ``dbname`` (the password in the environment, never the command line)."""
        proc = subprocess.run(
            [str(self.bin / "pg_dump"), "-h", self.host, "-p", str(self.port), "-U", USER, dbname],
            capture_output=True,
            timeout=120,
            check=False,
            env={**os.environ, "PGPASSWORD": self.password},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pg_dump exited {proc.returncode}: {proc.stderr.decode()}")
        return proc.stdout


# -- the cluster make_store uses ----------------------------------------------------------------
# Set by the session fixture ``postgres`` (tests/conftest.py); make_store has no fixture access.
RUNNING: list[Postgres] = []
_nodes = itertools.count(1)


def database_name(where: Path) -> str:
    return "cs_" + hashlib.sha256(str(where).encode()).hexdigest()[:20]


def node_store(where: Path) -> PostgresStore:
    """A new node on the database named after ``where`` (created on first use)."""
    if not RUNNING:
        raise RuntimeError("no PostgreSQL cluster: the test must use the 'postgres' fixture")
    cluster = RUNNING[-1]
    url = cluster.database(database_name(where))
    home = where.parent / f"{where.name}.node{next(_nodes)}"
    return PostgresStore(url, home, where.parent / f"{where.name}.key")
