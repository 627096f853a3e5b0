"""certbot's --staple-ocsp (seed 001) through the real CLI against Pebble and nginx: accepted
by get and install, which say what certsmith does: it staples only when the certificate names
an OCSP responder, and Let's Encrypt's (like Pebble's by default) name none."""

from __future__ import annotations

import subprocess

from tests.conftest import PebbleFactory, RunCertsmith
from tests.support.net import LOOPBACK, free_port
from tests.support.pebble import Pebble
from tests.support.webservers import Nginx

NO_RESPONDER = (
    "--staple-ocsp: nothing to staple, the certificate names no OCSP responder "
    "(Let's Encrypt's no longer do); certsmith staples only when one is named"
)


def get(run: RunCertsmith, pebble: Pebble, name: str) -> subprocess.CompletedProcess[str]:
    return run(
        "get",
        name,
        "--standalone",
        "--http-port",
        pebble.http_port,
        "--server",
        pebble.directory,
        "--agree-tos",
        "--staple-ocsp",
        server=pebble,
    )


def test_get_accepts_staple_ocsp_and_says_nothing_is_stapled(
    run_certsmith: RunCertsmith, pebble: Pebble
) -> None:
    got = get(run_certsmith, pebble, "plain.example.org")
    assert got.returncode == 0, got.stderr
    assert "plain.example.org: issued" in got.stdout
    assert f"plain.example.org: {NO_RESPONDER}" in got.stdout.splitlines()


def test_get_staple_ocsp_with_a_ca_that_names_a_responder(
    run_certsmith: RunCertsmith, pebble_factory: PebbleFactory
) -> None:
    ca = pebble_factory(ocsp_url=f"http://{LOOPBACK}:{free_port()}/ocsp")
    got = get(run_certsmith, ca, "ocsp.example.org")
    assert got.returncode == 0, got.stderr
    assert (
        "ocsp.example.org: --staple-ocsp: the certificate names an OCSP responder; "
        "'certsmith install' staples its answers"
    ) in got.stdout


def test_install_accepts_staple_ocsp(run_certsmith: RunCertsmith, pebble: Pebble) -> None:
    srv = Nginx(http_port=pebble.http_port, https_port=free_port()).start()
    try:
        home = srv.workdir / "certsmith"
        env = srv.certsmith_env()
        got = run_certsmith(
            "get",
            "seed001.test",
            "--nginx",
            "--http-port",
            srv.http_port,
            "--http-address",
            LOOPBACK,
            "--server",
            pebble.directory,
            "--agree-tos",
            env=env,
            home=home,
        )
        assert got.returncode == 0, got.stderr
        options = (
            "--http-port",
            srv.http_port,
            "--https-port",
            srv.https_port,
            "--listen-address",
            LOOPBACK,
            "--staple-ocsp",
        )
        dry = run_certsmith(
            "install", "nginx", "seed001.test", *options, "--dry-run", env=env, home=home
        )
        assert dry.returncode == 0, dry.stderr
        assert "ssl_stapling" not in dry.stdout
        inst = run_certsmith("install", "nginx", "seed001.test", *options, env=env, home=home)
        assert inst.returncode == 0, inst.stderr
        assert f"  note: seed001.test: {NO_RESPONDER}" in inst.stdout.splitlines()
    finally:
        srv.close()
