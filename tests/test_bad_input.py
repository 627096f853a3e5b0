"""Bad input: one line on stderr, a non-zero exit, no traceback, and the state unchanged."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.conftest import RunCertsmith
from tests.support.pebble import Pebble


def snapshot(home: Path) -> dict[str, str]:
    """Every path under ``home`` with its mode and content hash (or link target)."""
    out: dict[str, str] = {}
    if not home.exists():
        return out
    for root, dirs, files in os.walk(home):
        for name in dirs + files:
            p = Path(root) / name
            st = os.lstat(p)
            if p.is_symlink():
                out[str(p.relative_to(home))] = f"link:{os.readlink(p)}"
            elif p.is_file():
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
                out[str(p.relative_to(home))] = f"{st.st_mode:o}:{digest}"
            else:
                out[str(p.relative_to(home))] = f"{st.st_mode:o}"
    return out


def one_line_error(proc) -> str:  # type: ignore[no-untyped-def]
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("certsmith: ")
    return str(lines[0])


@pytest.fixture
def populated_home(run_certsmith: RunCertsmith, pebble: Pebble, cs_home: Path) -> Path:
    run_certsmith(
        "get",
        "existing.example.com",
        "--standalone",
        "--http-port",
        pebble.http_port,
        "--server",
        pebble.directory,
        "--agree-tos",
        check=True,
    )
    return cs_home


BAD_NAMES = ["../x", "exa mple.com", "*.*.example.com", "a..b", "foo.*.com", "", "a" * 64 + ".com"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names(
    run_certsmith: RunCertsmith, pebble: Pebble, populated_home: Path, name: str
) -> None:
    before = snapshot(populated_home)
    proc = run_certsmith(
        "get",
        name,
        "--standalone",
        "--http-port",
        pebble.http_port,
        "--server",
        pebble.directory,
        "--agree-tos",
    )
    assert "invalid name" in one_line_error(proc)
    assert snapshot(populated_home) == before


def test_other_bad_input(
    run_certsmith: RunCertsmith, pebble: Pebble, populated_home: Path, tmp_path: Path
) -> None:
    before = snapshot(populated_home)
    common = ["--server", pebble.directory]
    cases = [
        (
            ["get", "a.example.com", "--standalone", "--server", "letsencrypt-prod"],
            "unknown CA 'letsencrypt-prod'",
        ),
        (["get", "a.example.com", "--webroot", tmp_path / "missing", *common], "does not exist"),
        (
            [
                "get",
                "a.example.com",
                "--webroot",
                populated_home / "sites" / "existing.example.com.toml",
                *common,
            ],
            "not a directory",
        ),
        (
            ["get", "a.example.com", "--standalone", "--key-type", "dsa", *common],
            "unknown key type",
        ),
        (
            ["get", "a.example.com", "--standalone", "--deploy-to", "nonsense", *common],
            "invalid --deploy-to",
        ),
        (
            [
                "get",
                "a.example.com",
                "--standalone",
                "--deploy-to",
                "key=/tmp/x,owner=nosuchuser",
                *common,
            ],
            "unknown user",
        ),
        (["get", "*.example.com", "--standalone", *common], "DNS-01"),
        (
            ["get", "a.example.com", "--standalone", "--cert-name", "../evil", *common],
            "invalid certificate name",
        ),
        (["renew", "nosuch.example.com"], "no certificate named"),
        (["deploy", "nosuch.example.com"], "no certificate named"),
    ]
    for args, message in cases:
        proc = run_certsmith(*args)
        line = one_line_error(proc)
        assert message in line, (args, line)
    assert snapshot(populated_home) == before


def test_unwritable_webroot(
    run_certsmith: RunCertsmith, pebble: Pebble, populated_home: Path, tmp_path: Path
) -> None:
    webroot = tmp_path / "ro"
    webroot.mkdir()
    if os.geteuid() == 0:
        # root ignores permission bits: make the challenge path a file so nothing can be created
        (webroot / ".well-known").write_text("not a directory")
    else:
        webroot.chmod(0o555)
    before = snapshot(populated_home)
    proc = run_certsmith("get", "a.example.com", "--webroot", webroot, "--server", pebble.directory)
    assert "cannot write to webroot" in one_line_error(proc)
    assert snapshot(populated_home) == before


def test_missing_agree_tos_writes_nothing(
    run_certsmith: RunCertsmith, pebble: Pebble, cs_home: Path
) -> None:
    proc = run_certsmith(
        "get",
        "a.example.com",
        "--standalone",
        "--http-port",
        pebble.http_port,
        "--server",
        pebble.directory,
    )
    assert "--agree-tos" in one_line_error(proc)
    assert not cs_home.exists()


def test_unreachable_ca(run_certsmith: RunCertsmith, populated_home: Path) -> None:
    before = snapshot(populated_home)
    proc = run_certsmith(
        "get",
        "a.example.com",
        "--standalone",
        "--http-port",
        "1",
        "--server",
        "https://127.0.0.1:9/dir",
        "--agree-tos",
    )
    line = one_line_error(proc)
    assert "cannot reach the CA" in line or "port 1" in line
    assert snapshot(populated_home) == before


def test_port_in_use_names_the_owner(
    run_certsmith: RunCertsmith, pebble: Pebble, cs_home: Path
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = run_certsmith(
            "get",
            "a.example.com",
            "--standalone",
            "--http-port",
            port,
            "--server",
            pebble.directory,
            "--agree-tos",
        )
    line = one_line_error(proc)
    assert f"port {port} is already in use" in line
    assert f"(pid {os.getpid()})" in line  # the owner, found with ss
