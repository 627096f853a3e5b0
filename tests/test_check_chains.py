"""certsmith check against ``openssl s_server`` serving broken chains that real clients refuse:
an expired intermediate or root, an RSA-1024 key (leaf or intermediate), a SHA-1 signature, a
chain in the wrong order, TLS 1.2 with only static-RSA ciphers; a good chain still passes, and
a leaf with an empty subject (as ACME CAs issue them) is named by its first SAN.

Each case also asks curl (OpenSSL, Debian's security level) what it makes of the same server,
so the verdict is held to a real client's: what curl refuses is CRITICAL, with the same cause.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from tests.conftest import RunCertsmith
from tests.support.brokenchains import Made, SServer, make, rsa_key

NAME = "check.example.org"
WEAK_OK = ("-cipher", "ALL:@SECLEVEL=0", "-no_tls1", "-no_tls1_1")  # lets OpenSSL 3 load them
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def root() -> Made:
    return make("Test Root", ca=True, not_before=NOW - dt.timedelta(days=400))


@pytest.fixture(scope="module")
def inter(root: Made) -> Made:
    return make("Test Intermediate", issuer=root, ca=True, not_before=NOW - dt.timedelta(days=300))


class Serve(Protocol):
    def __call__(self, leaf: Made, *chain: Made, args: tuple[str, ...] = ()) -> int: ...


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    started: list[SServer] = []

    def start(leaf: Made, *chain: Made, args: tuple[str, ...] = ()) -> int:
        server = SServer(tmp_path, leaf, chain, args).start()
        started.append(server)
        return server.port

    yield start
    for server in started:
        server.close()


def anchor(tmp_path: Path, made: Made) -> Path:
    path = tmp_path / "anchor.pem"
    path.write_bytes(made.pem())
    return path


def check(run_certsmith: RunCertsmith, port: int, ca: Path, *extra: str) -> tuple[int, str]:
    proc = run_certsmith(
        "check", NAME, "--connect", f"127.0.0.1:{port}", "--ca", ca, "--no-http", *extra, timeout=60
    )
    assert proc.stderr == "", proc.stderr
    return proc.returncode, proc.stdout


def curl(port: int, ca: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "--max-time",
            "30",
            "--noproxy",
            "*",
            "--cacert",
            str(ca),
            "--resolve",
            f"{NAME}:{port}:127.0.0.1",
            f"https://{NAME}:{port}/",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def when(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M}Z"


def test_expired_intermediate(
    run_certsmith: RunCertsmith, serve: Serve, tmp_path: Path, root: Made
) -> None:
    old = make(
        "Old Intermediate",
        issuer=root,
        ca=True,
        not_before=NOW - dt.timedelta(days=300),
        not_after=NOW - dt.timedelta(days=5),
    )
    leaf = make(NAME, issuer=old, not_before=NOW - dt.timedelta(days=30))
    port = serve(leaf, old)
    ca = anchor(tmp_path, root)
    code, out = check(run_certsmith, port, ca)
    assert code == 2, out
    assert out.splitlines()[0] == (
        f"CRITICAL {NAME}:{port}: intermediate 'Old Intermediate' "
        f"expired on {when(old.cert.not_valid_after_utc)} "
        "(5 days ago)"
    )
    assert "trusted: no" in out
    seen = curl(port, ca)
    assert seen.returncode == 60 and "certificate has expired" in seen.stderr


def test_expired_root(run_certsmith: RunCertsmith, serve: Serve, tmp_path: Path) -> None:
    old_root = make(
        "Expired Root",
        ca=True,
        not_before=NOW - dt.timedelta(days=400),
        not_after=NOW - dt.timedelta(days=3),
    )
    mid = make("Current Intermediate", issuer=old_root, ca=True)
    leaf = make(NAME, issuer=mid)
    port = serve(leaf, mid, old_root)
    ca = anchor(tmp_path, old_root)
    code, out = check(run_certsmith, port, ca)
    assert code == 2, out
    assert out.splitlines()[0] == (
        f"CRITICAL {NAME}:{port}: root 'Expired Root' expired on "
        f"{when(old_root.cert.not_valid_after_utc)} (3 days ago)"
    )
    seen = curl(port, ca)
    assert seen.returncode == 60 and "certificate has expired" in seen.stderr


@pytest.mark.parametrize("where", ["leaf", "intermediate"])
def test_rsa_1024_key(
    run_certsmith: RunCertsmith, serve: Serve, tmp_path: Path, root: Made, inter: Made, where: str
) -> None:
    if where == "leaf":
        issuer = inter
        leaf = make(NAME, issuer=inter, key=rsa_key(1024))
        who = "certificate"
    else:
        issuer = make("Weak Intermediate", issuer=root, ca=True, key=rsa_key(1024))
        leaf = make(NAME, issuer=issuer)
        who = "intermediate 'Weak Intermediate'"
    port = serve(leaf, issuer, args=WEAK_OK)
    ca = anchor(tmp_path, root)
    code, out = check(run_certsmith, port, ca)
    assert code == 2, out
    assert out.splitlines()[0] == (
        f"CRITICAL {NAME}:{port}: {who} key is RSA 1024: clients refuse keys under 2048 bits"
    )
    if where == "leaf":
        assert "; key RSA 1024; signature ecdsa-with-SHA256; " in out
    seen = curl(port, ca)
    assert seen.returncode == 60 and "key too weak" in seen.stderr


def test_sha1_signed_leaf(
    run_certsmith: RunCertsmith, serve: Serve, tmp_path: Path, root: Made
) -> None:
    rsa_inter = make("RSA Intermediate", issuer=root, ca=True, key=rsa_key())
    leaf = make(NAME, issuer=rsa_inter, sha1=True)
    port = serve(leaf, rsa_inter, args=WEAK_OK)
    ca = anchor(tmp_path, root)
    code, out = check(run_certsmith, port, ca)
    assert code == 2, out
    assert out.splitlines()[0] == (
        f"CRITICAL {NAME}:{port}: certificate signed with SHA-1 "
        "(sha1WithRSAEncryption): clients refuse it"
    )
    seen = curl(port, ca)
    assert seen.returncode == 60 and "digest algorithm too weak" in seen.stderr


def test_chain_in_wrong_order(
    run_certsmith: RunCertsmith, serve: Serve, tmp_path: Path, root: Made
) -> None:
    upper = make("Upper Intermediate", issuer=root, ca=True)
    lower = make("Lower Intermediate", issuer=upper, ca=True)
    port = serve(make(NAME, issuer=lower), upper, lower)
    ca = anchor(tmp_path, root)
    code, out = check(run_certsmith, port, ca)
    assert code == 1, out
    assert out.splitlines()[0] == (
        f"WARNING {NAME}:{port}: chain served in the wrong order: {NAME} <- Upper Intermediate "
        f"<- Lower Intermediate; expected {NAME} <- Lower Intermediate <- Upper Intermediate "
        "(each certificate followed by its issuer)"
    )
    assert "trusted: yes" in out  # OpenSSL sorts it out, as curl does; stricter clients do not
    assert curl(port, ca).returncode == 0


@pytest.mark.parametrize("tls13", [False, True], ids=["tls12-only", "with-tls13"])
def test_tls12_without_forward_secrecy(
    run_certsmith: RunCertsmith, serve: Serve, tmp_path: Path, root: Made, tls13: bool
) -> None:
    rsa_inter = make("RSA Intermediate", issuer=root, ca=True, key=rsa_key())
    leaf = make(NAME, issuer=rsa_inter, key=rsa_key())
    args = ("-cipher", "AES128-GCM-SHA256") + (() if tls13 else ("-tls1_2",))
    port = serve(leaf, rsa_inter, args=args)
    ca = anchor(tmp_path, root)
    code, out = check(run_certsmith, port, ca)
    status = "WARNING" if tls13 else "CRITICAL"
    assert code == (1 if tls13 else 2), out
    assert out.splitlines()[0] == (
        f"{status} {NAME}:{port}: TLS 1.2 offers no forward-secret cipher, only static RSA key "
        "exchange (AES128-GCM-SHA256): enable ECDHE ciphers"
    )
    assert "TLS 1.2 ciphers: forward secrecy none; static RSA AES128-GCM-SHA256" in out
    assert curl(port, ca).returncode == 0  # it connects, but recorded traffic is one key away


def test_good_chain_ok(
    run_certsmith: RunCertsmith, serve: Serve, tmp_path: Path, root: Made, inter: Made
) -> None:
    leaf = make(NAME, issuer=inter)
    port = serve(leaf, inter)
    ca = anchor(tmp_path, root)
    code, out = check(run_certsmith, port, ca)
    assert code == 0, out
    assert out.splitlines()[0].startswith(f"OK {NAME}:{port}: valid until ")
    assert (
        f"certificate: {NAME}; issuer Test Intermediate; key ECDSA secp256r1; signature "
        "ecdsa-with-SHA256; serial "
    ) in out
    assert "trusted: yes" in out and f"chain: {NAME} <- Test Intermediate" in out
    assert "TLS 1.2 ciphers: forward secrecy ECDHE-ECDSA-" in out
    assert "; static RSA none" in out
    assert curl(port, ca).returncode == 0

    proc = run_certsmith(
        "check",
        NAME,
        "--connect",
        f"127.0.0.1:{port}",
        "--ca",
        ca,
        "--no-http",
        "--json",
        timeout=60,
    )
    [report] = json.loads(proc.stdout)
    assert report["status"] == "OK" and report["signature"] == "ecdsa-with-SHA256"
    assert report["chain_order_ok"] is True
    assert report["tls12_forward_secret_cipher"].startswith("ECDHE-ECDSA-")
    assert report["tls12_static_rsa_cipher"] is None


def test_empty_subject_named_by_first_san(
    run_certsmith: RunCertsmith, serve: Serve, tmp_path: Path, root: Made, inter: Made
) -> None:
    leaf = make(NAME, issuer=inter, names=(NAME, f"www.{NAME}"), empty_subject=True)
    port = serve(leaf, inter)
    ca = anchor(tmp_path, root)
    code, out = check(run_certsmith, port, ca)
    assert code == 0, out
    assert f"chain: {NAME} <- Test Intermediate" in out
    assert "(empty name)" not in out
