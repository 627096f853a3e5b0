"""`certsmith install` proves the new configuration is live, or rolls back and says so: real
nginx, Apache and lighttpd (Debian's stock trees, lighttpd dropping to www-data as Debian runs
it) where a reload cannot take effect — the HTTPS port is held by another process, or is a
privileged port the server can no longer open by itself."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from tests.conftest import RunCertsmith
from tests.support.net import LOOPBACK, free_port, free_privileged_port, wait_until
from tests.support.pebble import Pebble
from tests.support.tlsserver import TlsServer, make_cert
from tests.support.webservers import SERVERS, Lighttpd, Nginx, WebServer
from tests.test_servers_e2e import Site

# What each server does when its new HTTPS listener cannot bind, as certsmith reports it:
# nginx's reload exits 0 and keeps the old configuration; Apache's graceful restart shuts the
# server down; lighttpd (a new listener: restarted) exits at start-up.
FAILED = {
    "nginx": "nginx reloaded, but the new configuration is not live: 127.0.0.1:{port} serves "
    "certificate serial",
    "apache": "apache reloaded, but the new configuration is not live: nothing answers HTTP",
    "lighttpd": "lighttpd restart",
}


def _squatter(tmp_path: Path) -> TlsServer:
    """Another process's TLS listener on 127.0.0.1, serving a certificate of its own."""
    other = make_cert("other.test")
    (tmp_path / "other.pem").write_bytes(other.pem())
    (tmp_path / "other.key").write_bytes(other.key_pem())
    return TlsServer(tmp_path / "other.pem", tmp_path / "other.key").start()


