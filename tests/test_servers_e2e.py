"""certsmith get --nginx|--apache|--lighttpd, install, renew and uninstall against the real
servers (Debian's packages, started from a copy of Debian's stock tree on loopback ports) and
Pebble: the seed scenarios, and the failures that must leave the server serving an unchanged
configuration tree."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.conftest import RunCertsmith
from tests.support.net import LOOPBACK, free_port, wait_until
from tests.support.pebble import Pebble
from tests.support.webservers import WebServer

Factory = Callable[[str], WebServer]


class Site:
    """One certificate served by one server: drives certsmith and checks what clients see."""

    def __init__(
        self, srv: WebServer, pebble: Pebble, run: RunCertsmith, name: str, *aliases: str
    ) -> None:
        self.srv, self.pebble, self.run = srv, pebble, run
        self.name, self.names = name, (name, *aliases)
        self.home = srv.workdir / "certsmith"  # readable by the server's workers, like /var/lib
        self.root_pem = srv.workdir / "pebble-root.pem"
        self.root_pem.write_text(pebble.root_pem())

    def cs(
        self, *args: Any, env: dict[str, str] | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            *args, env={**self.srv.certsmith_env(), **(env or {})}, home=self.home, check=check
        )

    def get(self) -> None:
        self.cs(
            "get",
            *self.names,
            f"--{self.srv.kind}",
            "--http-port",
            self.srv.http_port,
            "--server",
            self.pebble.directory,
            "--agree-tos",
            check=True,
        )

    def install(
        self, *options: Any, env: dict[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.cs(
            "install",
            self.srv.kind,
            self.name,
            "--http-port",
            self.srv.http_port,
            "--https-port",
            self.srv.https_port,
            *options,
            env=env,
            check=check,
        )

    @property
    def live(self) -> Path:
        return self.home / "live" / self.name

    def live_serial(self) -> int:
        return x509.load_pem_x509_certificate((self.live / "cert.pem").read_bytes()).serial_number

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.root_pem))

    def served_serial(self, host: str | None = None) -> int:
        """Serial of the certificate the server presents for ``host`` (verified)."""
        with (
            socket.create_connection((LOOPBACK, self.srv.https_port), timeout=5) as raw,
            self.context().wrap_socket(raw, server_hostname=host or self.name) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number

    def https_get(
        self, path: str = "/", host: str | None = None
    ) -> tuple[int, dict[str, str], bytes, int]:
        """(status, headers, body, serial) of one HTTPS request, verified with Pebble's root."""
        host = host or self.name
        with (
            socket.create_connection((LOOPBACK, self.srv.https_port), timeout=5) as raw,
            self.context().wrap_socket(raw, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            tls.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {host}:{self.srv.https_port}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])
        }
        return (
            int(lines[0].split()[1]),
            headers,
            body,
            x509.load_der_x509_certificate(der).serial_number,
        )

    def curl(
        self, url_path: str = "/", *, https: bool = True, extra: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        port = self.srv.https_port if https else self.srv.http_port
        scheme = "https" if https else "http"
        return subprocess.run(
            [
                "curl",
                "-sS",
                "-i",
                "--max-time",
                "10",
                "--cacert",
                str(self.root_pem),
                "--resolve",
                f"{self.name}:{port}:{LOOPBACK}",
                *extra,
                f"{scheme}://{self.name}:{port}{url_path}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )

    def wait_https(self) -> None:
        """Reloads are graceful and asynchronous: wait until the new site answers."""

        def ready() -> bool:
            try:
                return self.https_get()[0] == 200
            except OSError:
                return False

        wait_until(ready, what=f"{self.srv.kind} serving {self.name} over HTTPS")

    def check_served(self, redirect: int, hsts: bool = True) -> None:
        """curl with Pebble's root: 200 over HTTPS with the live certificate, the redirect
        over HTTP, HSTS, and the challenge path still answered over plain HTTP."""
        self.wait_https()
        got = self.curl("/")
        assert got.returncode == 0, got.stderr
        assert got.stdout.startswith(("HTTP/1.1 200", "HTTP/2 200")), got.stdout[:300]
        if hsts:
            assert "strict-transport-security: max-age=" in got.stdout.lower()
        assert self.served_serial() == self.live_serial()
        # (old workers may answer a last request or two while a graceful reload completes)
        deadline = time.monotonic() + 10
        while True:
            plain = self.curl("/some/page?x=1", https=False)
            if plain.stdout.startswith(f"HTTP/1.1 {redirect}") or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert plain.stdout.startswith(f"HTTP/1.1 {redirect}"), plain.stdout[:300]
        location = f"location: https://{self.name}:{self.srv.https_port}/some/page?x=1"
        assert location in plain.stdout.lower()
        acme = self.curl("/.well-known/acme-challenge/missing", https=False)
        assert acme.stdout.startswith("HTTP/1.1 404"), acme.stdout[:300]

    def renew_without_failures(self) -> None:
        """`certsmith renew --force` while a client loops: the served certificate changes and
        no request fails."""
        old = self.live_serial()
        assert self.served_serial() == old
        failures: list[str] = []
        seen: list[int] = []
        stop = threading.Event()

        def client() -> None:
            deadline = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    status, _h, _b, serial = self.https_get()
                    seen.append(serial)
                    if status != 200:
                        failures.append(f"status {status}")
                    if serial != old:
                        return
                except OSError as exc:
                    failures.append(repr(exc))

        loop = threading.Thread(target=client)
        loop.start()
        try:
            renewed = self.cs("renew", "--force", "--json")
            assert renewed.returncode == 0, renewed.stderr
            assert json.loads(renewed.stdout)[0]["action"] == "renewed"
            loop.join(60)
        finally:
            stop.set()
            loop.join()
        new = self.live_serial()
        assert new != old
        assert seen and seen[-1] == new, "the served certificate never changed"
        assert old in seen, "the client never saw the old certificate (no overlap tested)"
        assert failures == [], failures


# -- the seed scenarios -------------------------------------------------------------------------


class EchoApp:
    """The seed 003 app: HTTP and a WebSocket echo on one port (the `websockets` package)."""

    def __init__(self) -> None:
        from websockets.sync.server import serve

        self.port = free_port()

        def process_request(connection: Any, request: Any) -> Any:
            if request.headers.get("Upgrade", "").lower() == "websocket":
                return None
            seen = {
                k: request.headers.get(k)
                for k in ("Host", "X-Forwarded-Proto", "X-Forwarded-For", "X-Forwarded-Host")
            }
            return connection.respond(HTTPStatus.OK, json.dumps(seen))

        def echo(ws: Any) -> None:
            for message in ws:
                ws.send(message)

        self.server = serve(echo, LOOPBACK, self.port, process_request=process_request)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


def test_nginx_reverse_proxy_websocket_seed_003(
    webserver: Factory, pebble: Pebble, run_certsmith: RunCertsmith
) -> None:
    srv = webserver("nginx")
    app = EchoApp()
    try:
        # The user's own site, as in seed 003: a plain-HTTP proxy block in sites-available.
        site = srv.root / "sites-available" / "terrax9"
        site.write_text(
            f"server {{\n    listen 127.0.0.1:{srv.http_port};\n"
            "    server_name terrax9.test www.terrax9.test;\n"
            f"    location / {{\n        proxy_pass http://127.0.0.1:{app.port};\n"
            "        proxy_http_version 1.1;\n        proxy_set_header Upgrade $http_upgrade;\n"
            "        proxy_set_header Connection 'upgrade';\n        proxy_set_header Host $host;\n"
            "    }\n}\n"
        )
        (srv.root / "sites-enabled" / "terrax9").symlink_to(site)
        subprocess.run([*srv.certsmith_env()["CERTSMITH_NGINX_RELOAD"].split()], check=True)
        before = srv.tree()

        s = Site(srv, pebble, run_certsmith, "terrax9.test", "www.terrax9.test")
        s.get()
        # The user's block was carried into certsmith's file and its link moved aside.
        assert not (srv.root / "sites-enabled" / "terrax9").exists()
        assert site.read_bytes() == before["sites-available/terrax9"][1]

        dry = s.install(
            "--redirect", "301", "--hsts", "--proxy-to", f"http://127.0.0.1:{app.port}", "--dry-run"
        )
        assert f"+    listen 127.0.0.1:{srv.https_port} ssl;" in dry.stdout
        assert "proxy_set_header Upgrade $http_upgrade;" in dry.stdout

        s.install("--redirect", "301", "--hsts", "--proxy-to", f"http://127.0.0.1:{app.port}")
        s.check_served(301)
        status, _h, body, _serial = s.https_get("/api", host="www.terrax9.test")
        assert status == 200
        seen = json.loads(body)
        assert seen["X-Forwarded-Proto"] == "https" and seen["X-Forwarded-For"] == LOOPBACK
        assert seen["Host"] == "www.terrax9.test"

        # wss:// through nginx to the app's WebSocket echo.
        from websockets.sync.client import connect

        sock = socket.create_connection((LOOPBACK, srv.https_port), timeout=5)
        with connect(
            f"wss://terrax9.test:{srv.https_port}/ws",
            sock=sock,
            ssl=s.context(),
            server_hostname="terrax9.test",
            open_timeout=5,
        ) as ws:
            ws.send("hello over wss")
            assert ws.recv(timeout=5) == "hello over wss"

        s.renew_without_failures()

        s.cs("uninstall", "nginx", "terrax9.test", check=True)
        assert srv.tree() == before  # exactly what certsmith added is gone, the link is back
    finally:
        app.close()


def test_apache_redirect_hsts_seed_001(
    webserver: Factory, pebble: Pebble, run_certsmith: RunCertsmith
) -> None:
    srv = webserver("apache")
    before = srv.tree()
    s = Site(srv, pebble, run_certsmith, "allstar.test")
    s.get()
    s.install("--redirect", "--hsts")  # no code given: 308, as 'certsmith proxy' (issue 10)
    s.check_served(308)
    s.install("--redirect", "301", "--hsts", "31536000")  # installing again replaces it
    s.wait_https()
    got = s.curl("/")
    assert "strict-transport-security: max-age=31536000" in got.stdout.lower()
    s.check_served(301)
    s.renew_without_failures()
    s.cs("uninstall", "apache", "allstar.test", check=True)
    assert srv.tree() == before


def test_lighttpd_allsky_seed_000(
    webserver: Factory, pebble: Pebble, run_certsmith: RunCertsmith
) -> None:
    srv = webserver("lighttpd")
    before = srv.tree()
    s = Site(srv, pebble, run_certsmith, "allsky.test")
    s.get()
    assert (srv.root / "conf-enabled" / "97-certsmith-acme.conf").is_symlink()
    s.install("--redirect", "308", "--hsts")
    # lighttpd reads its key again as www-data after dropping privileges (graceful restart).
    key = srv.root / "certsmith" / "allsky.test" / "privkey.pem"
    assert oct(key.stat().st_mode & 0o777) == "0o640" and key.group() == "www-data"
    s.check_served(308)
    s.renew_without_failures()
    s.cs("uninstall", "lighttpd", "allsky.test", check=True)
    assert srv.tree() == before


# -- failures: a clear message, the server still serving, the tree byte-identical ---------------

BROKEN = {
    "nginx": ("conf.d/broken.conf", "server {\n    bogus_directive on;\n}\n"),
    "apache": ("conf-enabled/broken.conf", "BogusDirective on\n"),
    "lighttpd": ("conf-enabled/50-broken.conf", "server.port = = 1\n"),
}


def _ambiguous(srv: WebServer, name: str) -> list[str]:
    files = []
    for i in (1, 2):
        if srv.kind == "nginx":
            rel = f"sites-enabled/user{i}"
            text = (
                f"server {{\n    listen 127.0.0.1:{srv.http_port};\n"
                f"    server_name {name};\n    root /tmp;\n}}\n"
            )
        elif srv.kind == "apache":
            rel = f"sites-enabled/user{i}.conf"
            text = (
                f"<VirtualHost 127.0.0.1:{srv.http_port}>\n    ServerName {name}\n"
                "    DocumentRoot /tmp\n</VirtualHost>\n"
            )
        else:
            rel = f"conf-enabled/6{i}-user.conf"
            cond = f'== "{name}"' if i == 1 else f'=~ "^{name}$"'  # (two valid conditionals)
            text = f'$HTTP["host"] {cond} {{\n    server.document-root = "/tmp"\n}}\n'
        (srv.root / rel).write_text(text)
        files.append(rel)
    return files


def _serving_again(srv: WebServer, deadline: float = 15.0) -> None:
    """Wait (polling, with a deadline) until a reload that ``get`` started has finished:
    lighttpd's graceful restart closes its listener for a moment."""
    import socket
    import time

    end = time.monotonic() + deadline
    while True:
        try:
            with socket.create_connection((LOOPBACK, srv.http_port), timeout=1):
                return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.02)


def _still_serving(srv: WebServer) -> None:
    import urllib.request

    with urllib.request.urlopen(f"http://{LOOPBACK}:{srv.http_port}/", timeout=5) as resp:
        assert resp.status == 200 and b"stock" in resp.read()


@pytest.mark.parametrize("kind", ["nginx", "apache", "lighttpd"])
@pytest.mark.parametrize("failure", ["broken-config", "ambiguous", "failing-reload"])
def test_failures_leave_server_serving_and_tree_identical(
    kind: str, failure: str, webserver: Factory, pebble: Pebble, run_certsmith: RunCertsmith
) -> None:
    srv = webserver(kind)
    s = Site(srv, pebble, run_certsmith, f"{failure}.{kind}.test")
    s.get()
    _serving_again(srv)
    env: dict[str, str] = {}
    if failure == "broken-config":
        rel, text = BROKEN[kind]
        (srv.root / rel).write_text(text)
        expect = ["fix the", "changed nothing", rel.split("/")[-1] if kind != "lighttpd" else ""]
    elif failure == "ambiguous":
        files = _ambiguous(srv, s.name)
        expect = ["more than one", "will not guess", *files]
    else:
        # (lighttpd gets a new TLS listener: certsmith restarts it rather than reloading)
        refused = "echo 'reload refused' >&2; exit 1"
        env = {
            f"CERTSMITH_{kind.upper()}_RELOAD": refused,
            f"CERTSMITH_{kind.upper()}_RESTART": refused,
        }
        verb = "restart" if kind == "lighttpd" else "reload"
        expect = [f"{verb} failed", "reload refused", "previous configuration was restored"]
    before = srv.tree()
    got = s.install("--redirect", "308", "--hsts", env=env, check=False)
    assert got.returncode != 0
    message = got.stderr.strip()
    assert message.startswith("certsmith: ") and "Traceback" not in got.stderr
    assert len(message.splitlines()) == 1
    for part in expect:
        assert part in message, message
    assert srv.tree() == before
    _still_serving(srv)
    assert srv.running


# -- a wildcard lineage proven by dns-01 ----------------------------------------------------------


def _publish_wildcard(home: Path, name: str) -> None:
    """A dns-01 lineage for ``*.NAME`` and NAME, its certificate from a throwaway CA (the
    installers only serve it; no CA is asked)."""
    from certsmith.base.certstate import CertState, save_state
    from certsmith.base.identifiers import parse_identifiers
    from certsmith.base.keys import cert_info
    from certsmith.base.model import SiteSpec
    from certsmith.base.sites import save_site
    from certsmith.base.solverspec import DnsSpec
    from certsmith.base.store import open_store
    from tests.test_import_certbot_dns import issue

    store = open_store(home)
    store.ensure()
    files = issue([f"*.{name}", name])
    store.publish(name, files, private=frozenset({"privkey.pem"}))
    save_site(
        store,
        SiteSpec(
            name=name,
            identifiers=parse_identifiers([f"*.{name}", name]),
            server="https://acme.test/directory",
            solver=DnsSpec(provider="hook", hook="true"),
        ),
    )
    info = cert_info(files["cert.pem"])
    save_state(
        store,
        name,
        CertState(
            serial=info.serial,
            not_before=info.not_before,
            not_after=info.not_after,
            issuer=info.issuer,
            last_result="issued",
        ),
    )


@pytest.mark.parametrize("kind", ["nginx", "apache", "lighttpd"])
def test_wildcard_dns01_lineage_is_served_for_any_label(
    kind: str, webserver: Factory, pebble: Pebble, run_certsmith: RunCertsmith
) -> None:
    from tests.test_import_certbot_dns import ca_pem

    srv = webserver(kind)
    before = srv.tree()
    s = Site(srv, pebble, run_certsmith, f"wild-{kind}.test")
    s.root_pem.write_bytes(ca_pem())
    _publish_wildcard(s.home, s.name)
    got = s.install("--redirect", "308")
    assert f"{s.name}: installed into {kind}" in got.stdout, got.stdout + got.stderr
    assert not [p for p in srv.tree() if "acme" in str(p)]  # no HTTP-01 mapping
    assert not (s.home / "http-01").exists()
    for label in ("a", "www"):
        host = f"{label}.{s.name}"
        with (
            socket.create_connection((LOOPBACK, srv.https_port), timeout=5) as raw,
            s.context().wrap_socket(raw, server_hostname=host) as tls,
        ):
            san = tls.getpeercert()["subjectAltName"]  # verified for HOST, with the test CA
        assert ("DNS", f"*.{s.name}") in san and ("DNS", s.name) in san
        curl = ["curl", "-sS", "-i", "--max-time", "10", "--cacert", str(s.root_pem)]
        page = subprocess.run(
            [
                *curl,
                "--resolve",
                f"{host}:{srv.https_port}:{LOOPBACK}",
                f"https://{host}:{srv.https_port}/",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert page.returncode == 0, page.stderr
        assert page.stdout.startswith(("HTTP/1.1 200", "HTTP/2 200")), page.stdout[:300]
        plain = subprocess.run(
            [
                *curl,
                "--resolve",
                f"{host}:{srv.http_port}:{LOOPBACK}",
                f"http://{host}:{srv.http_port}/x?y=1",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert plain.stdout.startswith("HTTP/1.1 308"), plain.stdout[:300]
        assert f"location: https://{host}:{srv.https_port}/x?y=1" in plain.stdout.lower()
    listed = s.cs("list", "--json", check=True)
    assert json.loads(listed.stdout)[0]["solver"] == "dns-01 hook"
    s.cs("uninstall", kind, s.name, check=True)
    assert srv.tree() == before
