"""Listen addresses survive `get --SERVER` and `install`: a site on 127.0.0.1 and [::1] keeps
exactly those addresses, on the HTTP port and (the same ones) on the HTTPS port; a site on
127.0.0.1 only is not widened to every interface or to IPv6; `--listen-address` (repeated or
comma separated) replaces them.

Live servers (Debian's nginx, Apache, lighttpd from the stock tree, on 127.0.0.1 and [::1]) are
judged by what a user sees: the kernel's listening sockets (`ss -ltn`) and curl over both
families. The stock wildcard form (every interface) is never started: it is rendered, accepted
by the server's own validator and its planned directives are asserted."""

from __future__ import annotations

import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from certsmith.services.servers import installer_for
from certsmith.services.servers.base import Plan, SiteOptions, Transaction
from certsmith.services.servers.listen import (
    conflicts,
    covered,
    hostport,
    parse_addresses,
    parse_hostport,
)
from tests.conftest import RunCertsmith
from tests.support.net import LOOPBACK, LOOPBACK6, wait_until
from tests.support.pebble import Pebble
from tests.support.webservers import SERVERS, Apache, Nginx, WebServer
from tests.test_servers_e2e import Factory, Site
from tests.test_servers_render import _live


@pytest.fixture
def server(webserver: Factory) -> Factory:
    """``server(kind)``: conftest's ``webserver`` (started, on Pebble's http-01 port)."""
    return webserver


def listening(port: int) -> set[str]:
    """The local addresses of the TCP sockets listening on ``port`` (``ss -ltn``)."""
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return {line.split()[3] for line in out.splitlines() if line.strip()}


def both(port: int) -> set[str]:
    return {f"{LOOPBACK}:{port}", f"[{LOOPBACK6}]:{port}"}


def settled(port: int, expected: set[str]) -> set[str]:
    """The listening set once it equals ``expected`` (a graceful reload finishes
    asynchronously), or what it is after the deadline."""
    try:
        return wait_until(
            lambda: listening(port) == expected and expected,
            what=f"sockets on port {port}",
            timeout=10,
        )
    except TimeoutError:
        return listening(port)


