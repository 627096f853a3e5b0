"""A damaged state directory, through the real CLI against Pebble: a broken site file, a broken
state file, a broken live set, unreadable files and an empty account key are each reported in
one line naming the file, and every other certificate is still listed and renewed."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import RunCertsmith, _certsmith_env
from tests.support.net import wait_until
from tests.support.pebble import Pebble
from tests.support.receivers import WebhookReceiver
from tests.test_faults import live_is_consistent


def get(run_certsmith: RunCertsmith, pebble: Pebble, *names: str) -> None:
    run_certsmith(
        "get",
        *names,
        "--separate",
        "--standalone",
        "--http-port",
        pebble.http_port,
        "--server",
        pebble.directory,
        "--agree-tos",
        check=True,
    )


def live_serial(home: Path, name: str) -> str:
    cert = x509.load_pem_x509_certificate((home / "live" / name / "cert.pem").read_bytes())
    return format(cert.serial_number, "x")


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.close()


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"name = [unclosed\n",
        b'name = "bad.example.com"\n',
        b"\xff\xfe",
        b'solver = 5\nname = "x"\n',
    ],
)
def test_damaged_site_file_is_reported_and_every_other_certificate_renewed(
    damage: bytes, run_certsmith: RunCertsmith, pebble: Pebble, cs_home: Path, hook: WebhookReceiver
) -> None:
    get(run_certsmith, pebble, "bad.example.com", "good.example.com")
    run_certsmith("alerts", "add", "webhook", hook.url, check=True)
    site = cs_home / "sites" / "bad.example.com.toml"
    site.write_bytes(damage)
    line = f"certsmith: bad.example.com: damaged site file {site}: "

    listed = run_certsmith("list")
    assert listed.returncode == 1
    assert [ln for ln in listed.stderr.splitlines() if ln.startswith(line)], listed.stderr
    assert len(listed.stderr.splitlines()) == 1 and "Traceback" not in listed.stderr
    assert "good.example.com" in listed.stdout and "bad.example.com" in listed.stdout
    as_json = {e["name"]: e for e in json.loads(run_certsmith("list", "--json").stdout)}
    assert as_json["good.example.com"]["last_result"] == "issued"
    assert as_json["bad.example.com"]["last_result"] == "damaged"

    old = live_serial(cs_home, "good.example.com")
    renewed = run_certsmith("renew", "--force", "--json")
    assert renewed.returncode == 1
    actions = {o["name"]: o["action"] for o in json.loads(renewed.stdout)}
    assert actions == {"bad.example.com": "failed", "good.example.com": "renewed"}
    assert renewed.stderr.startswith(line) and len(renewed.stderr.splitlines()) == 1
    assert live_serial(cs_home, "good.example.com") != old
    assert os.readlink(cs_home / "live" / "good.example.com") == "../archive/good.example.com/2"
    assert [p["name"] for p in hook.payloads if p["event"] == "failed"] == ["bad.example.com"]
    assert "damaged site file" in hook.payloads[0]["text"]

    # Nothing due: the damaged lineage is still reported, by name, and the run fails.
    plain = run_certsmith("renew")
    assert plain.returncode == 1 and plain.stderr.startswith(line), plain.stderr
    assert "good.example.com: skipped" in plain.stdout


def test_damaged_state_file_is_recomputed_from_the_certificate(
    run_certsmith: RunCertsmith, pebble: Pebble, cs_home: Path
) -> None:
    name = "state.example.com"
    get(run_certsmith, pebble, name)
    state = cs_home / "state" / f"{name}.json"
    state.write_bytes(b'{"serial": "12')
    orders = pebble.count_orders()
    renewed = run_certsmith("renew")
    assert pebble.count_orders() == orders  # not "due now": the certificate is fine
    assert renewed.returncode == 1
    assert renewed.stderr.splitlines() == [
        f"certsmith: {name}: damaged state file {state}: not JSON; recomputed from "
        f"live/{name}/cert.pem"
    ]
    assert f"{name}: skipped" in renewed.stdout
    listed = json.loads(run_certsmith("list", "--json", check=True).stdout)
    assert listed[0]["serial"] == live_serial(cs_home, name)
    assert listed[0]["next_renewal"] is not None
    again = run_certsmith("renew")
    assert again.returncode == 0 and again.stderr == ""


def _garbage_fullchain(home: Path, name: str) -> None:
    (home / "live" / name / "fullchain.pem").write_bytes(b"garbage\n")


def _no_key(home: Path, name: str) -> None:
    (home / "live" / name / "privkey.pem").unlink()


def _dangling(home: Path, name: str) -> None:
    link = home / "live" / name
    link.unlink()
    link.symlink_to(f"../archive/{name}/9")


def _other_key(home: Path, name: str) -> None:
    (home / "live" / name / "privkey.pem").write_bytes(
        (home / "archive" / name / "1" / "privkey.pem").read_bytes()
    )


@pytest.mark.parametrize(
    ("damage", "what"),
    [
        (_garbage_fullchain, "fullchain.pem is not a PEM certificate chain"),
        (_no_key, "privkey.pem is missing"),
        (_dangling, "live/{name} points to a missing version"),
        (_other_key, "privkey.pem does not match cert.pem"),
    ],
)
def test_damaged_live_set_is_repaired_from_the_archive(
    damage: object, what: str, run_certsmith: RunCertsmith, pebble: Pebble, cs_home: Path
) -> None:
    name = "live.example.com"
    get(run_certsmith, pebble, name)
    run_certsmith("renew", "--force", check=True)  # version 2; version 1 stays intact
    assert callable(damage)
    damage(cs_home, name)
    what = what.format(name=name)
    listed = run_certsmith("list")
    assert listed.returncode == 1
    assert listed.stderr.splitlines()[0].startswith(f"certsmith: {name}: damaged live set: {what}")
    # The live set now is the newest intact version, whole.
    assert live_is_consistent(cs_home, name)
    orders = pebble.count_orders()
    renewed = run_certsmith("renew", "--json")
    if damage is _dangling:  # version 2 was only unlinked: it is the newest, intact
        assert renewed.returncode == 0, renewed.stderr
        assert os.readlink(cs_home / "live" / name) == f"../archive/{name}/2"
        assert pebble.count_orders() == orders
    else:  # version 2 lost a file: version 1 serves until the renewal that follows at once
        assert renewed.returncode == 1  # still reported, after renewing
        assert renewed.stderr.splitlines() == [
            f"certsmith: {name}: damaged version {cs_home}/archive/{name}/2: {what}; renewing"
        ]
        assert [o["action"] for o in json.loads(renewed.stdout)] == ["renewed"]
        assert os.readlink(cs_home / "live" / name) == f"../archive/{name}/3"
        assert pebble.count_orders() == orders + 1
    assert live_is_consistent(cs_home, name)
    assert run_certsmith("list").returncode == 0


def test_live_set_without_any_intact_version_is_renewed(
    run_certsmith: RunCertsmith, pebble: Pebble, cs_home: Path
) -> None:
    name = "lost.example.com"
    get(run_certsmith, pebble, name)
    _garbage_fullchain(cs_home, name)
    listed = run_certsmith("list")
    assert listed.returncode == 1
    assert listed.stderr.splitlines() == [
        f"certsmith: {name}: damaged live set: fullchain.pem is not a PEM certificate chain "
        f"(in {cs_home}/archive/{name}/1); no intact version in the archive: renewing"
    ]
    orders = pebble.count_orders()
    renewed = run_certsmith("renew", "--json")
    assert renewed.returncode == 1  # the damage is reported, after renewing
    assert [o["action"] for o in json.loads(renewed.stdout)] == ["renewed"]
    assert pebble.count_orders() == orders + 1
    assert live_is_consistent(cs_home, name)
    assert run_certsmith("renew").returncode == 0


def run_unprivileged(home: Path, pebble: Pebble, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI subject to permission bits: as root, without the capabilities that ignore them
    (the file owner's mode 000 then applies to root too)."""
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    return subprocess.run(
        [*drop, sys.executable, "-m", "certsmith", *args],
        env=_certsmith_env(home, pebble, None),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("where", ["sites", "archive/{name}/1", "events.jsonl", "locks"])
def test_unreadable_state_names_the_file(
    where: str, run_certsmith: RunCertsmith, pebble: Pebble, cs_home: Path
) -> None:
    name = "perm.example.com"
    get(run_certsmith, pebble, name)
    path = cs_home / where.format(name=name)
    mode = path.stat().st_mode
    path.chmod(0)
    try:
        written_only = where in ("events.jsonl", "locks")  # by a renewal, not by list
        for args in (
            (("renew", "--force"),)
            if written_only
            else (("list",), ("renew",), ("renew", "--force"))
        ):
            got = run_unprivileged(cs_home, pebble, *args)
            assert "internal error" not in got.stderr, (args, got.stderr)
            assert got.returncode == 1, (args, got.stderr)
            assert len(got.stderr.splitlines()) == 1, (args, got.stderr)
            assert str(path) in got.stderr, (args, got.stderr)
            assert "permission denied" in got.stderr.lower(), (args, got.stderr)
    finally:
        path.chmod(mode)


def test_malformed_account_json_names_the_file(
    run_certsmith: RunCertsmith, pebble: Pebble, cs_home: Path
) -> None:
    name = "acct.example.com"
    get(run_certsmith, pebble, name)
    (account,) = (cs_home / "accounts").rglob("account.json")
    account.write_text("{")
    got = run_certsmith("renew", "--force")
    assert got.returncode == 1
    assert got.stderr.splitlines() == [
        f"certsmith: {name}: damaged account file {account}: not JSON"
    ]


def test_empty_account_key_is_refused(
    run_certsmith: RunCertsmith, pebble: Pebble, cs_home: Path
) -> None:
    get(run_certsmith, pebble, "first.example.com")
    (key,) = (cs_home / "accounts").rglob("key.pem")
    key.write_bytes(b"")
    accounts = sorted((cs_home / "accounts").rglob("*"))
    got = run_certsmith(
        "get",
        "second.example.com",
        "--standalone",
        "--http-port",
        pebble.http_port,
        "--server",
        pebble.directory,
        "--agree-tos",
    )
    assert got.returncode == 1
    assert got.stderr.splitlines() == [
        f"certsmith: damaged account key {key}: empty; restore it from a backup, or move "
        f"{key.parent} away to register a new account"
    ]
    assert sorted((cs_home / "accounts").rglob("*")) == accounts
    assert not (cs_home / "sites" / "second.example.com.toml").exists()


def _waiters(inode: int) -> int:
    """Processes blocked in flock() on the file with ``inode`` (from /proc/locks)."""
    lines = Path("/proc/locks").read_text().splitlines()
    return sum(
        1 for line in lines if " -> " in line and line.split()[6].rsplit(":", 1)[1] == str(inode)
    )


def test_two_gets_at_once_order_once(
    run_certsmith: RunCertsmith, pebble: Pebble, cs_home: Path
) -> None:
    get(run_certsmith, pebble, "warm.example.com")  # the account exists
    name = "twice.example.com"
    orders = pebble.count_orders()
    # Both commands start, and both wait for the standalone listener held here; released,
    # one orders, the other finds the fresh certificate under the lineage lock.
    lock = os.open(
        cs_home / "locks" / f"standalone-{pebble.http_port}.lock", os.O_RDWR | os.O_CREAT, 0o600
    )
    fcntl.flock(lock, fcntl.LOCK_EX)
    env = _certsmith_env(cs_home, pebble, None)
    cmd = [
        sys.executable,
        "-m",
        "certsmith",
        "get",
        name,
        "--standalone",
        "--http-port",
        str(pebble.http_port),
        "--server",
        pebble.directory,
        "--agree-tos",
        "--json",
    ]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        inode = os.fstat(lock).st_ino
        wait_until(lambda: _waiters(inode) == 2, what="both gets waiting", timeout=60)
    finally:
        os.close(lock)
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert pebble.count_orders() == orders + 1
    outcomes = sorted(
        (o for out, _err in results for o in json.loads(out)), key=lambda o: str(o["action"])
    )
    assert [o["action"] for o in outcomes] == ["issued", "skipped"]
    assert outcomes[1]["detail"] == "issued by another certsmith process"
    assert outcomes[0]["serial"] == outcomes[1]["serial"] == live_serial(cs_home, name)
    assert sorted(os.listdir(cs_home / "archive" / name)) == ["1"]


@pytest.mark.parametrize("where", ["state/{name}.json", "sites/{name}.toml", "archive/{name}"])
def test_unreadable_lineage_does_not_stop_the_others(
    where: str, run_certsmith: RunCertsmith, pebble: Pebble, cs_home: Path
) -> None:
    get(run_certsmith, pebble, "bad.example.com", "good.example.com")
    path = cs_home / where.format(name="bad.example.com")
    if path.is_dir():
        shutil.rmtree(path)
        path.write_text("not a directory\n")
    else:
        path.unlink()
        path.mkdir()
    listed = run_certsmith("list", "--json")
    assert listed.returncode == 1
    assert [e["name"] for e in json.loads(listed.stdout)] == ["bad.example.com", "good.example.com"]
    assert listed.stderr.startswith(f"certsmith: bad.example.com: cannot read {path}: ")
    renewed = run_certsmith("renew", "--force", "--json")
    assert renewed.returncode == 1
    actions = {o["name"]: o["action"] for o in json.loads(renewed.stdout)}
    assert actions == {"bad.example.com": "failed", "good.example.com": "renewed"}
    assert renewed.stderr.splitlines() == [
        ln
        for ln in renewed.stderr.splitlines()
        if ln.startswith(f"certsmith: bad.example.com: cannot read {path}: ")
    ]
