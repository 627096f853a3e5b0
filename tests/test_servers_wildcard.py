"""The installers' plans for a wildcard dns-01 lineage (``*.example.org`` and
``example.org``), pure: each server matches the wildcard as it should (nginx server_name,
Apache ServerAlias, a lighttpd host regex of one label with escaped dots) and no HTTP-01
challenge mapping is written (a dns-01 lineage needs none). The servers' own validators check
the same plans in test_servers_render.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from certsmith.services.servers import installer_for
from certsmith.services.servers.apache import server_names
from certsmith.services.servers.base import Detected, Plan, SiteOptions
from certsmith.services.servers.lighttpd import host_regex

NAMES = ("*.example.org", "example.org")


def plan_for(kind: str, root: Path, challenge_dir: str = "", **options: object) -> Plan:
    for d in ("sites-available", "sites-enabled", "conf-available", "conf-enabled"):
        (root / d).mkdir(parents=True, exist_ok=True)
    env = {
        f"CERTSMITH_{kind.upper()}_ROOT": str(root),
        f"CERTSMITH_{kind.upper()}_CMD": "true",
        f"CERTSMITH_{kind.upper()}_RELOAD": "true",
    }
    installer = installer_for(kind, env)
    opts = SiteOptions(
        name="example.org",
        names=NAMES,
        live_dir="/srv/live/example.org",
        http_port=8080,
        https_port=8443,
        listen_addresses=("127.0.0.1",),
        challenge_dir=challenge_dir,
        **options,
    )  # type: ignore[arg-type]
    return installer.plan(Detected(version="1.4.69"), opts)


def text_of(plan: Plan) -> str:
    return "\n".join(c.data.decode() for c in plan.changes if c.data)


@pytest.mark.parametrize("kind", ["nginx", "apache", "lighttpd"])
def test_a_dns01_lineage_gets_no_challenge_mapping(kind: str, tmp_path: Path) -> None:
    plan = plan_for(kind, tmp_path / kind, redirect=308)
    assert plan.changes
    assert not [c.path for c in plan.changes if "acme" in Path(c.path).name]
    text = text_of(plan)
    assert "/srv/live/example.org" in text or plan.deploy_files  # the certificate is served
    assert "challenge directory" not in text and "alias.url" not in text
    assert "location ^~ /.well-known/acme-challenge/" not in text
    # an HTTP-01 lineage still gets it
    http01 = plan_for(kind, tmp_path / f"{kind}-http01", challenge_dir="/var/lib/certsmith/http-01")
    assert "/var/lib/certsmith/http-01" in text_of(http01)


def test_nginx_serves_the_wildcard_and_its_base(tmp_path: Path) -> None:
    text = text_of(plan_for("nginx", tmp_path, redirect=301))
    assert text.count("    server_name *.example.org example.org;") == 2  # HTTP and HTTPS
    assert "return 301 https://$host:8443$request_uri;" in text


def test_apache_puts_the_wildcard_in_server_alias(tmp_path: Path) -> None:
    text = text_of(plan_for("apache", tmp_path, redirect=308))
    assert text.count("    ServerName example.org\n    ServerAlias *.example.org\n") == 2
    assert "ServerName *" not in text
    assert server_names(("example.org", "*.example.org")) == ("example.org", ("*.example.org",))
    assert server_names(("*.a.test", "*.b.test")) == ("*.a.test", ("*.a.test", "*.b.test"))
    assert server_names(("a.test", "www.a.test")) == ("a.test", ("www.a.test",))


def test_lighttpd_redirects_one_label_under_the_wildcard(tmp_path: Path) -> None:
    text = text_of(plan_for("lighttpd", tmp_path, redirect=308))
    assert r'$HTTP["host"] =~ "^([^.:]+\.example\.org)(:[0-9]+)?$" {' in text
    assert r'$HTTP["host"] =~ "^(example\.org)(:[0-9]+)?$" {' in text
    assert 'url.redirect = ("" => "https://%1:8443${url.path}${qsa}")' in text
    assert "*" not in "".join(ln for ln in text.splitlines() if "url.redirect" in ln)
    wild = re.compile(host_regex("*.example.org"))
    for host, label in (
        ("a.example.org", "a.example.org"),
        ("www.example.org:8080", "www.example.org"),
    ):
        m = wild.search(host)
        assert m is not None and m.group(1) == label
    for host in (
        "example.org",
        "a.b.example.org",
        "aexample.org",
        "a.example.org.evil",
        "a.example.orgx",
        ".example.org",
    ):
        assert wild.search(host) is None, host
    apex = re.compile(host_regex("example.org"))
    assert apex.search("example.org:80") and not apex.search("exampleXorg")