def _http_root(srv: WebServer) -> tuple[int, str, bytes]:
    """(status, Location, body) of GET / on the plain-HTTP port, redirects not followed."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(f"http://{LOOPBACK}:{srv.http_port}/", timeout=5) as resp:
            return resp.status, resp.headers.get("Location") or "", resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location") or "", exc.read()


def _served_by_squatter(site: Site, squatter: TlsServer) -> bool:
    import socket
    import ssl

    from cryptography import x509

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((LOOPBACK, squatter.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=site.name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return "other.test" in x509.load_der_x509_certificate(der).subject.rfc4514_string()


@pytest.mark.parametrize("kind", ["nginx", "apache", "lighttpd"])
def test_https_port_held_by_another_process_rolls_back(
    kind: str, pebble: Pebble, run_certsmith: RunCertsmith, tmp_path: Path
) -> None:
    """The reload cannot bind the HTTPS port (nginx keeps its old configuration and its reload
    exits 0; Apache's and lighttpd's servers exit): install exits non-zero, says what failed
    and that the previous configuration is serving again, and HTTP answers as before."""
    squatter = _squatter(tmp_path)
    srv = SERVERS[kind](http_port=pebble.http_port, https_port=squatter.port).start()
    try:
        site = Site(srv, pebble, run_certsmith, f"taken.{kind}.test")
        site.get()
        wait_until(lambda: _http_root(srv)[0] == 200, what=f"{kind} serving after get")
        before_http = _http_root(srv)
        before_tree = srv.tree()

        got = site.install("--redirect", "308", "--hsts", check=False)

        assert got.returncode != 0, got.stdout + got.stderr
        message = got.stderr.strip()
        assert len(message.splitlines()) == 1 and "Traceback" not in got.stderr, message
        assert "installed into" not in got.stdout + message
        assert FAILED[kind].format(port=squatter.port) in message, message
        assert (
            f"the previous configuration was restored and {kind} answers on "
            f"127.0.0.1:{srv.http_port} again (verified)"
        ) in message, message
        assert srv.tree() == before_tree
        assert srv.running
        assert _http_root(srv) == before_http  # 200, the stock page, no redirect
        assert b"stock" in before_http[2] and before_http[1] == ""
        assert _served_by_squatter(site, squatter)
    finally:
        squatter.close()  # (the server's teardown waits for its ports to be free)
        srv.close()


def test_stock_lighttpd_gets_a_new_privileged_tls_listener(
    pebble: Pebble, run_certsmith: RunCertsmith
) -> None:
    """Debian's lighttpd runs as www-data after start-up: a graceful restart cannot open a new
    privileged HTTPS port (the server would exit). certsmith restarts it for a new listener;
    the HTTPS port then serves the certificate just installed."""
    srv = Lighttpd(http_port=pebble.http_port, https_port=free_privileged_port()).start()
    try:
        site = Site(srv, pebble, run_certsmith, "stock.lighttpd.test")
        site.get()
        got = site.install("--redirect", "308", "--hsts", check=False)
        assert got.returncode == 0, got.stderr
        assert "stock.lighttpd.test: installed into lighttpd" in got.stdout
        assert srv.running
        assert site.served_serial() == site.live_serial()
        site.check_served(308)
        # A renewal adds no listener: a graceful reload as www-data, proven by the new serial.
        old = site.live_serial()
        renewed = site.cs("renew", "--force", "--json")
        assert renewed.returncode == 0, renewed.stderr
        assert site.live_serial() != old
        assert srv.running
        assert site.served_serial() == site.live_serial()
    finally:
        srv.close()


def test_lighttpd_that_cannot_be_started_again_is_reported(
    pebble: Pebble, run_certsmith: RunCertsmith
) -> None:
    """When neither the change nor the rollback brings the server back, certsmith says so —
    not running, and the command that starts it — and exits non-zero."""
    srv = Lighttpd(http_port=pebble.http_port, https_port=free_port()).start()
    try:
        site = Site(srv, pebble, run_certsmith, "down.lighttpd.test")
        site.get()
        wait_until(lambda: _http_root(srv)[0] == 200, what="lighttpd serving after get")
        before_tree = srv.tree()
        pid = srv.workdir / "lighttpd.pid"
        # A restart command that stops the server and cannot start it (a broken unit).
        broken = f"kill $(cat {pid}); echo 'unit failed' >&2; exit 1"
        got = site.install(
            "--redirect", "308", env={"CERTSMITH_LIGHTTPD_RESTART": broken}, check=False
        )
        assert got.returncode != 0
        message = got.stderr.strip()
        assert len(message.splitlines()) == 1 and "Traceback" not in got.stderr, message
        assert "lighttpd restart failed" in message and "unit failed" in message, message
        assert (
            f"the previous configuration was restored, but lighttpd is not running "
            f"(nothing answers on 127.0.0.1:{srv.http_port}): start it with "
            f"'{broken}'"
        ) in message, message
        assert srv.tree() == before_tree
        assert not srv.running
    finally:
        srv.close()


def test_renewal_whose_reload_does_not_take_effect_fails(
    pebble: Pebble, run_certsmith: RunCertsmith, tmp_path: Path
) -> None:
    """nginx's `-s reload` exits 0 when its configuration cannot bind (here a user's new site
    on a port another process holds): the renewed certificate is not served, so the renewal
    reports a failed deployment instead of success."""
    squatter = _squatter(tmp_path)
    srv = Nginx(http_port=pebble.http_port).start()
    try:
        site = Site(srv, pebble, run_certsmith, "renew.nginx.test")
        site.get()
        site.install("--redirect", "308")
        old = site.live_serial()
        assert site.served_serial() == old
        (srv.root / "conf.d" / "user.conf").write_text(
            f"server {{\n    listen 127.0.0.1:{squatter.port};\n    return 204;\n}}\n"
        )

        renewed = site.cs("renew", "--force")

        assert renewed.returncode != 0, renewed.stdout + renewed.stderr
        new = site.live_serial()
        assert new != old
        assert site.served_serial() == old  # what every client still sees
        text = renewed.stdout + renewed.stderr
        assert (
            "the reload did not take effect: nginx does not serve it: "
            f"127.0.0.1:{srv.https_port} serves certificate serial {old:x} for "
            f"renew.nginx.test, not the installed {new:x}" in text
        ), text
    finally:
        squatter.close()
        srv.close()


def test_challenge_mapping_that_does_not_take_effect_stops_before_the_order(
    pebble: Pebble, run_certsmith: RunCertsmith, tmp_path: Path
) -> None:
    """`get --nginx` proves the server answers from certsmith's challenge directory before it
    orders: with a reload that cannot take effect (a user's site on a port another process
    holds), it stops with a message, orders nothing, and leaves the tree as it was."""
    squatter = _squatter(tmp_path)
    srv = Nginx(http_port=pebble.http_port).start()
    try:
        (srv.root / "conf.d" / "user.conf").write_text(
            f"server {{\n    listen 127.0.0.1:{squatter.port};\n    return 204;\n}}\n"
        )
        before_tree, orders = srv.tree(), pebble.count_orders()
        site = Site(srv, pebble, run_certsmith, "challenge.nginx.test")
        got = site.cs(
            "get",
            site.name,
            "--nginx",
            "--http-port",
            srv.http_port,
            "--http-address",
            LOOPBACK,
            "--server",
            pebble.directory,
            "--agree-tos",
        )
        assert got.returncode != 0, got.stdout + got.stderr
        message = got.stderr.strip()
        assert len(message.splitlines()) == 1 and "Traceback" not in got.stderr, message
        assert (
            "nginx reloaded, but the new configuration is not live: "
            "http://challenge.nginx.test/.well-known/acme-challenge/certsmith-probe-" in message
        ), message
        assert "not the file in certsmith's challenge directory" in message, message
        assert (
            f"the previous configuration was restored and nginx answers on "
            f"127.0.0.1:{srv.http_port} again (verified)"
        ) in message, message
        assert pebble.count_orders() == orders
        assert srv.tree() == before_tree
        assert not list((site.home / "http-01" / ".well-known" / "acme-challenge").iterdir())
    finally:
        squatter.close()
        srv.close()


def test_lighttpd_installed_twice_keeps_the_modules_it_needs(
    pebble: Pebble, run_certsmith: RunCertsmith
) -> None:
    """Installing again (here with another HSTS max-age) re-renders certsmith's file: the
    modules it loaded itself (mod_setenv for HSTS) must still be loaded by the new file, or
    `lighttpd -tt` rejects `setenv.*` and the install fails. The second install succeeds and
    the site serves the new header."""
    srv = Lighttpd(http_port=pebble.http_port, https_port=free_port()).start()
    try:
        site = Site(srv, pebble, run_certsmith, "twice.lighttpd.test")
        site.get()
        site.install("--redirect", "308", "--hsts")
        site.check_served(308)

        again = site.install("--redirect", "308", "--hsts", "31536000", check=False)

        assert again.returncode == 0, again.stderr
        assert "twice.lighttpd.test: installed into lighttpd" in again.stdout
        wait_until(
            lambda: site.https_get()[1].get("strict-transport-security") == "max-age=31536000",
            what="lighttpd serving the new HSTS max-age",
        )
        site.check_served(308)
        assert site.served_serial() == site.live_serial()
    finally:
        srv.close()


def test_nginx_install_waits_until_the_old_workers_stop_accepting(
    pebble: Pebble, run_certsmith: RunCertsmith
) -> None:
    """nginx's reload returns before its old workers stop taking connections, so a CA that
    validates at once (Pebble on loopback, right after ``get --nginx`` set up the challenge
    mapping) could reach one and see 404. install and get return only when no worker from
    before the reload still accepts: one is held stopped here, so it cannot handle the
    master's QUIT, and install does not finish until it is let go."""
    import os
    import signal
    import subprocess
    import sys

    from certsmith.services.servers import workers
    from tests.conftest import _certsmith_env

    srv = Nginx(http_port=pebble.http_port, https_port=free_port()).start()
    held: int | None = None
    try:
        site = Site(srv, pebble, run_certsmith, "settle.nginx.test")
        site.get()
        master = workers.master_pid(workers.nginx_pid_file(srv.root / "nginx.conf"))
        assert master is not None
        old = workers.nginx_accepting(master)
        assert old, "the fixture's nginx has workers"
        held = min(old)
        os.kill(held, signal.SIGSTOP)
        env = _certsmith_env(site.home, pebble, srv.certsmith_env())
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "certsmith",
                "install",
                "nginx",
                site.name,
                "--http-port",
                str(srv.http_port),
                "--https-port",
                str(srv.https_port),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # The new configuration is live for the new workers ...
            wait_until(
                lambda: _serves(site), what="the new workers serve the certificate", timeout=60
            )
            # ... but install has not returned while an old worker could still accept.
            with pytest.raises(subprocess.TimeoutExpired):
                proc.wait(timeout=3)
            os.kill(held, signal.SIGCONT)
            held = None
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err
        assert "installed" in out, out
        assert site.served_serial() == site.live_serial()
    finally:
        if held is not None:
            os.kill(held, signal.SIGCONT)
        srv.close()


def _serves(site: Site) -> bool:
    try:
        return site.served_serial() == site.live_serial()
    except OSError:
        return False
