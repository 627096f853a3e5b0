"""HSTS on every response of an installed site, also under the user's own header settings.

nginx: a block with an ``add_header`` of its own inherits none of the server's
(gixy: add_header_redefinition), so a carried-over ``location`` (or ``if``) with its own headers
would drop certsmith's server-level ``Strict-Transport-Security``. Apache: a ``<Location>`` with
``Header set`` (mod_headers merges). lighttpd: a conditional with its own
``setenv.add-response-header`` (lighttpd replaces a key set in a later matching condition).
Each is judged by curl over HTTPS, for a page, a nested block and an error response (404),
together with the user's own headers, which must survive too."""

from __future__ import annotations

import pytest

from certsmith.services.servers.base import Block, Detected, SiteOptions
from certsmith.services.servers.nginx import render_site
from tests.conftest import RunCertsmith
from tests.support.pebble import Pebble
from tests.support.webservers import WebServer
from tests.test_servers_e2e import Factory, Site
from tests.test_servers_listen import reload_until

HSTS = "strict-transport-security: max-age=63072000"


@pytest.fixture
def server(webserver: Factory) -> Factory:
    """``server(kind)``: conftest's ``webserver`` (started, on Pebble's http-01 port)."""
    return webserver


def _pages(srv: WebServer) -> None:
    for rel in ("docs/page.html", "docs/deep/page.html", "snip/page.html", "plain/page.html"):
        path = srv.docroot / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o755)
        path.write_text(f"{rel}\n")
        path.chmod(0o644)


def _nginx_site(srv: WebServer, name: str) -> None:
    snippet = srv.root / "snippets" / "user-headers.conf"
    snippet.write_text("add_header X-Snip snip;\n")
    site = srv.root / "sites-available" / "user-site"
    site.write_text(
        "server {\n"
        f"    listen 127.0.0.1:{srv.http_port};\n"
        f"    server_name {name};\n"
        f"    root {srv.docroot};\n"
        "    add_header X-Site site;\n"
        "    location /docs/ {\n"
        "        add_header X-Docs docs;\n"
        "        if ($arg_flag) {\n"
        "            add_header X-Flag flag;\n"
        "        }\n"
        "        location /docs/deep/ {\n"
        "            add_header X-Deep deep always;\n"
        "        }\n"
        "    }\n"
        f"    location /snip/ {{\n        include {snippet};\n    }}\n"
        "    location /plain/ {\n    }\n"
        "}\n"
    )
    (srv.root / "sites-enabled" / "user-site").symlink_to(site)


def _apache_site(srv: WebServer, name: str) -> None:
    site = srv.root / "sites-available" / "user-site.conf"
    site.write_text(
        f"<VirtualHost *:{srv.http_port}>\n"
        f"    ServerName {name}\n"
        f"    DocumentRoot {srv.docroot}\n"
        "    Header always set X-Site site\n"
        "    <Location /docs/>\n"
        "        Header set X-Docs docs\n"
        "    </Location>\n"
        "    <Location /docs/deep/>\n"
        "        Header always set X-Deep deep\n"
        "    </Location>\n"
        "    <Directory " + str(srv.docroot / "snip") + ">\n"
        "        Header set X-Snip snip\n"
        "    </Directory>\n"
        "</VirtualHost>\n"
    )
    (srv.root / "sites-enabled" / "user-site.conf").symlink_to(site)
    (srv.root / "mods-enabled" / "headers.load").symlink_to(
        srv.root / "mods-available" / "headers.load"
    )


def _lighttpd_site(srv: WebServer, name: str, where: str) -> None:
    (srv.root / "conf-enabled" / f"{where}-user-headers.conf").write_text(
        'server.modules += ("mod_setenv")\n'
        f'$HTTP["host"] == "{name}" {{\n'
        '    setenv.add-response-header = ("X-Site" => "site")\n'
        '    $HTTP["url"] =~ "^/docs/" {\n'
        '        setenv.add-response-header = ("X-Docs" => "docs")\n'
        '        $HTTP["url"] =~ "^/docs/deep/" {\n'
        '            setenv.add-response-header = ("X-Deep" => "deep")\n'
        "        }\n"
        "    }\n"
        '    $HTTP["url"] =~ "^/snip/" {\n'
        '        setenv.add-response-header += ("X-Snip" => "snip")\n'
        "    }\n"
        "}\n"
    )


def _headers(s: Site, path: str) -> tuple[str, str]:
    got = s.curl(path)
    assert got.returncode == 0, got.stderr
    head = got.stdout.split("\r\n\r\n", 1)[0].split("\n\n", 1)[0]
    return head.split("\n", 1)[0], head.lower()


CASES = [  # path, status, the user's header that must be there too
    ("/", "200", "x-site: site"),
    ("/docs/page.html", "200", "x-docs: docs"),
    ("/docs/missing.html", "404", ""),
    ("/docs/deep/page.html", "200", "x-deep: deep"),
    ("/docs/deep/missing.html", "404", "x-deep: deep"),
    ("/snip/page.html", "200", "x-snip: snip"),
    ("/plain/page.html", "200", "x-site: site"),
    ("/plain/missing.html", "404", ""),
]


@pytest.mark.parametrize("kind", ["nginx", "apache", "lighttpd-before", "lighttpd-after"])
def test_hsts_on_every_response_under_the_users_header_blocks(
    kind: str, server: Factory, pebble: Pebble, run_certsmith: RunCertsmith
) -> None:
    srv = server(kind.split("-")[0])
    name = f"hsts.{srv.kind}.test"
    _pages(srv)
    if srv.kind == "nginx":
        _nginx_site(srv, name)
    elif srv.kind == "apache":
        _apache_site(srv, name)
    else:  # the user's conditionals before certsmith's 98-certsmith-NAME.conf, or after it
        _lighttpd_site(srv, name, "50" if kind.endswith("before") else "99")
    reload_until(srv, name, "x-site: site")
    cases = list(CASES)
    if srv.kind == "nginx":
        cases.append(("/docs/page.html?flag=1", "200", "x-flag: flag"))
    s = Site(srv, pebble, run_certsmith, name)
    s.get()
    s.install("--redirect", "308", "--hsts")
    s.wait_https()  # (the HTTPS port is new: once it answers, the new configuration does)
    for path, status, header in cases:
        first, head = _headers(s, path)
        assert status in first, (path, first)
        assert HSTS in head, (path, head)
        assert header in head, (path, head)


def test_nginx_repeats_hsts_only_in_the_https_server() -> None:
    """The HTTP server carries the same blocks without HSTS (browsers ignore it there); with
    no --hsts neither server gets it; never a leftover marker (nginx -t would refuse it)."""
    body = "    location /docs/ {\n        certsmith_hsts;\n        add_header X-Docs docs;\n    }"
    detected = Detected(
        blocks=(Block("/x/sites-enabled/site", 1, ("a.test",), (80,), body=body, listens=("80",)),)
    )
    for hsts in (None, 600):
        opts = SiteOptions(name="a.test", names=("a.test",), live_dir="/live", hsts=hsts)
        text = render_site(opts, detected, "1.22.1")
        assert "certsmith_hsts" not in text
        http, https = text.split("server {")[1:]
        assert "Strict-Transport-Security" not in http
        repeated = (
            '        add_header Strict-Transport-Security "max-age=600" always;\n'
            "        add_header X-Docs docs;"
        )
        assert (repeated in https) == bool(hsts)
