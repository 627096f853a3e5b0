"""The TLS a site installed by certsmith serves from the real nginx, Apache and lighttpd
(Debian's packages, stock trees, loopback ports), as outside tools judge it: sslyze's Mozilla
"intermediate" check, the client's cipher order, and TLS session resumption (openssl s_client
``-sess_out`` then ``-sess_in``) in TLS 1.2 and 1.3.

Mozilla "intermediate" allows certificates of at most 366 days, so these sites get theirs from
a Pebble of their own issuing 90-day certificates."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import _certsmith_env
from tests.support.net import LOOPBACK, free_port, wait_until
from tests.support.pebble import Pebble
from tests.support.sslyze import mozilla_intermediate
from tests.support.tlsprobe import handshake, resumes
from tests.support.webservers import Apache, Lighttpd, Nginx, WebServer

SERVERS: dict[str, type[WebServer]] = {"nginx": Nginx, "apache": Apache, "lighttpd": Lighttpd}
NINETY_DAYS = 90 * 86400


@dataclass
class Installed:
    srv: WebServer
    name: str
    root: Path  # Pebble's root, what clients trust
    workdir: Path

    @property
    def port(self) -> int:
        return self.srv.https_port


@pytest.fixture(scope="module")
def pebble90(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    with Pebble(tmp_path_factory.mktemp("pebble90"), validity=NINETY_DAYS) as server:
        yield server


@pytest.fixture(scope="module", params=list(SERVERS))
def installed(
    request: pytest.FixtureRequest, pebble90: Pebble, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installed]:
    """``certsmith get --SERVER`` then ``install SERVER`` for one name, as a user would."""
    kind = request.param
    with SERVERS[kind](http_port=pebble90.http_port, https_port=free_port()) as srv:
        name = f"tls-{kind}.test"
        env = _certsmith_env(srv.workdir / "certsmith", pebble90, srv.certsmith_env())

        def cs(*args: object) -> None:
            got = subprocess.run(
                [sys.executable, "-m", "certsmith", *map(str, args)],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert got.returncode == 0, got.stdout + got.stderr

        cs(
            "get",
            name,
            f"--{kind}",
            "--http-port",
            srv.http_port,
            "--http-address",
            LOOPBACK,
            "--server",
            pebble90.directory,
            "--agree-tos",
        )
        cs(
            "install",
            kind,
            name,
            "--http-port",
            srv.http_port,
            "--https-port",
            srv.https_port,
            "--listen-address",
            LOOPBACK,
            "--redirect",
            "308",
            "--hsts",
        )
        root = srv.workdir / "pebble-root.pem"
        root.write_text(pebble90.root_pem())
        site = Installed(srv, name, root, tmp_path_factory.mktemp(f"tls-{kind}"))
        wait_until(
            lambda: handshake(site.port, name, ca_file=root).ok,
            what=f"{kind} serving {name} over HTTPS",
        )
        yield site


def test_sslyze_finds_the_install_mozilla_intermediate_compliant(installed: Installed) -> None:
    verdict = mozilla_intermediate(installed.name, installed.port, installed.root)
    assert verdict.issues == {}, verdict
    assert verdict.compliant, verdict


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_the_install_resumes_tls_sessions(installed: Installed, version: str) -> None:
    first, second = resumes(
        installed.port, installed.name, version, installed.workdir, ca_file=installed.root
    )
    assert first.ok and not first.reused, first
    assert second.ok and second.reused, second


@pytest.mark.parametrize(
    ("version", "option", "first", "second"),
    [
        ("-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES256-GCM-SHA384"),
        ("-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"),
    ],
)
def test_the_install_follows_the_clients_cipher_order(
    installed: Installed, version: str, option: str, first: str, second: str
) -> None:
    for order in ((first, second), (second, first)):
        got = handshake(
            installed.port, installed.name, version, option, ":".join(order), ca_file=installed.root
        )
        assert got.ok and got.cipher == order[0], got
