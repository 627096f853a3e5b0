"""What `get --SERVER` and `install` tell a user about the web server, through the real CLI
against real servers and Pebble: every server file certsmith changed, what to run first, and why
a --webroot next to certsmith's own challenge mapping could not work."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunCertsmith
from tests.support.net import LOOPBACK, free_port
from tests.support.pebble import Pebble
from tests.support.webservers import Lighttpd, Nginx, WebServer


@pytest.fixture
def lighttpd(pebble: Pebble) -> Iterator[WebServer]:
    srv = Lighttpd(http_port=pebble.http_port, https_port=free_port())
    try:
        yield srv.start()
    finally:
        srv.close()


@pytest.fixture
def nginx(pebble: Pebble) -> Iterator[WebServer]:
    srv = Nginx(http_port=pebble.http_port, https_port=free_port())
    try:
        yield srv.start()
    finally:
        srv.close()


def cs(run: RunCertsmith, srv: WebServer, *args: Any) -> subprocess.CompletedProcess[str]:
    return run(*args, env=srv.certsmith_env(), home=srv.workdir / "certsmith")


def get_through(
    run: RunCertsmith, srv: WebServer, pebble: Pebble, name: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    got = cs(
        run,
        srv,
        "get",
        name,
        f"--{srv.kind}",
        "--http-port",
        srv.http_port,
        "--http-address",
        LOOPBACK,
        "--server",
        pebble.directory,
        "--agree-tos",
        *extra,
    )
    assert got.returncode == 0, got.stdout + got.stderr
    return got


def changed_paths(stdout: str) -> list[str]:
    """The paths on the indented 'wrote/linked/moved/copied' lines."""
    out = []
    for line in stdout.splitlines():
        words = line.split()
        if line.startswith("  ") and words and words[0] in ("wrote", "linked", "moved"):
            out.append(words[1])
        elif line.startswith("  ") and words[:1] == ["copied"]:
            out.append(words[3])
    return out


@pytest.mark.parametrize("kind", ["lighttpd", "nginx"])
def test_get_and_install_print_the_server_files_they_change(
    kind: str, request: pytest.FixtureRequest, pebble: Pebble, run_certsmith: RunCertsmith
) -> None:
    srv: WebServer = request.getfixturevalue(kind)
    before = set(srv.tree())
    got = get_through(run_certsmith, srv, pebble, f"files-{kind}.test")
    assert f"files-{kind}.test: {kind} answers HTTP-01 from " in got.stdout
    listed = changed_paths(got.stdout)
    added = {str(srv.root / rel) for rel in set(srv.tree()) - before}
    assert listed and set(listed) == added, (got.stdout, added)
    assert f"files-{kind}.test: issued" in got.stdout

    inst = cs(
        run_certsmith,
        srv,
        "install",
        kind,
        f"files-{kind}.test",
        "--http-port",
        srv.http_port,
        "--https-port",
        srv.https_port,
        "--listen-address",
        LOOPBACK,
    )
    assert inst.returncode == 0, inst.stdout + inst.stderr
    after_get = set(srv.tree())
    for path in changed_paths(inst.stdout):
        assert Path(path).exists() or Path(path).is_symlink(), path
    added = {
        str(srv.root / rel) for rel in set(srv.tree()) - after_get if not (srv.root / rel).is_dir()
    }
    assert added <= set(changed_paths(inst.stdout)), (inst.stdout, added)
    assert (
        f"certsmith-files-{kind}.test" in inst.stdout or f"files-{kind}.test.conf" in inst.stdout
    ), inst.stdout


def test_webroot_behind_certsmiths_lighttpd_alias_is_refused_before_ordering(
    lighttpd: WebServer, pebble: Pebble, run_certsmith: RunCertsmith, tmp_path: Path
) -> None:
    """After get --lighttpd, lighttpd sends /.well-known/acme-challenge/ to certsmith's own
    directory for every host: a --webroot order would answer 404 at the CA. Say why, before
    anything is ordered."""
    got = get_through(run_certsmith, lighttpd, pebble, "alias.test", "--json")
    assert json.loads(got.stdout)[0]["action"] == "issued"  # --json: nothing else on stdout
    orders = pebble.count_orders()
    refused = cs(
        run_certsmith,
        lighttpd,
        "get",
        "other.test",
        "--webroot",
        lighttpd.docroot,
        "--server",
        pebble.directory,
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    [line] = refused.stderr.splitlines()
    assert line.startswith(
        "certsmith: lighttpd serves /.well-known/acme-challenge/ from certsmith's own directory"
    ), line
    assert "would answer 404" in line and "--lighttpd instead of --webroot" in line
    assert "certsmith uninstall lighttpd alias.test" in line
    assert pebble.count_orders() == orders
    # Once certsmith's mapping is gone, the webroot works again.
    assert cs(run_certsmith, lighttpd, "uninstall", "lighttpd", "alias.test").returncode == 0
    ok = cs(
        run_certsmith,
        lighttpd,
        "get",
        "other.test",
        "--webroot",
        lighttpd.docroot,
        "--server",
        pebble.directory,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr


@pytest.mark.parametrize("kind", ["nginx", "apache", "lighttpd"])
def test_install_before_get_says_to_run_get_first(kind: str, run_certsmith: RunCertsmith) -> None:
    result = run_certsmith("install", kind, "app.example.org")
    assert result.returncode != 0
    [line] = result.stderr.splitlines()
    assert line == (
        f"certsmith: no certificate named 'app.example.org' yet: run 'certsmith get "
        f"app.example.org --{kind}' first (it answers the CA through the running "
        f"{kind}), then install"
    )
