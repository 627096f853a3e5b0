"""The config renderers, checked by the servers' own validators (nginx -t, apache2ctl
configtest, lighttpd -tt) in a copy of Debian's stock tree, for every combination of options;
plus the pure helpers."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certsmith.services.servers import installer_for
from certsmith.services.servers.base import Plan, SiteOptions, Transaction
from certsmith.services.servers.nginx import _port, name_matches
from tests.support.webservers import Apache, Lighttpd, Nginx, WebServer

SERVERS: dict[str, type[WebServer]] = {"nginx": Nginx, "apache": Apache, "lighttpd": Lighttpd}

COMBOS = {
    "challenge-only": {"tls": False},
    "tls-plain": {},
    "redirect-hsts-proxy": {"redirect": 308, "hsts": 600, "proxy_to": "http://127.0.0.1:8080"},
    "redirect301-ocsp": {"redirect": 301, "ocsp": True},
    "old-lighttpd-combined-pem": {"hsts": 63072000},
}


def _live(directory: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "render.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("render.test")]), False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (directory / "cert.pem").write_bytes(pem)
    (directory / "chain.pem").write_bytes(pem)
    (directory / "fullchain.pem").write_bytes(pem)
    (directory / "privkey.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return directory


@pytest.mark.parametrize(
    ("kind", "combo"),
    [
        (kind, combo)
        for kind in SERVERS
        for combo in COMBOS
        if combo != "old-lighttpd-combined-pem" or kind == "lighttpd"
    ],  # a lighttpd-only case
)
def test_rendered_site_passes_the_servers_own_check(kind: str, combo: str) -> None:
    srv = SERVERS[kind]()
    try:
        env = {
            **srv.certsmith_env(),
            f"CERTSMITH_{kind.upper()}_RELOAD": "true",
            f"CERTSMITH_{kind.upper()}_RESTART": "true",
        }
        installer = installer_for(kind, env)
        live = _live(srv.workdir / "live" / "render.test")
        detected = installer.detect(
            ["render.test", "www.render.test"], srv.http_port, srv.https_port
        )
        if combo == "old-lighttpd-combined-pem":
            detected = dataclasses.replace(detected, version="1.4.52")
        opts = SiteOptions(
            name="render.test",
            names=("render.test", "www.render.test"),
            live_dir=str(live),
            http_port=srv.http_port,
            https_port=srv.https_port,
            listen_addresses=("127.0.0.1",),
            challenge_dir=str(srv.workdir / "challenge"),
            server_group="www-data",
            **COMBOS[combo],
        )  # type: ignore[arg-type]
        plan = installer.plan(detected, opts)
        assert plan.changes
        for change in plan.changes:
            assert "certsmith" in Path(change.path).name  # only files certsmith owns
        if kind == "lighttpd" and opts.tls:
            parts = sorted(t.part for t in plan.deploy_files)
            assert parts == (
                ["combined"] if combo == "old-lighttpd-combined-pem" else ["fullchain", "key"]
            )
            for target in plan.deploy_files:
                Path(target.path).parent.mkdir(parents=True, exist_ok=True)
                data = (live / "fullchain.pem").read_bytes()
                if target.part != "fullchain":
                    data = (
                        data + (live / "privkey.pem").read_bytes()
                        if target.part == "combined"
                        else (live / "privkey.pem").read_bytes()
                    )
                Path(target.path).write_bytes(data)
        text = "\n".join(c.data.decode() for c in plan.changes if c.data)
        if opts.tls:
            assert "TLSv1.2" in text
            assert ("Strict-Transport-Security" in text) == bool(opts.hsts)
            stapling = "stapling" in text.lower()
            assert stapling == (opts.ocsp and kind != "lighttpd")
        # The real validator accepts it (Transaction runs it; "reload" is `true` here).
        Transaction(installer).apply(Plan(plan.changes))
        installer.check()
    finally:
        srv.close()


def test_invalid_rendering_is_rolled_back_byte_for_byte() -> None:
    srv = Nginx()
    try:
        env = {**srv.certsmith_env(), "CERTSMITH_NGINX_RELOAD": "true"}
        installer = installer_for("nginx", env)
        before = srv.tree()
        detected = installer.detect(["x.test"], srv.http_port, srv.https_port)
        opts = SiteOptions(
            name="x.test",
            names=("x.test",),
            live_dir="/nonexistent",
            http_port=srv.http_port,
            https_port=srv.https_port,
            challenge_dir="/tmp",
        )
        from certsmith.services.servers.base import ServerError

        with pytest.raises(ServerError, match=r"nginx -t fails.*restored"):
            Transaction(installer).apply(installer.plan(detected, opts))
        assert srv.tree() == before
    finally:
        srv.close()


def test_nginx_name_and_port_helpers() -> None:
    assert name_matches("*.example.org", "www.example.org")
    assert not name_matches("*.example.org", "example.org")
    assert name_matches(".example.org", "example.org")
    assert name_matches("www.example.*", "www.example.net")
    assert not name_matches("~^www\\d+", "www1.example.org")
    assert name_matches("Example.ORG", "example.org")
    assert _port(["127.0.0.1:8080"]) == 8080
    assert _port(["[::]:443", "ssl"]) == 443
    assert _port(["80"]) == 80
    assert _port(["localhost"]) == 80
    assert _port(["unix:/run/x.sock"]) is None


@pytest.mark.parametrize("kind", list(SERVERS))
def test_wildcard_dns01_site_passes_the_servers_own_check(kind: str) -> None:
    """A wildcard lineage proven by dns-01: its names as the server matches them and no
    challenge mapping (test_servers_wildcard.py checks the text)."""
    srv = SERVERS[kind]()
    try:
        env = {
            **srv.certsmith_env(),
            f"CERTSMITH_{kind.upper()}_RELOAD": "true",
            f"CERTSMITH_{kind.upper()}_RESTART": "true",
        }
        installer = installer_for(kind, env)
        live = _live(srv.workdir / "live" / "wild.render.test")
        names = ("*.wild.render.test", "wild.render.test")
        detected = installer.detect(list(names), srv.http_port, srv.https_port)
        opts = SiteOptions(
            name="wild.render.test",
            names=names,
            live_dir=str(live),
            http_port=srv.http_port,
            https_port=srv.https_port,
            listen_addresses=("127.0.0.1",),
            redirect=308,
            hsts=600,
            server_group="www-data",
        )
        plan = installer.plan(detected, opts)
        assert not [c.path for c in plan.changes if "acme" in Path(c.path).name]
        for target in plan.deploy_files:
            Path(target.path).parent.mkdir(parents=True, exist_ok=True)
            Path(target.path).write_bytes(
                (
                    live / ("fullchain.pem" if target.part == "fullchain" else "privkey.pem")
                ).read_bytes()
            )
        Transaction(installer).apply(Plan(plan.changes))
        installer.check()
    finally:
        srv.close()
