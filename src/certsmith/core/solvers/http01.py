"""HTTP-01 (RFC 8555 section 8.3): a webroot directory, or our own listener (standalone)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from certsmith.base.policy import ACME_CHALLENGE_PREFIX as PREFIX
from certsmith.base.policy import ACME_CHALLENGE_SUBDIR
from certsmith.base.solverspec import ServerSpec, StandaloneSpec, WebrootSpec
from certsmith.core.solvers.base import OneAtATime
from certsmith.errors import ChallengeError

_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")


def _check_token(token: str) -> None:
    if not _TOKEN.match(token):
        raise ChallengeError(f"the CA sent an unsafe challenge token {token!r}")


class WebrootSolver(OneAtATime):
    """Writes ``<webroot>/.well-known/acme-challenge/<token>`` for a running web server."""

    challenge_type = "http-01"

    def __init__(self, webroot: str) -> None:
        self.root = Path(webroot)
        self.dir = self.root / ACME_CHALLENGE_SUBDIR
        self._created: list[Path] = []
        self._lock = threading.Lock()

    def prepare(self) -> None:
        if not self.root.is_dir():
            raise ChallengeError(f"webroot {self.root} does not exist or is not a directory")
        try:
            with self._lock:
                for d in (self.dir.parent, self.dir):
                    if not d.exists():
                        d.mkdir(mode=0o755)
                        os.chmod(d, 0o755)
                        self._created.append(d)
            probe = self.dir / f".certsmith-probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            self._remove_created()
            raise ChallengeError(f"cannot write to webroot {self.dir}: {exc.strerror}") from exc

    def present(self, domain: str, token: str, key_authorization: str) -> None:
        _check_token(token)
        path = self.dir / token
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o644)
                fh.write(key_authorization.encode())
        except OSError as exc:
            raise ChallengeError(f"cannot write challenge file {path}: {exc.strerror}") from exc

    def cleanup(self, domain: str, token: str) -> None:
        with contextlib.suppress(OSError):
            (self.dir / token).unlink()

    def close(self) -> None:
        self._remove_created()

    def _remove_created(self) -> None:
        with self._lock:
            for d in reversed(self._created):
                with contextlib.suppress(OSError):
                    d.rmdir()  # only if empty: another client may share it
            self._created.clear()


class _Handler(BaseHTTPRequestHandler):
    server: _ChallengeServer
    server_version = "certsmith"
    sys_version = ""

    def do_GET(self) -> None:
        body = None
        if self.path.startswith(PREFIX):
            body = self.server.tokens.get(self.path[len(PREFIX) :])
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


class _ChallengeServer(ThreadingHTTPServer):
    daemon_threads = True
    tokens: dict[str, str]


class _ChallengeServer6(_ChallengeServer):
    address_family = socket.AF_INET6


class StandaloneSolver(OneAtATime):
    """Answers HTTP-01 on our own listener (port 80 by default) while the order runs."""

    challenge_type = "http-01"

    def __init__(self, port: int = 80, address: str = "") -> None:
        self.port = port
        self.address = address
        self.tokens: dict[str, str] = {}
        self._servers: list[_ChallengeServer] = []
        self._threads: list[threading.Thread] = []

    def prepare(self) -> None:
        if self._servers:
            return
        try:
            if self.address:
                cls = _ChallengeServer6 if ":" in self.address else _ChallengeServer
                self._servers.append(cls((self.address, self.port), _Handler))
            else:
                self._servers.append(_bind_any(self.port))
        except OSError as exc:
            self.close()
            if exc.errno == errno.EADDRINUSE:
                owner = port_owner(self.port)
                who = f" by {owner}" if owner else ""
                raise ChallengeError(
                    f"port {self.port} is already in use{who}; stop it or use --webroot"
                ) from exc
            if exc.errno == errno.EACCES:
                raise ChallengeError(
                    f"no permission to listen on port {self.port}; run as root or use --webroot"
                ) from exc
            raise ChallengeError(f"cannot listen on port {self.port}: {exc.strerror}") from exc
        for srv in self._servers:
            srv.tokens = self.tokens
            t = threading.Thread(
                target=srv.serve_forever,
                kwargs={"poll_interval": 0.05},
                daemon=True,
                name=f"http01-{self.port}",
            )
            t.start()
            self._threads.append(t)

    def present(self, domain: str, token: str, key_authorization: str) -> None:
        _check_token(token)
        self.tokens[token] = key_authorization

    def cleanup(self, domain: str, token: str) -> None:
        self.tokens.pop(token, None)

    def close(self) -> None:
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        self._servers.clear()
        self._threads.clear()


def _bind_any(port: int) -> _ChallengeServer:
    """Listen on every address: dual-stack IPv6 where available, else IPv4."""
    try:
        return _ChallengeServer6(("::", port), _Handler)
    except OSError as exc:
        if exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
            raise
    return _ChallengeServer(("0.0.0.0", port), _Handler)


def port_owner(port: int) -> str | None:
    """Name the process listening on TCP ``port`` (via ``ss``), if we can see it."""
    ss = shutil.which("ss")
    if not ss:
        return None
    try:
        out = subprocess.run(
            [ss, "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'users:\(\("([^"]+)",pid=(\d+)', out)
    if match:
        return f"{match.group(1)} (pid {match.group(2)})"
    return "another process" if out.strip() else None


def from_webroot_spec(spec: WebrootSpec | ServerSpec) -> WebrootSolver:
    """``webroot``, and ``server``: the web server's certsmith include maps the challenge path
    to certsmith's directory (installed by 'get --nginx|--apache|--lighttpd'); files are
    written as for any webroot."""
    return WebrootSolver(spec.webroot)


def from_standalone_spec(spec: StandaloneSpec) -> StandaloneSolver:
    return StandaloneSolver(spec.http_port, spec.address)
