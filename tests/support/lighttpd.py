"""A real lighttpd (Debian's package) serving a document root on 127.0.0.1.

Plain HTTP on ``port`` (e.g. Pebble's ``http_port`` so it answers http-01 from a webroot, as in
seed 000) and, optionally, HTTPS on ``tls_port`` from ``ssl.pemfile`` — either one combined PEM
(certificate chain + key, what lighttpd < 1.4.53 needs) or ``pemfile`` + ``privkey``.
TLS needs the ``lighttpd-mod-openssl`` package (scripts/deps/lighttpd-tls.sh).

Runs in the foreground (``lighttpd -D``) as Debian runs it: started as root, it drops to
``www-data`` (``server.username``/``server.groupname``, as Debian's lighttpd.conf), so every file
it serves or re-reads on a graceful restart must be reachable by www-data, as on a real machine:
the work directory (logs, uploads) is its own world-traversable temporary directory, and a
document root or certificate under pytest's private ``tmp_path`` is refused with a clear error
(use the ``served_path`` fixture, the tests' /var/www).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from tests.support.net import (
    LOOPBACK,
    die_with_parent,
    free_port,
    port_open,
    stop_process,
    wait_until,
)

LIGHTTPD_BIN = shutil.which("lighttpd") or "/usr/sbin/lighttpd"
USER = "www-data"  # Debian's server.username / server.groupname


def reachable_by_server(path: Path) -> bool:
    """Whether www-data can reach ``path`` (every parent traversable, the path readable)."""
    from certsmith.services.servers.lighttpd import readable_by

    return readable_by(str(path), USER)


def _quote(value: str | Path) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Lighttpd:
    def __init__(
        self,
        docroot: Path | str,
        *,
        port: int | None = None,
        tls_port: int | None = None,
        pemfile: Path | str | None = None,
        privkey: Path | str | None = None,
        workdir: Path | str | None = None,
    ) -> None:
        """``tls_port``/``pemfile`` enable HTTPS (``tls_port`` defaults to a free port when
        ``pemfile`` is given). ``privkey`` is only for a separate key file. ``workdir`` (default:
        a temporary directory of its own) must be reachable by www-data."""
        self._own_tmp = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="lighttpd-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        for sub in ("log", "uploads"):  # written by the server after the drop, as on Debian
            (self.workdir / sub).mkdir(exist_ok=True)
            shutil.chown(self.workdir / sub, USER, USER)
        self.docroot = Path(docroot)
        self.port = port or free_port()
        self.pemfile = Path(pemfile) if pemfile else None
        self.privkey = Path(privkey) if privkey else None
        self.tls_port = tls_port or (free_port() if self.pemfile else None)
        self.config_path = self.workdir / "lighttpd.conf"
        self.error_log = self.workdir / "log" / "error.log"
        self.access_log = self.workdir / "log" / "access.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.write_config()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def tls_url(self) -> str:
        if self.tls_port is None:
            raise ValueError("lighttpd started without TLS")
        return f"https://{LOOPBACK}:{self.tls_port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def config_text(self) -> str:
        modules = ['"mod_accesslog"']
        if self.pemfile:
            modules.append('"mod_openssl"')
        lines = [
            f"server.modules = ({', '.join(modules)})",
            f"server.document-root = {_quote(self.docroot)}",
            f"server.bind = {_quote(LOOPBACK)}",
            f"server.port = {self.port}",
            f"server.errorlog = {_quote(self.error_log)}",
            f"accesslog.filename = {_quote(self.access_log)}",
            f"server.upload-dirs = ({_quote(self.workdir / 'uploads')})",
            f"server.username = {_quote(USER)}",
            f"server.groupname = {_quote(USER)}",
            'index-file.names = ("index.html")',
            'mimetype.assign = (".html" => "text/html", "" => "application/octet-stream")',
            # Challenge files are plain tokens: serve dot-directories such as .well-known.
            'server.follow-symlink = "enable"',
        ]
        if self.pemfile and self.tls_port:
            lines.append(f'$SERVER["socket"] == "{LOOPBACK}:{self.tls_port}" {{')
            lines.append('  ssl.engine = "enable"')
            lines.append(f"  ssl.pemfile = {_quote(self.pemfile)}")
            if self.privkey:
                lines.append(f"  ssl.privkey = {_quote(self.privkey)}")
            lines.append("}")
        return "\n".join(lines) + "\n"

    def write_config(self) -> None:
        self.config_path.write_text(self.config_text())

    def check_config(self) -> subprocess.CompletedProcess[str]:
        """``lighttpd -tt`` (loads modules too); returns the completed process."""
        return subprocess.run(
            [LIGHTTPD_BIN, "-tt", "-f", str(self.config_path)],
            capture_output=True,
            text=True,
            check=False,
        )

    def log_text(self) -> str:
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""

    def start(self) -> Lighttpd:
        if self.running:
            return self
        self.docroot.mkdir(parents=True, exist_ok=True)
        # (a certificate file is read as root at start-up; it must be readable by www-data
        # too only for a reload, as on a real machine)
        for path in (self.workdir, self.docroot):
            if not reachable_by_server(path):
                raise ValueError(
                    f"lighttpd runs as {USER}, who cannot reach {path}: serve from "
                    "a world-traversable directory (the served_path fixture)"
                )
        self.write_config()
        self._proc = subprocess.Popen(
            [LIGHTTPD_BIN, "-D", "-f", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=open(self.workdir / "stdout.log", "ab"),  # noqa: SIM115 - child owns it
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            preexec_fn=die_with_parent,
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        def ready() -> bool:
            if not port_open(self.port):
                return False
            return self.tls_port is None or port_open(self.tls_port)

        wait_until(ready, what="lighttpd", proc=self._proc, log=self._logs)

    def _logs(self) -> str:
        out = self.workdir / "stdout.log"
        return self.log_text() + (out.read_text(errors="replace") if out.exists() else "")

    def stop(self) -> None:
        stop_process(self._proc)
        self._proc = None

    def restart(self) -> Lighttpd:
        """Stop and start again: new configuration, new certificate files read."""
        self.stop()
        return self.start()

    def reload(self) -> Lighttpd:
        """Graceful restart (SIGUSR1, as ``systemctl reload lighttpd`` does): lighttpd re-reads
        its configuration and certificate files. Returns once the new server answers with the
        certificate now in ``pemfile`` (TLS mode) or accepts connections (plain mode)."""
        if not self.running or self._proc is None:
            return self.start()
        self.write_config()
        expected = self._expected_cert_der()
        os.kill(self._proc.pid, signal.SIGUSR1)

        def ready() -> bool:
            if not port_open(self.port):
                return False
            if expected is None:
                return True
            try:
                return self.served_cert_der() == expected
            except OSError:
                return False

        wait_until(ready, what="lighttpd reload", proc=self._proc, log=self._logs)
        return self

    def _expected_cert_der(self) -> bytes | None:
        if not self.pemfile or not self.tls_port:
            return None
        text = self.pemfile.read_text()
        start = text.find("-----BEGIN CERTIFICATE-----")
        end = text.find("-----END CERTIFICATE-----", start)
        if start < 0 or end < 0:
            return None
        return ssl.PEM_cert_to_DER_cert(text[start : end + len("-----END CERTIFICATE-----")])

    def served_cert_der(self, server_name: str = "localhost") -> bytes:
        """The leaf certificate lighttpd presents on ``tls_port`` (not verified)."""
        if self.tls_port is None:
            raise ValueError("lighttpd started without TLS")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with (
            socket.create_connection((LOOPBACK, self.tls_port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        if der is None:
            raise OSError("no certificate presented")
        return der

    def served_cert_pem(self, server_name: str = "localhost") -> str:
        return ssl.DER_cert_to_PEM_cert(self.served_cert_der(server_name))

    def get(self, path: str) -> tuple[int, bytes]:
        """Plain-HTTP GET on this server: (status, body)."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def close(self) -> None:
        self.stop()
        if self._own_tmp:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Lighttpd:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
