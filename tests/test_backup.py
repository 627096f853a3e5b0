"""certsmith backup / restore: a realistic state directory round-trips bytes, links and modes;
unsafe or foreign archives are refused with one line and nothing written."""

from __future__ import annotations

import io
import json
import os
import shlex
import socket
import ssl
import stat
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from certsmith.base import events
from certsmith.base.store.fs import FileStore
from certsmith.errors import CertsmithError
from certsmith.services import backup as backup_service
from tests.conftest import RunCertsmith
from tests.support.net import LOOPBACK, free_port, port_open, wait_until
from tests.support.pebble import Pebble
from tests.support.webservers import Lighttpd

Snapshot = dict[str, tuple[str, int, bytes | str]]


def snapshot(root: Path) -> Snapshot:
    """Every entry below ``root``: kind, permission bits, content or link target."""
    out: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            st_ = path.lstat()
            mode = stat.S_IMODE(st_.st_mode)
            if stat.S_ISLNK(st_.st_mode):
                out[rel] = ("link", 0, os.readlink(path))
            elif stat.S_ISDIR(st_.st_mode):
                out[rel] = ("dir", mode, b"")
            else:
                out[rel] = ("file", mode, path.read_bytes())
    return out


def without_locks(snap: Snapshot) -> Snapshot:
    return {k: v for k, v in snap.items() if k != "locks" and not k.startswith("locks/")}


def make_home(home: Path, names: tuple[str, ...] = ("example.com", "app.internal")) -> None:
    """A state directory as the manager leaves it: sites, an account, versions, state, log."""
    store = FileStore(home)
    store.ensure()
    store.put("accounts/acme-v02.api.letsencrypt.org/1a2b/account.json", b'{"uri": "x"}')
    store.put("accounts/acme-v02.api.letsencrypt.org/1a2b/key.pem",
              b"-----BEGIN PRIVATE KEY-----\naccount\n-----END PRIVATE KEY-----\n", private=True)
    store.put("ca/rootCA-key.pem", b"local ca key\n", private=True)
    store.put("ca/rootCA.pem", b"local ca cert\n")
    for i, name in enumerate(names):
        store.put(f"sites/{name}.toml", f'name = "{name}"\nnames = ["{name}"]\n'.encode())
        for version in range(1, 3 + i):
            store.publish(name, {
                "cert.pem": f"cert {name} {version}\n".encode(),
                "chain.pem": b"chain\n",
                "fullchain.pem": f"cert {name} {version}\nchain\n".encode(),
                "privkey.pem": os.urandom(64),
                "meta.json": b"{}",
            }, frozenset({"privkey.pem"}))
        store.put(f"state/{name}.json", b'{"failures": 0}', private=True)
        events.record(home, "issued", name)
    with store.lock("example.com"):
        pass  # leaves locks/, which a backup does not need


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTSMITH_")}
    return subprocess.run([sys.executable, "-m", "certsmith", "--home", str(home), *args],
                          env=env, capture_output=True, text=True, timeout=60, check=False)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert result.stderr.startswith("certsmith: ") and result.stderr.count("\n") == 1, \
        result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "old" / "certsmith"
    make_home(h)
    return h