def curl(
    s: Site, host: str, port: int, path: str = "/", https: bool = True
) -> subprocess.CompletedProcess[str]:
    scheme = "https" if https else "http"
    addr = f"[{host}]" if ":" in host else host
    return subprocess.run(
        [
            "curl",
            "-sS",
            "-i",
            "--max-time",
            "10",
            "--cacert",
            str(s.root_pem),
            "--resolve",
            f"{s.name}:{port}:{addr}",
            f"{scheme}://{s.name}:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def served_serial(s: Site, host: str) -> int:
    with (
        socket.create_connection((host, s.srv.https_port), timeout=5) as raw,
        s.context().wrap_socket(raw, server_hostname=s.name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def reload_until(srv: WebServer, name: str, header: str) -> None:
    """Reload the server after the test changed its files, and wait until the user's site
    answers (with ``header``): a graceful reload completes after the command returns."""
    subprocess.run(
        srv.certsmith_env()[f"CERTSMITH_{srv.kind.upper()}_RELOAD"], shell=True, check=True
    )

    def live() -> bool:
        got = subprocess.run(
            [
                "curl",
                "-sS",
                "-i",
                "--max-time",
                "5",
                "--resolve",
                f"{name}:{srv.http_port}:{LOOPBACK}",
                f"http://{name}:{srv.http_port}/",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        return header in got.stdout.lower()

    wait_until(live, what=f"{srv.kind} serving the user's site {name}")


def refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except OSError:
        return True


def check_over(s: Site, hosts: tuple[str, ...]) -> None:
    """Over each address: the live certificate and 200 over HTTPS, the redirect over HTTP."""
    live = s.live_serial()

    def serving(host: str) -> bool:
        try:
            return served_serial(s, host) == live
        except (OSError, ssl.SSLError):
            return False

    for host in hosts:

        def ready(h: str = host) -> bool:
            return serving(h)

        wait_until(ready, what=f"HTTPS on {host}")
        got = curl(s, host, s.srv.https_port)
        assert got.returncode == 0, got.stderr
        assert got.stdout.startswith(("HTTP/1.1 200", "HTTP/2 200")), got.stdout[:300]

        # (old workers may answer a last request while a graceful reload completes)
        def redirected(h: str = host) -> subprocess.CompletedProcess[str] | None:
            got = curl(s, h, s.srv.http_port, "/page?x=1", https=False)
            return got if got.stdout.startswith("HTTP/1.1 308") else None

        try:
            plain = wait_until(redirected, what=f"the redirect on {host}", timeout=10)
        except TimeoutError:
            plain = curl(s, host, s.srv.http_port, "/page?x=1", https=False)
        assert plain.stdout.startswith("HTTP/1.1 308"), plain.stdout[:300]
        assert f"location: https://{s.name}:{s.srv.https_port}/page?x=1" in plain.stdout.lower()


@pytest.mark.parametrize("kind", ["nginx", "apache", "lighttpd"])
def test_site_on_loopback_v4_and_v6_keeps_both(
    kind: str, server: Factory, pebble: Pebble, run_certsmith: RunCertsmith
) -> None:
    """The stock default site, listening on 127.0.0.1 and [::1] (as a user's loopback site
    does): certsmith's site answers on exactly those, and on the same two for HTTPS."""
    srv = server(kind)
    http = both(srv.http_port)
    assert settled(srv.http_port, http) == http
    s = Site(srv, pebble, run_certsmith, f"both.{kind}.test")
    s.get()  # (it proves the challenge mapping live on both addresses before ordering)
    assert settled(srv.http_port, http) == http
    got = s.install("--redirect", "308")
    check_over(s, (LOOPBACK, LOOPBACK6))
    assert settled(srv.https_port, both(srv.https_port)) == both(srv.https_port)
    assert settled(srv.http_port, http) == http
    assert f"[::1]:{srv.https_port} (HTTPS), as your site does" in got.stdout, got.stdout


@pytest.mark.parametrize("kind", ["nginx", "apache"])
def test_site_on_127_0_0_1_only_is_not_widened(
    kind: str, server: Factory, pebble: Pebble, run_certsmith: RunCertsmith
) -> None:
    """A user's site on 127.0.0.1 only: HTTPS on 127.0.0.1 only (not 0.0.0.0, not [::1]);
    then `--listen-address 127.0.0.1,::1` (and repeated) asks for both families."""
    srv = server(kind)
    name = f"v4.{kind}.test"
    if kind == "nginx":
        site = srv.root / "sites-available" / "v4site"
        site.write_text(
            f"server {{\n    listen {LOOPBACK}:{srv.http_port};\n"
            f"    server_name {name};\n    root {srv.docroot};\n"
            "    add_header X-User v4;\n}\n"
        )
        (srv.root / "sites-enabled" / "v4site").symlink_to(site)
    else:
        site = srv.root / "sites-available" / "v4site.conf"
        site.write_text(
            f"<VirtualHost {LOOPBACK}:{srv.http_port}>\n    ServerName {name}\n"
            f"    DocumentRoot {srv.docroot}\n</VirtualHost>\n"
        )
        (srv.root / "sites-enabled" / "v4site.conf").symlink_to(site)
    reload_until(srv, name, "x-user: v4" if kind == "nginx" else "stock apache page")
    s = Site(srv, pebble, run_certsmith, name)
    s.get()
    s.install("--redirect", "308")
    check_over(s, (LOOPBACK,))
    v4 = {f"{LOOPBACK}:{srv.https_port}"}
    assert settled(srv.https_port, v4) == v4
    assert refused(LOOPBACK6, srv.https_port)

    dry = s.install("--redirect", "308", "--listen-address", f"{LOOPBACK},{LOOPBACK6}", "--dry-run")
    assert (
        f"and 127.0.0.1:{srv.https_port}, [::1]:{srv.https_port} (HTTPS), as you asked"
        in dry.stdout
    ), dry.stdout
    if kind == "nginx":  # (a diff against the installed file: the 127.0.0.1 lines stay)
        assert f"+    listen [::1]:{srv.https_port} ssl;" in dry.stdout, dry.stdout
    else:
        assert f"<VirtualHost 127.0.0.1:{srv.https_port} [::1]:{srv.https_port}>" in dry.stdout
    s.install("--redirect", "308", "--listen-address", LOOPBACK, "--listen-address", LOOPBACK6)
    check_over(s, (LOOPBACK, LOOPBACK6))
    assert settled(srv.https_port, both(srv.https_port)) == both(srv.https_port)


def test_site_on_ipv6_loopback_only_is_proven_there(
    server: Factory, pebble: Pebble, run_certsmith: RunCertsmith
) -> None:
    """A user's nginx site on [::1] only (added after `get`, which Pebble reaches over
    127.0.0.1): install proves the new configuration on [::1], where the site listens — on
    127.0.0.1 nothing answers TLS for it, and a proof there would roll a good install back."""
    srv = server("nginx")
    name = "v6only.nginx.test"
    s = Site(srv, pebble, run_certsmith, name)
    s.get()
    site = srv.root / "sites-available" / "v6site"
    site.write_text(
        f"server {{\n    listen [{LOOPBACK6}]:{srv.http_port};\n"
        f"    server_name {name};\n    root {srv.docroot};\n"
        "    add_header X-User v6;\n}\n"
    )
    (srv.root / "sites-enabled" / "v6site").symlink_to(site)

    got = s.install("--redirect", "308", check=False)

    assert got.returncode == 0, got.stderr
    assert f"[::1]:{srv.https_port} (HTTPS), as your site does" in got.stdout, got.stdout
    check_over(s, (LOOPBACK6,))
    v6 = {f"[{LOOPBACK6}]:{srv.https_port}"}
    assert settled(srv.https_port, v6) == v6
    assert refused(LOOPBACK, srv.https_port)


# -- the stock wildcard form and IPv6-only sites: rendered and validated, never started ------


def _plan(srv: WebServer, name: str, **options: object) -> tuple[Plan, str]:
    """certsmith's plan for ``name`` on ``srv``, applied and accepted by the server's own
    validator (reload and restart: ``true``, nothing runs); returns it and the text it
    writes."""
    env = {
        **srv.certsmith_env(),
        f"CERTSMITH_{srv.kind.upper()}_RELOAD": "true",
        f"CERTSMITH_{srv.kind.upper()}_RESTART": "true",
    }
    installer = installer_for(srv.kind, env)
    live = srv.workdir / "live"
    live.mkdir()
    _live(live / name)
    detected = installer.detect([name], srv.http_port, srv.https_port)
    opts = SiteOptions(
        name=name,
        names=(name,),
        live_dir=str(live / name),
        http_port=srv.http_port,
        https_port=srv.https_port,
        challenge_dir=str(srv.workdir / "challenge"),
        server_group="www-data",
        redirect=308,
        **options,
    )  # type: ignore[arg-type]
    plan = installer.plan(detected, opts)
    for target in plan.deploy_files:  # lighttpd reads its own copies
        Path(target.path).parent.mkdir(parents=True, exist_ok=True)
        part = "privkey.pem" if target.part == "key" else "fullchain.pem"
        Path(target.path).write_bytes((live / name / part).read_bytes())
    Transaction(installer).apply(plan)
    installer.check()
    return plan, "\n".join(c.data.decode() for c in plan.changes if c.data)


def _lines(text: str, start: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip().startswith(start)]


@pytest.mark.parametrize("kind", ["nginx", "apache", "lighttpd"])
def test_stock_wildcard_site_keeps_every_interface_and_both_families(kind: str) -> None:
    srv = SERVERS[kind](stock_listen=True)
    try:
        p, hp = srv.http_port, srv.https_port
        plan, text = _plan(srv, "render.test")
        if kind == "nginx":  # stock: listen 80; listen [::]:80;
            assert _lines(text, "listen") == [
                f"listen {p};",
                f"listen [::]:{p};",
                f"listen {hp} ssl;",
                f"listen [::]:{hp} ssl;",
            ]
        elif kind == "apache":  # stock: Listen 80 (every address, both families)
            assert _lines(text, "Listen") == [f"Listen {hp} https"]
            assert _lines(text, "<VirtualHost") == [f"<VirtualHost *:{p}>", f"<VirtualHost *:{hp}>"]
        else:  # stock: server.port = 80 and use-ipv6.pl's [::]:80
            assert _lines(text, '$SERVER["socket"]') == [
                f'$SERVER["socket"] == ":{hp}" {{',
                f'$SERVER["socket"] == "[::]:{hp}" {{',
            ]
        expected = (str(hp),) if kind == "apache" else (str(hp), f"[::]:{hp}")
        assert plan.https_listens == expected
    finally:
        srv.close()


def test_nginx_site_on_ipv6_loopback_only_stays_there() -> None:
    """A user's block on IPv6 only ([::1], and [::] with ipv6only=on): certsmith's HTTP and
    HTTPS listeners are the same IPv6 ones, and the parameters of the user's block stay."""
    srv = Nginx(stock_listen=True)
    try:
        (srv.root / "sites-enabled" / "default").unlink()  # (its default_server is the user's)
        site = srv.root / "sites-available" / "v6site"
        site.write_text(
            f"server {{\n    listen [::1]:{srv.http_port} default_server;\n"
            f"    listen [::]:{srv.http_port} ipv6only=on;\n"
            "    server_name v6.test;\n    root /tmp;\n}\n"
        )
        (srv.root / "sites-enabled" / "v6site").symlink_to(site)
        plan, text = _plan(srv, "v6.test")
        p, hp = srv.http_port, srv.https_port
        assert plan.https_listens == (f"[::1]:{hp}", f"[::]:{hp}")
        assert _lines(text, "listen") == [
            f"listen [::1]:{p} default_server;",
            f"listen [::]:{p} ipv6only=on;",
            f"listen [::1]:{hp} ssl;",
            f"listen [::]:{hp} ssl ipv6only=on;",
        ]
    finally:
        srv.close()


def test_apache_vhost_on_ipv6_loopback_only_stays_there() -> None:
    srv = Apache(stock_listen=True)
    try:
        p, hp = srv.http_port, srv.https_port
        ports = srv.root / "ports.conf"
        ports.write_text(ports.read_text().replace(f"Listen {p}\n", f"Listen [::1]:{p}\n"))
        site = srv.root / "sites-available" / "v6site.conf"
        site.write_text(
            f"<VirtualHost [::1]:{p}>\n    ServerName v6.test\n"
            "    DocumentRoot /tmp\n</VirtualHost>\n"
        )
        (srv.root / "sites-enabled" / "v6site.conf").symlink_to(site)
        plan, text = _plan(srv, "v6.test")
        assert _lines(text, "Listen") == [f"Listen [::1]:{hp} https"]
        assert _lines(text, "<VirtualHost") == [
            f"<VirtualHost [::1]:{p}>",
            f"<VirtualHost [::1]:{hp}>",
        ]
        assert plan.http_listens == (f"[::1]:{p}",)
    finally:
        srv.close()


@pytest.mark.parametrize("kind", ["nginx", "apache", "lighttpd"])
def test_listen_address_override_on_the_stock_tree(kind: str) -> None:
    srv = SERVERS[kind](stock_listen=True)
    try:
        plan, _text = _plan(
            srv, "render.test", listen_addresses=parse_addresses(["127.0.0.1", "::1"])
        )
        assert plan.https_listens == (f"127.0.0.1:{srv.https_port}", f"[::1]:{srv.https_port}")
    finally:
        srv.close()


def test_listen_address_values() -> None:
    assert parse_addresses(["127.0.0.1,::1", "[::1]", " 10.0.0.1 "]) == (
        "127.0.0.1",
        "::1",
        "10.0.0.1",
    )
    assert [
        parse_hostport(t, 80)
        for t in (
            "80",
            "127.0.0.1",
            "127.0.0.1:8080",
            "[::1]",
            "[::]:443",
            "*:80",
            ":443",
            "localhost:81",
            "unix:/run/x.sock",
            "/run/x.sock",
            "[::1]x",
        )
    ] == [
        ("", 80),
        ("127.0.0.1", 80),
        ("127.0.0.1", 8080),
        ("::1", 80),
        ("::", 443),
        ("*", 80),
        ("", 443),
        ("localhost", 81),
        None,
        None,
        None,
    ]
    assert hostport("", 80) == "80" and hostport("::1", 443) == "[::1]:443"
    # a second socket beside a wildcard one of its family cannot be bound
    assert covered("127.0.0.1", ["0.0.0.0"]) and not covered("::1", ["0.0.0.0"])
    assert covered("::1", [""]) and not covered("127.0.0.1", ["::1"])
    assert conflicts("", ["127.0.0.1"]) and not conflicts("::", ["127.0.0.1"])


@pytest.mark.parametrize("value", ["localhost", "127.0.0.1:80", "", "1.2.3"])
def test_bad_listen_address_is_one_line(value: str, run_certsmith: RunCertsmith) -> None:
    got = run_certsmith("install", "nginx", "x.test", "--listen-address", value)
    assert got.returncode == 2
    assert got.stderr.startswith("certsmith: --listen-address") and "Traceback" not in got.stderr
    assert len(got.stderr.strip().splitlines()) == 1
