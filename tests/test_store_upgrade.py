"""A state directory of layout 1 (what certsmith wrote before the ``format`` file: the proxy's
HTTP-01 answers in ``challenges/http``, recorded as the webroot of its site files) is upgraded in
place on first use and renews: ``certsmith renew`` from a timer, through a running proxy,
against a real Pebble.

The layout-1 directory is made here from a real one: a proxy lineage issued by Pebble, then
turned back into layout 1 exactly as the previous certsmith left it (no ``format``, the old
webroot in the site file and on disk)."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import tomllib
from pathlib import Path

from cryptography import x509

from certsmith.base.store import open_store
from tests.support.net import wait_until
from tests.support.pebble import Pebble
from tests.support.proxy import Proxy, UpstreamApp, served_certificate

NAME = "upgrade.example.com"
REPO = Path(__file__).parents[1]


def served(port: int, root: Path) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(served_certificate(port, NAME, root))
    except (OSError, ssl.SSLError):
        return None


def to_layout_1(home: Path) -> None:
    site_file = home / "sites" / f"{NAME}.toml"
    text = site_file.read_text()
    new, old = str(home / "http-01"), str(home / "challenges" / "http")
    assert json.dumps(new) in text
    site_file.write_text(text.replace(json.dumps(new), json.dumps(old)))
    (home / "challenges").mkdir(exist_ok=True)
    shutil.move(home / "http-01", old)
    (home / "format").unlink()


def test_layout_1_is_upgraded_in_place_and_renews(pebble: Pebble, tmp_path: Path) -> None:
    root = pebble.write_root(tmp_path / "pebble-root.pem")
    env = {"REQUESTS_CA_BUNDLE": str(pebble.ca_bundle)}
    home = tmp_path / "home"
    args = [NAME, "--server", pebble.directory, "--agree-tos", "--workers", "1"]
    with UpstreamApp(tmp_path).start() as app:
        with Proxy(
            home,
            [*args, "--to", app.address],
            http_port=pebble.http_port,
            https_port=pebble.tls_port,
            env=env,
        ) as proxy:
            first = wait_until(
                lambda: served(proxy.https_port, root),
                what="the first certificate",
                timeout=60,
                proc=proxy.proc,
                log=proxy.logs,
            )
        to_layout_1(home)
        # The previous certsmith's store reads as layout 1 until something opens it.
        assert not (home / "format").exists()

        with Proxy(
            home,
            [*args, "--to", app.address],
            http_port=pebble.http_port,
            https_port=pebble.tls_port,
            env=env,
        ) as proxy:
            assert (home / "format").read_text() == "2\n"
            site = tomllib.loads((home / "sites" / f"{NAME}.toml").read_text())
            assert site["solver"]["webroot"] == str(home / "http-01")
            renew = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "certsmith",
                    "--home",
                    str(home),
                    "renew",
                    "--force",
                    "--json",
                    NAME,
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                env={**os.environ, **env, "PYTHONPATH": str(REPO / "src")},
            )
            assert renew.returncode == 0, renew.stderr + proxy.logs()
            assert json.loads(renew.stdout)[0]["action"] == "renewed"
            second = wait_until(
                lambda: (
                    c
                    if (c := served(proxy.https_port, root)) is not None
                    and c.serial_number != first.serial_number
                    else None
                ),
                what="the renewed certificate",
                timeout=30,
                proc=proxy.proc,
                log=proxy.logs,
            )
            assert second.serial_number != first.serial_number


def test_an_unknown_newer_layout_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "format").write_text("99\n")
    got = subprocess.run(
        [sys.executable, "-m", "certsmith", "--home", str(home), "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert got.returncode != 0
    assert got.stderr == (
        f"certsmith: {home} was written by a newer certsmith (layout 99; "
        "this one knows 2): upgrade certsmith\n"
    )


def test_a_new_state_directory_starts_at_the_current_layout(tmp_path: Path) -> None:
    store = open_store(tmp_path / "home")
    store.put("sites/x.toml", b"")
    assert (tmp_path / "home" / "format").read_text() == "2\n"
