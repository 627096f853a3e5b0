"""A real PowerDNS authoritative server with the SQLite backend on ``127.53.N.3:53``, and its
HTTP API on ``127.53.N.3:<free port>``, configured as Debian's pdns-server and
pdns-backend-sqlite3 packages are (pdns.conf with ``include-dir``, the package's gsqlite3.conf
example and schema), with only addresses, ports and paths changed, plus the API settings.
Run as Debian's service runs it (``--setuid=pdns --setgid=pdns`` when root, no daemon, no
guardian, no syslog). ``PDNS_ZONE`` (tests/support/dns/zones.py) is loaded with ``pdnsutil``
before the server starts; the API (``api_url``, ``api_key``, server id ``localhost``) changes it.

Layout of the work directory (removed by ``close()``)::

    etc/pdns.conf, etc/pdns.d/        like /etc/powerdns
    lib/pdns.sqlite3                  like /var/lib/powerdns (owned by pdns)
    run/                              the control socket (--socket-dir)
    pdns.log                          the server's output
    supervise/                        its supervisor's state (tests/support/supervise.py)
"""

from __future__ import annotations

import json
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from types import TracebackType

from tests.support.dns.common import (
    DNS_PORT,
    PDNS_HOST,
    LoopbackAlias,
    answers,
    as_root,
    chown,
    net_address,
    start_supervised,
    txt,
    wait_supervised,
    worker_net,
    zone_snapshot,
)
from tests.support.dns.zones import PDNS_ZONE, pdns_zone_text
from tests.support.net import free_port, stop_process

PDNS_BIN = "pdns_server"
PDNSUTIL_BIN = "pdnsutil"
SCHEMA = Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql")
SERVER_ID = "localhost"


class PowerDns:
    """PowerDNS for this worker's ``127.53.N.0`` (``net=N`` to choose it).

    Attributes: ``address`` (port ``DNS_PORT`` 53), ``zone`` (``PDNS_ZONE``), ``api_url``
    (``http://127.53.N.3:<port>``, what lexicon's ``pdns_server`` takes), ``api_key``,
    ``server_id`` (``localhost``), ``workdir``.
    """

    def __init__(self, *, net: int | None = None, workdir: Path | str | None = None) -> None:
        self.net = worker_net() if net is None else net
        self.address = net_address(self.net, PDNS_HOST)
        self.port = DNS_PORT
        self.zone = PDNS_ZONE
        self.server_id = SERVER_ID
        self.api_port = free_port()
        self.api_key = secrets.token_urlsafe(24)
        self._own_tmp = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="certsmith-pdns-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)  # pdns_server runs as pdns: it must reach lib/ and run/
        self.etc = self.workdir / "etc"
        self.lib = self.workdir / "lib"
        self.run = self.workdir / "run"
        self.database = self.lib / "pdns.sqlite3"
        self.log_path = self.workdir / "pdns.log"
        self.control = self.workdir / "supervise"
        self.alias = LoopbackAlias(self.address)
        self._proc: subprocess.Popen[bytes] | None = None
        self._prepare()

    @property
    def api_url(self) -> str:
        return f"http://{self.address}:{self.api_port}"

    # ----------------------------------------------------------------- configuration
    def _prepare(self) -> None:
        (self.etc / "pdns.d").mkdir(parents=True, exist_ok=True)
        for path in (self.lib, self.run):
            path.mkdir(exist_ok=True)
            path.chmod(0o750)
            chown(path, "pdns")
        # Debian's /etc/powerdns/pdns.conf, then the backend's example and the API settings
        # as files of the include directory.
        (self.etc / "pdns.conf").write_text(
            f"include-dir={self.etc}/pdns.d\nlaunch=\nsecurity-poll-suffix=\n"
        )
        (self.etc / "pdns.d" / "gsqlite3.conf").write_text(
            f"launch+=gsqlite3\ngsqlite3-database={self.database}\ngsqlite3-dnssec=on\n"
        )
        api = self.etc / "pdns.d" / "api.conf"
        api.touch(mode=0o600)
        api.write_text(
            f"local-address={self.address}\nlocal-port={DNS_PORT}\n"
            "api=yes\n"
            f"api-key={self.api_key}\n"
            "webserver=yes\n"
            f"webserver-address={self.address}\nwebserver-port={self.api_port}\n"
            "webserver-allow-from=127.0.0.0/8\n"
        )
        with sqlite3.connect(self.database) as db:
            db.executescript(SCHEMA.read_text())
        db.close()
        zone_file = self.workdir / f"db.{PDNS_ZONE}"
        zone_file.write_text(pdns_zone_text(self.address))
        self._pdnsutil("load-zone", PDNS_ZONE, str(zone_file))
        # As for a zone created through the API: the API's changes move the SOA serial.
        self._pdnsutil("set-meta", PDNS_ZONE, "SOA-EDIT-API", "DEFAULT")
        chown(self.database, "pdns")

    def _pdnsutil(self, *args: str) -> None:
        proc = subprocess.run(
            [PDNSUTIL_BIN, f"--config-dir={self.etc}", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"pdnsutil {' '.join(args)} exited {proc.returncode}: {proc.stdout}{proc.stderr}"
            )

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> PowerDns:
        """Start pdns_server; returns when it serves the zone on port 53 and the API answers."""
        if self._proc is not None and self._proc.poll() is None:
            return self
        self.alias.add()
        cmd = [
            PDNS_BIN,
            f"--config-dir={self.etc}",
            "--daemon=no",
            "--guardian=no",
            "--disable-syslog",
            f"--socket-dir={self.run}",
            "--write-pid=no",
        ]
        if as_root():
            cmd += ["--setuid=pdns", "--setgid=pdns"]
        try:
            self._proc = start_supervised(cmd, self.control, self.log_path, self.workdir)
            wait_supervised(
                self._ready,
                what=f"pdns_server ({self.address}:{DNS_PORT})",
                control=self.control,
                proc=self._proc,
                log=self.log_text,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        if not answers(self.address, PDNS_ZONE):
            return False
        try:
            self.api("GET", "")
        except OSError:
            return False
        return True

    def stop(self) -> None:
        stop_process(self._proc)
        self._proc = None
        self.alias.remove()

    def close(self) -> None:
        self.stop()
        if self._own_tmp:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PowerDns:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- API and queries
    def api(self, method: str, path: str, body: object = None) -> object:
        """One API request, ``path`` relative to ``/api/v1/servers/localhost``; returns the
        decoded JSON (None for an empty reply). Raises ``urllib.error.HTTPError`` on >= 400."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.api_url}/api/v1/servers/{self.server_id}{path}",
            data=data,
            method=method,
            headers={"X-API-Key": self.api_key, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def txt(self, name: str) -> list[str]:
        """TXT strings PowerDNS answers for ``name`` on port 53."""
        return txt(self.address, name)

    def zone_snapshot(self, zone: str = PDNS_ZONE) -> list[str]:
        """``zone_snapshot`` of ``zone`` (AXFR from loopback, allowed by pdns's default)."""
        return zone_snapshot(zone, self.address)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
