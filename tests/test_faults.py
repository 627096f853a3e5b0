"""Faults: a CA rejecting nonces, a CA that goes away, SIGKILL at every step, two processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import PebbleFactory, RunCertsmith, _certsmith_env
from tests.support.pebble import Pebble

FAST = {"retry_after_authz": 0, "retry_after_order": 0}


def live_is_consistent(home: Path, name: str) -> bool:
    """The live set is complete and its key matches its certificate (or there is none yet)."""
    live = home / "live" / name
    if not os.path.lexists(live):
        return True
    cert = x509.load_pem_x509_certificate((live / "cert.pem").read_bytes())
    key = serialization.load_pem_private_key((live / "privkey.pem").read_bytes(), None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    assert (live / "fullchain.pem").read_bytes().startswith((live / "cert.pem").read_bytes())
    assert (live / "chain.pem").read_bytes()
    return bool(
        cert.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)
    )


def account_keys(home: Path) -> dict[str, bytes]:
    out = {}
    for path in (home / "accounts").rglob("key.pem"):
        data = path.read_bytes()
        serialization.load_pem_private_key(data, None)  # whole and readable
        out[str(path)] = data
    return out


def test_half_the_nonces_rejected(
    pebble_factory: PebbleFactory, run_certsmith: RunCertsmith, cs_home: Path
) -> None:
    ca = pebble_factory(nonce_reject=50, **FAST)
    names = [f"n{i}.example.com" for i in range(10)]
    got = run_certsmith(
        "get",
        *names,
        "--separate",
        "--standalone",
        "--http-port",
        ca.http_port,
        "--server",
        ca.directory,
        "--agree-tos",
        "--json",
        server=ca,
    )
    assert got.returncode == 0, got.stderr
    assert [o["action"] for o in json.loads(got.stdout)] == ["issued"] * 10
    # Pebble does not log rejections; more newOrder POSTs than orders shows they happened.
    assert ca.log_text().count("POST /order-plz") > ca.count_orders() == 10
    renewed = run_certsmith("renew", "--force", "--json", server=ca)
    assert renewed.returncode == 0, renewed.stderr
    assert [o["action"] for o in json.loads(renewed.stdout)] == ["renewed"] * 10


def test_ca_down_then_back(
    pebble_factory: PebbleFactory, run_certsmith: RunCertsmith, cs_home: Path
) -> None:
    ca = pebble_factory(**FAST)
    run_certsmith(
        "get",
        "down.example.com",
        "--standalone",
        "--http-port",
        ca.http_port,
        "--server",
        ca.directory,
        "--agree-tos",
        server=ca,
        check=True,
    )
    live = cs_home / "live" / "down.example.com"
    before = (live / "fullchain.pem").read_bytes(), os.readlink(live)
    ca.stop()
    failed = run_certsmith("renew", "--force", server=ca)
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [
        f"certsmith: down.example.com: cannot reach the CA at {ca.directory}: connection failed"
    ]
    assert ((live / "fullchain.pem").read_bytes(), os.readlink(live)) == before
    listing = json.loads(run_certsmith("list", "--json", server=ca, check=True).stdout)
    assert listing[0]["last_result"] == "failed" and listing[0]["failures"] == 1
    # Backing off: a plain renew does not hammer the CA.
    assert "backing off" in run_certsmith("renew", server=ca, check=True).stdout
    # Pebble comes back (as a new CA that forgot our account): the next run succeeds.
    ca.start()
    ok = run_certsmith("renew", "--force", server=ca)
    assert ok.returncode == 0, ok.stderr
    assert os.readlink(live) == "../archive/down.example.com/2"
    assert live_is_consistent(cs_home, "down.example.com")
    assert json.loads(run_certsmith("list", "--json", server=ca).stdout)[0]["failures"] == 0


GET_POINTS = [
    "account:key-written",
    "write:key.pem",
    "account:registered",
    "write:account.json",
    "order:key-generated",
    "order:presented",
    "order:validated",
    "order:issued",
    "publish:wrote:cert.pem",
    "publish:wrote:privkey.pem",
    "publish:archived",
    "publish:linked",
    "order:published",
    "order:site-saved",
    "order:state-saved",
    "deploy:file",
]
RENEW_POINTS = [
    "order:key-generated",
    "order:presented",
    "order:validated",
    "order:issued",
    "write:cert.pem",
    "publish:wrote:cert.pem",
    "publish:wrote:chain.pem",
    "publish:wrote:fullchain.pem",
    "write:privkey.pem",
    "publish:wrote:privkey.pem",
    "publish:wrote:meta.json",
    "publish:archived",
    "publish:linked",
    "order:published",
    "write:crash.example.com.toml",
    "order:site-saved",
    "write:crash.example.com.json",
    "order:state-saved",
    "deploy:file",
]


@pytest.fixture
def fast_ca(pebble_factory: PebbleFactory) -> Pebble:
    return pebble_factory(**FAST)


@pytest.mark.parametrize("point", GET_POINTS)
def test_sigkill_during_first_get(
    point: str, fast_ca: Pebble, run_certsmith: RunCertsmith, cs_home: Path, tmp_path: Path
) -> None:
    args = [
        "get",
        "crash.example.com",
        "--standalone",
        "--http-port",
        fast_ca.http_port,
        "--server",
        fast_ca.directory,
        "--agree-tos",
        "--deploy-to",
        f"fullchain={tmp_path}/out/fullchain.pem",
    ]
    killed = run_certsmith(*args, env={"CERTSMITH_CRASH_AT": point}, server=fast_ca)
    assert killed.returncode == -signal.SIGKILL, (point, killed.stderr)
    assert live_is_consistent(cs_home, "crash.example.com")
    keys = account_keys(cs_home)
    again = run_certsmith(*args, server=fast_ca)
    assert again.returncode == 0, (point, again.stderr)
    assert live_is_consistent(cs_home, "crash.example.com")
    assert os.path.exists(cs_home / "live" / "crash.example.com" / "fullchain.pem")
    after = account_keys(cs_home)
    assert len(after) == 1 and all(after[k] == v for k, v in keys.items() if k in after), point


@pytest.mark.parametrize("point", RENEW_POINTS)
def test_sigkill_during_renew(
    point: str, fast_ca: Pebble, run_certsmith: RunCertsmith, cs_home: Path, tmp_path: Path
) -> None:
    run_certsmith(
        "get",
        "crash.example.com",
        "--standalone",
        "--http-port",
        fast_ca.http_port,
        "--server",
        fast_ca.directory,
        "--agree-tos",
        "--deploy-to",
        f"fullchain={tmp_path}/out/fullchain.pem",
        server=fast_ca,
        check=True,
    )
    keys = account_keys(cs_home)
    live = cs_home / "live" / "crash.example.com"
    old = (live / "cert.pem").read_bytes()
    killed = run_certsmith("renew", "--force", env={"CERTSMITH_CRASH_AT": point}, server=fast_ca)
    assert killed.returncode == -signal.SIGKILL, (point, killed.stderr)
    assert live_is_consistent(cs_home, "crash.example.com")
    if point not in ("publish:linked",) and not point.startswith(
        ("order:published", "write:", "order:site", "order:state", "deploy")
    ):
        assert (live / "cert.pem").read_bytes() == old, point
    assert account_keys(cs_home) == keys
    again = run_certsmith("renew", "--force", server=fast_ca)
    assert again.returncode == 0, (point, again.stderr)
    assert live_is_consistent(cs_home, "crash.example.com")
    assert (live / "cert.pem").read_bytes() != old
    assert account_keys(cs_home) == keys
    assert (tmp_path / "out" / "fullchain.pem").read_bytes() == (
        live / "fullchain.pem"
    ).read_bytes()


def test_two_renews_at_once_order_each_certificate_once(
    fast_ca: Pebble, run_certsmith: RunCertsmith, cs_home: Path
) -> None:
    names = ["c1.example.com", "c2.example.com", "c3.example.com"]
    run_certsmith(
        "get",
        *names,
        "--separate",
        "--standalone",
        "--http-port",
        fast_ca.http_port,
        "--server",
        fast_ca.directory,
        "--agree-tos",
        server=fast_ca,
        check=True,
    )
    for name in names:  # after a revocation Pebble's ARI says: renew now
        run_certsmith("revoke", name, server=fast_ca, check=True)
    before = fast_ca.count_orders()
    env = _certsmith_env(cs_home, fast_ca, None)
    cmd = [sys.executable, "-m", "certsmith", "renew", "--json"]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert fast_ca.count_orders() == before + len(names)
    actions = sorted(o["action"] for out, _err in results for o in json.loads(out))
    assert actions.count("renewed") == len(names)
    for name in names:
        assert live_is_consistent(cs_home, name)