# -- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar.xz"])
def test_round_trip_bytes_links_and_modes(home: Path, tmp_path: Path, suffix: str) -> None:
    file = tmp_path / f"backup{suffix}"
    result = cli(home, "backup", str(file))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (f"backed up 2 certificates (app.internal, example.com), 1 account, "
                             f"34 files -> {file}\n")
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["old", file.name])  # no temp

    with tarfile.open(file) as tar:
        members = tar.getmembers()
        assert members[0].name == backup_service.MANIFEST
        f = tar.extractfile(members[0])
        assert f is not None
        manifest = json.loads(f.read())
    assert manifest["format"] == "certsmith-backup" and manifest["version"] == 1
    assert manifest["certificates"] == ["app.internal", "example.com"]
    names = {m.name for m in members}
    assert "archive/example.com/2/privkey.pem" in names and "live/app.internal" in names
    assert not any(n.startswith("locks") or n.endswith(".tmp") for n in names)

    new = tmp_path / "new" / "certsmith"
    result = cli(new, "restore", str(file))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (f"restored 2 certificates (app.internal, example.com), 1 account, "
                             f"34 files into {new}\n")
    assert snapshot(new) == without_locks(snapshot(home))
    assert stat.S_IMODE(new.stat().st_mode) == 0o755
    live = new / "live" / "app.internal"
    assert os.readlink(live) == "../archive/app.internal/3"
    assert (live / "privkey.pem").read_bytes() == (
        home / "archive" / "app.internal" / "3" / "privkey.pem").read_bytes()
    assert stat.S_IMODE((live / "privkey.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((new / "accounts").stat().st_mode) == 0o700
    assert [e["event"] for e in events.read(new)] == ["issued", "issued"]
    # and the restored home is usable by the store
    assert list(FileStore(new).versions("example.com")) == [1, 2]
    assert FileStore(new).live_version("app.internal") == 3
    assert not list(new.parent.glob(".*.tmp"))


def test_restore_into_existing_empty_home_and_refusal_without_force(
        home: Path, tmp_path: Path) -> None:
    file = tmp_path / "b.tgz"
    assert cli(home, "backup", str(file)).returncode == 0

    empty = tmp_path / "empty"
    FileStore(empty).ensure()  # a fresh install: directories, no certificates
    result = cli(empty, "restore", str(file))
    assert result.returncode == 0, result.stderr
    assert without_locks(snapshot(empty)) == without_locks(snapshot(home))
    assert not [p for p in empty.iterdir() if p.name.startswith(".")]

    other = tmp_path / "other"
    make_home(other, ("other.example",))
    before = snapshot(other)
    err = one_error_line(cli(other, "restore", str(file)))
    assert "already has certificates (other.example)" in err and "--force" in err
    assert snapshot(other) == before

    result = cli(other, "--quiet", "restore", "--force", str(file))
    assert result.returncode == 0 and result.stdout == ""
    # The backup replaced what was there; the lock directory of the running machine stays.
    assert without_locks(snapshot(other)) == without_locks(snapshot(home))
    assert (other / "locks").is_dir()


def test_backup_replaces_the_file_atomically(home: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "b.tar.gz"
    file.write_bytes(b"previous backup")
    file.chmod(0o644)
    real_addfile = tarfile.TarFile.addfile
    calls = 0

    def failing_addfile(self: tarfile.TarFile, info: tarfile.TarInfo,
                        fileobj: object = None) -> None:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise OSError(28, "No space left on device")
        real_addfile(self, info, fileobj)  # type: ignore[arg-type]

    monkeypatch.setattr(tarfile.TarFile, "addfile", failing_addfile)
    with pytest.raises(CertsmithError, match="No space left on device"):
        backup_service.backup(home, file)
    assert file.read_bytes() == b"previous backup"  # never a half-written archive at FILE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar.gz", "old"]
    monkeypatch.undo()
    backup_service.backup(home, file)
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert tarfile.is_tarfile(file)


def test_backup_bad_destinations(home: Path, tmp_path: Path) -> None:
    assert "outside the state directory" in one_error_line(
        cli(home, "backup", str(home / "sites" / "b.tgz")))
    assert "is a directory" in one_error_line(cli(home, "backup", str(tmp_path)))
    assert "no directory" in one_error_line(cli(home, "backup", str(tmp_path / "no" / "b.tgz")))
    assert "nothing to back up" in one_error_line(
        cli(tmp_path / "missing", "backup", str(tmp_path / "b.tgz")))
    assert not (tmp_path / "b.tgz").exists()


# -- refusals --------------------------------------------------------------------------------------

MANIFEST = json.dumps({"format": "certsmith-backup", "version": 1,
                       "certificates": ["x"]}).encode()


def _file(name: str, data: bytes = b"data", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def _dir(name: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info, b""


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, b""


def _special(name: str, kind: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, b""


def write_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]],
              manifest: bytes | None = MANIFEST) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        if manifest is not None:
            info, data = _file(backup_service.MANIFEST, manifest)
            tar.addfile(info, io.BytesIO(data))
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


GOOD = [_dir("live"), _dir("archive"), _dir("archive/x"), _dir("archive/x/1"),
        _file("archive/x/1/privkey.pem", b"k", 0o600), _link("live/x", "../archive/x/1")]

UNSAFE: dict[str, tuple[list[tuple[tarfile.TarInfo, bytes]], str]] = {
    "dotdot": ([*GOOD, _file("sites/../../evil.toml")], "unsafe member name"),
    "dotdot-top": ([_file("../evil")], "unsafe member name"),
    "absolute": ([*GOOD, _file("/tmp/evil")], "unsafe member name"),
    "link-escapes": ([_dir("live"), _link("live/x", "../../../etc")], "points outside"),
    "link-absolute": ([_dir("live"), _link("live/x", "/etc/shadow")], "points outside"),
    "link-chain": ([_dir("live"), _link("live/a", ".."), _link("live/b", "a/../x")],
                   "through another symlink"),
    "below-link": ([*GOOD, _file("live/x/privkey.pem")], "below a non-directory"),
    "hardlink": ([*GOOD, _link("archive/x/1/cert.pem", "/etc/passwd", tarfile.LNKTYPE)],
                 "not a file, directory or symlink"),
    "fifo": ([*GOOD, _special("archive/x/1/pipe", tarfile.FIFOTYPE)],
             "not a file, directory or symlink"),
    "device": ([*GOOD, _special("archive/x/1/dev", tarfile.CHRTYPE)],
               "not a file, directory or symlink"),
    "foreign-top": ([*GOOD, _file("etc/cron.d/evil")], "unexpected member"),
    "duplicate": ([*GOOD, _file("archive/x/1/privkey.pem", b"other")], "appears twice"),
    "top-not-dir": ([_file("live")], "must be a directory"),
    "events-dir": ([_dir("events.jsonl")], "must be a regular file"),
}


def _assert_untouched(result: subprocess.CompletedProcess[str], target: Path,
                      parent_before: Snapshot, why: str) -> None:
    err = one_error_line(result)
    assert why in err, err
    assert snapshot(target.parent) == parent_before


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_archive_is_refused_and_nothing_written(tmp_path: Path, case: str) -> None:
    members, why = UNSAFE[case]
    archive = write_tar(tmp_path / "evil.tar.gz", members)
    # a new home: not even its directory appears
    target = tmp_path / "fresh" / "certsmith"
    target.parent.mkdir()
    _assert_untouched(cli(target, "restore", str(archive)), target, {}, why)
    # an existing home, even with --force
    existing = tmp_path / "existing" / "certsmith"
    make_home(existing, ("keep.example",))
    before = snapshot(existing.parent)
    _assert_untouched(cli(existing, "restore", "--force", str(archive)), existing, before, why)
    assert not (tmp_path / "etc").exists() and not (tmp_path / "evil").exists()


@pytest.mark.parametrize(("make", "why"), [
    (lambda p: write_tar(p, [_dir("sites")], manifest=None), "not a certsmith backup"),
    (lambda p: write_tar(p, [_dir("sites")], manifest=b"{not json"), "not a certsmith backup"),
    (lambda p: write_tar(p, [_dir("sites")], manifest=b'{"format": "other", "version": 1}'),
     "not a certsmith backup"),
    (lambda p: write_tar(p, [_dir("sites")], manifest=b'{"format": "certsmith-backup", '
                                                     b'"version": 99}'), "upgrade certsmith"),
    (lambda p: p.write_bytes(os.urandom(4096)) and p, "not a tar archive"),
    (lambda p: p.write_bytes(b"") or p, "not a tar archive"),
    (lambda p: p.write_bytes(write_tar(p, GOOD).read_bytes()[:200]) and p, "not a certsmith"),
], ids=["no-manifest", "bad-json", "other-format", "future-version", "random", "empty",
        "truncated"])
def test_foreign_or_damaged_archive_is_refused(tmp_path: Path, make: Callable[[Path], Path],
                                               why: str) -> None:
    archive = tmp_path / "file.tar.gz"
    make(archive)
    target = tmp_path / "fresh" / "certsmith"
    target.parent.mkdir()
    _assert_untouched(cli(target, "restore", str(archive)), target, {}, why)


def test_missing_archive(tmp_path: Path) -> None:
    assert "no such file" in one_error_line(cli(tmp_path / "h", "restore",
                                                 str(tmp_path / "nope.tgz")))
    assert not (tmp_path / "h").exists()


def test_good_handmade_archive_restores(tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "ok.tar.gz", GOOD)
    target = tmp_path / "h"
    result = cli(target, "restore", str(archive))
    assert result.returncode == 0, result.stderr
    assert (target / "live" / "x" / "privkey.pem").read_bytes() == b"k"
    assert stat.S_IMODE((target / "archive/x/1/privkey.pem").stat().st_mode) == 0o600


def test_setuid_bits_are_dropped(tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "s.tar.gz", [_dir("sites"), _file("sites/x.toml", b"", 0o4755)])
    target = tmp_path / "h"
    assert cli(target, "restore", str(archive)).returncode == 0
    assert stat.S_IMODE((target / "sites" / "x.toml").stat().st_mode) == 0o755


# -- property: whatever restore accepts stays inside the home -------------------------------------

_SEGMENT = st.sampled_from(["..", ".", "a", "b", "x", "live", "archive", ""])
# Mostly under real top-level entries, so that many archives pass the checks and get unpacked.
_NAME = st.builds(lambda top, rest: "/".join([top, *rest]),
                  st.sampled_from(["live", "archive", "sites", "live", "archive", ".."]),
                  st.lists(st.sampled_from(["a", "b", "x", "a", "b", "x", "..", "live"]),
                           max_size=3))
_MEMBER = st.one_of(
    st.builds(lambda n: _dir(n), _NAME),
    st.builds(lambda n: _file(n), _NAME),
    st.builds(lambda n, t: _link(n, t), _NAME,
              st.lists(_SEGMENT, min_size=1, max_size=5).map("/".join)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_MEMBER, max_size=6))
def test_accepted_archives_never_reach_outside(members: list[tuple[tarfile.TarInfo, bytes]]
                                               ) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        archive = write_tar(root / "p.tar.gz", members)
        home = root / "jail" / "home"
        try:
            backup_service.restore(archive, home)
        except CertsmithError:
            assert not (root / "jail").exists() or not any((root / "jail").iterdir())
            return
        real_home = os.path.realpath(home)
        for dirpath, dirnames, filenames in os.walk(home):
            for name in [*dirnames, *filenames]:
                resolved = os.path.realpath(os.path.join(dirpath, name))
                assert resolved == real_home or resolved.startswith(real_home + os.sep), \
                    (name, resolved)
        assert sorted(p.name for p in root.iterdir()) == ["jail", "p.tar.gz"]


# -- install records: a new machine learns what its web servers must serve -----------------------


def served_serial(port: int, name: str, root_pem: Path) -> int:
    context = ssl.create_default_context(cafile=str(root_pem))
    with socket.create_connection((LOOPBACK, port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=name) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_restore_brings_install_records_and_says_to_install_again(
        run_certsmith: RunCertsmith, pebble: Pebble, tmp_path: Path) -> None:
    """Old machine: get --lighttpd + install. Its backup restored into a fresh home holds the
    install records, and restore prints the install command that, run against a fresh
    lighttpd (the new machine's), serves the restored certificate."""
    root_pem = tmp_path / "pebble-root.pem"
    root_pem.write_text(pebble.root_pem())
    http_port, https_port = pebble.http_port, free_port()
    old = Lighttpd(http_port=http_port, https_port=https_port).start()
    try:
        home = old.workdir / "certsmith"
        env = old.certsmith_env()
        run_certsmith("get", "moved.test", "--lighttpd", "--http-port", http_port,
                      "--http-address", LOOPBACK, "--server", pebble.directory, "--agree-tos",
                      env=env, home=home, check=True)
        run_certsmith("install", "lighttpd", "moved.test", "--http-port", http_port,
                      "--https-port", https_port, "--listen-address", LOOPBACK, "--redirect",
                      "--hsts", env=env, home=home, check=True)
        record = (home / "installs" / "lighttpd" / "moved.test.json").read_bytes()
        file = tmp_path / "backup.tar.gz"
        run_certsmith("backup", file, home=home, check=True)
    finally:
        old.close()

    new = Lighttpd(http_port=http_port, https_port=https_port).start()
    try:
        fresh = new.workdir / "certsmith"
        restored = run_certsmith("restore", file, home=fresh, check=True)
        assert (fresh / "installs" / "lighttpd" / "moved.test.json").read_bytes() == record
        lines = restored.stdout.splitlines()
        assert lines[1] == "the web servers of the old machine served these; run on this one:"
        command = shlex.split(lines[2])
        assert command == ["certsmith", "install", "lighttpd", "moved.test", "--redirect", "308",
                           "--hsts", "63072000", "--listen-address", LOOPBACK,
                           "--http-port", str(http_port), "--https-port", str(https_port)]
        run_certsmith(*command[1:], env=new.certsmith_env(), home=fresh, check=True)
        live = x509.load_pem_x509_certificate(
            (fresh / "live" / "moved.test" / "cert.pem").read_bytes())
        wait_until(lambda: port_open(https_port), what="lighttpd's HTTPS listener")
        assert served_serial(https_port, "moved.test", root_pem) == live.serial_number
    finally:
        new.close()
