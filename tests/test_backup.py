"""certsmith backup / restore: a realistic state directory round-trips bytes, links and modes;
unsafe or foreign archives are refused with one line and nothing written."""

from __future__ import annotations

import datetime as dt
import gzip
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
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from certsmith.base import events
from certsmith.base.store.fs import FileStore
from certsmith.errors import CertsmithError
from certsmith.services import backup as backup_service
from certsmith.services import backup_manifest
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


def key_and_cert(name: str) -> tuple[bytes, bytes]:
    """A real key and a self-signed certificate for it (restore checks that they match)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def make_home(home: Path, names: tuple[str, ...] = ("example.com", "app.internal")) -> None:
    """A state directory as the manager leaves it: sites, an account, versions, state, log."""
    store = FileStore(home)
    store.ensure()
    store.put("accounts/acme-v02.api.letsencrypt.org/1a2b/account.json", b'{"uri": "x"}')
    store.put(
        "accounts/acme-v02.api.letsencrypt.org/1a2b/key.pem",
        b"-----BEGIN PRIVATE KEY-----\naccount\n-----END PRIVATE KEY-----\n",
        private=True,
    )
    store.put("ca/rootCA-key.pem", b"local ca key\n", private=True)
    store.put("ca/rootCA.pem", b"local ca cert\n")
    for i, name in enumerate(names):
        store.put(f"sites/{name}.toml", f'name = "{name}"\nnames = ["{name}"]\n'.encode())
        for _version in range(1, 3 + i):
            key_pem, cert_pem = key_and_cert(name)
            store.publish(
                name,
                {
                    "cert.pem": cert_pem,
                    "chain.pem": b"chain\n",
                    "fullchain.pem": cert_pem + b"chain\n",
                    "privkey.pem": key_pem,
                    "meta.json": b"{}",
                },
                frozenset({"privkey.pem"}),
            )
        store.put(f"state/{name}.json", b'{"failures": 0}', private=True)
        events.record(home, "issued", name)
    with store.lock("example.com"):
        pass  # leaves locks/, which a backup does not need


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTSMITH_")}
    return subprocess.run(
        [sys.executable, "-m", "certsmith", "--home", str(home), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert result.stderr.startswith("certsmith: ") and result.stderr.count("\n") == 1, result.stderr
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
    assert result.stdout == (
        f"backed up 2 certificates (app.internal, example.com), 1 account, 34 files -> {file}\n"
    )
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["old", file.name])  # no temp

    with tarfile.open(file) as tar:
        members = tar.getmembers()
        assert members[0].name == backup_service.MANIFEST
        f = tar.extractfile(members[0])
        assert f is not None
        manifest = json.loads(f.read())
    assert manifest["format"] == "certsmith-backup" and manifest["version"] == 2
    assert manifest["certificates"] == ["app.internal", "example.com"]
    names = {m.name for m in members}
    assert "archive/example.com/2/privkey.pem" in names and "live/app.internal" in names
    assert not any(n.startswith("locks") or n.endswith(".tmp") for n in names)

    new = tmp_path / "new" / "certsmith"
    result = cli(new, "restore", str(file))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"restored 2 certificates (app.internal, example.com), 1 account, 34 files into {new}\n"
    )
    assert snapshot(new) == without_locks(snapshot(home))
    assert stat.S_IMODE(new.stat().st_mode) == 0o755
    live = new / "live" / "app.internal"
    assert os.readlink(live) == "../archive/app.internal/3"
    assert (live / "privkey.pem").read_bytes() == (
        home / "archive" / "app.internal" / "3" / "privkey.pem"
    ).read_bytes()
    assert stat.S_IMODE((live / "privkey.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((new / "accounts").stat().st_mode) == 0o700
    assert [e["event"] for e in events.read(new)] == ["issued", "issued"]
    # and the restored home is usable by the store
    assert list(FileStore(new).versions("example.com")) == [1, 2]
    assert FileStore(new).live_version("app.internal") == 3
    assert not list(new.parent.glob(".*.tmp"))


def test_restore_into_existing_empty_home_and_refusal_without_force(
    home: Path, tmp_path: Path
) -> None:
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


def test_backup_replaces_the_file_atomically(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "b.tar.gz"
    file.write_bytes(b"previous backup")
    file.chmod(0o644)
    real_addfile = tarfile.TarFile.addfile
    calls = 0

    def failing_addfile(
        self: tarfile.TarFile, info: tarfile.TarInfo, fileobj: object = None
    ) -> None:
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
        cli(home, "backup", str(home / "sites" / "b.tgz"))
    )
    assert "is a directory" in one_error_line(cli(home, "backup", str(tmp_path)))
    assert "no directory" in one_error_line(cli(home, "backup", str(tmp_path / "no" / "b.tgz")))
    assert "nothing to back up" in one_error_line(
        cli(tmp_path / "missing", "backup", str(tmp_path / "b.tgz"))
    )
    assert not (tmp_path / "b.tgz").exists()


# -- refusals --------------------------------------------------------------------------------------

AUTO = b"auto"  # write_tar: a valid manifest listing the members, as 'certsmith backup' writes


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


_KINDS = {
    tarfile.REGTYPE: "file",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "link",
    tarfile.LNKTYPE: "hardlink",
    tarfile.FIFOTYPE: "fifo",
    tarfile.CHRTYPE: "device",
}


def manifest_for(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    import hashlib

    entries = [
        backup_manifest.Entry(
            info.name,
            _KINDS[info.type],
            info.mode,
            int(info.mtime),
            size=len(data) if info.isreg() else 0,
            sha256=hashlib.sha256(data).hexdigest() if info.isreg() else "",
            target=info.linkname,
        )
        for info, data in members
    ]
    return backup_manifest.encode({"certificates": ["x"]}, entries)


def write_tar(
    path: Path, members: list[tuple[tarfile.TarInfo, bytes]], manifest: bytes | None = AUTO
) -> Path:
    if manifest == AUTO:
        manifest = manifest_for(members)
    with tarfile.open(path, "w:gz") as tar:
        if manifest is not None:
            info, data = _file(backup_service.MANIFEST, manifest)
            tar.addfile(info, io.BytesIO(data))
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


GOOD = [
    _dir("live"),
    _dir("archive"),
    _dir("archive/x"),
    _dir("archive/x/1"),
    _file("archive/x/1/privkey.pem", b"k", 0o600),
    _link("live/x", "../archive/x/1"),
]

UNSAFE: dict[str, tuple[list[tuple[tarfile.TarInfo, bytes]], str]] = {
    "dotdot": ([*GOOD, _file("sites/../../evil.toml")], "unsafe member name"),
    "dotdot-top": ([_file("../evil")], "unsafe member name"),
    "absolute": ([*GOOD, _file("/tmp/evil")], "unsafe member name"),
    "link-escapes": ([_dir("live"), _link("live/x", "../../../etc")], "points outside"),
    "link-absolute": ([_dir("live"), _link("live/x", "/etc/shadow")], "points outside"),
    "link-chain": (
        [_dir("live"), _link("live/a", ".."), _link("live/b", "a/../x")],
        "through another symlink",
    ),
    "below-link": ([*GOOD, _file("live/x/privkey.pem")], "below a non-directory"),
    "hardlink": (
        [*GOOD, _link("archive/x/1/cert.pem", "/etc/passwd", tarfile.LNKTYPE)],
        "not a file, directory or symlink",
    ),
    "fifo": (
        [*GOOD, _special("archive/x/1/pipe", tarfile.FIFOTYPE)],
        "not a file, directory or symlink",
    ),
    "device": (
        [*GOOD, _special("archive/x/1/dev", tarfile.CHRTYPE)],
        "not a file, directory or symlink",
    ),
    "foreign-top": ([*GOOD, _file("etc/cron.d/evil")], "unexpected member"),
    "duplicate": ([*GOOD, _file("archive/x/1/privkey.pem", b"other")], "appears twice"),
    "top-not-dir": ([_file("live")], "must be a directory"),
    "events-dir": ([_dir("events.jsonl")], "must be a regular file"),
    "link-outside-live": ([*GOOD, _link("archive/x/2", "1")], "only live/<name> entries"),
    "link-dangling": (
        [_dir("live"), _dir("archive"), _link("live/x", "../archive/x/9")],
        "not an archived version of x",
    ),
    "link-other-name": ([*GOOD, _link("live/y", "../archive/x/1")], "not an archived version of y"),
}


def _assert_untouched(
    result: subprocess.CompletedProcess[str], target: Path, parent_before: Snapshot, why: str
) -> None:
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


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda p: write_tar(p, [_dir("sites")], manifest=None), "not a certsmith backup"),
        (lambda p: write_tar(p, [_dir("sites")], manifest=b"{not json"), "not a certsmith backup"),
        (
            lambda p: write_tar(p, [_dir("sites")], manifest=b'{"format": "other", "version": 1}'),
            "not a certsmith backup",
        ),
        (
            lambda p: write_tar(
                p, [_dir("sites")], manifest=b'{"format": "certsmith-backup", "version": 99}'
            ),
            "upgrade certsmith",
        ),
        (
            lambda p: write_tar(
                p,
                GOOD,
                manifest=b'{"format": "certsmith-backup", "version": 1, "certificates": ["x"]}',
            ),
            "has no checksums",
        ),
        (lambda p: p.write_bytes(os.urandom(4096)) and p, "not a tar archive"),
        (lambda p: p.write_bytes(b"") or p, "not a tar archive"),
        (lambda p: p.write_bytes(write_tar(p, GOOD).read_bytes()[:200]) and p, "not a certsmith"),
    ],
    ids=[
        "no-manifest",
        "bad-json",
        "other-format",
        "future-version",
        "unverifiable-v1",
        "random",
        "empty",
        "truncated",
    ],
)
def test_foreign_or_damaged_archive_is_refused(
    tmp_path: Path, make: Callable[[Path], Path], why: str
) -> None:
    archive = tmp_path / "file.tar.gz"
    make(archive)
    target = tmp_path / "fresh" / "certsmith"
    target.parent.mkdir()
    _assert_untouched(cli(target, "restore", str(archive)), target, {}, why)


def test_missing_archive(tmp_path: Path) -> None:
    assert "no such file" in one_error_line(
        cli(tmp_path / "h", "restore", str(tmp_path / "nope.tgz"))
    )
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
    assert stat.S_IMODE((target / "sites" / "x.toml").stat().st_mode) == 0o644


# -- property: whatever restore accepts stays inside the home -------------------------------------

_SEGMENT = st.sampled_from(["..", ".", "a", "b", "x", "live", "archive", ""])
# Mostly under real top-level entries, so that many archives pass the checks and get unpacked.
_NAME = st.builds(
    lambda top, rest: "/".join([top, *rest]),
    st.sampled_from(["live", "archive", "sites", "live", "archive", ".."]),
    st.lists(st.sampled_from(["a", "b", "x", "a", "b", "x", "..", "live"]), max_size=3),
)
_MEMBER = st.one_of(
    st.builds(lambda n: _dir(n), _NAME),
    st.builds(lambda n: _file(n), _NAME),
    st.builds(
        lambda n, t: _link(n, t), _NAME, st.lists(_SEGMENT, min_size=1, max_size=5).map("/".join)
    ),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_MEMBER, max_size=6))
def test_accepted_archives_never_reach_outside(
    members: list[tuple[tarfile.TarInfo, bytes]],
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
                assert resolved == real_home or resolved.startswith(real_home + os.sep), (
                    name,
                    resolved,
                )
        assert sorted(p.name for p in root.iterdir()) == ["jail", "p.tar.gz"]


# -- install records: a new machine learns what its web servers must serve -----------------------


def served_serial(port: int, name: str, root_pem: Path) -> int:
    context = ssl.create_default_context(cafile=str(root_pem))
    with (
        socket.create_connection((LOOPBACK, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_restore_brings_install_records_and_says_to_install_again(
    run_certsmith: RunCertsmith, pebble: Pebble, tmp_path: Path
) -> None:
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
        run_certsmith(
            "get",
            "moved.test",
            "--lighttpd",
            "--http-port",
            http_port,
            "--http-address",
            LOOPBACK,
            "--server",
            pebble.directory,
            "--agree-tos",
            env=env,
            home=home,
            check=True,
        )
        run_certsmith(
            "install",
            "lighttpd",
            "moved.test",
            "--http-port",
            http_port,
            "--https-port",
            https_port,
            "--listen-address",
            LOOPBACK,
            "--redirect",
            "--hsts",
            env=env,
            home=home,
            check=True,
        )
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
        assert command == [
            "certsmith",
            "install",
            "lighttpd",
            "moved.test",
            "--redirect",
            "308",
            "--hsts",
            "63072000",
            "--listen-address",
            LOOPBACK,
            "--http-port",
            str(http_port),
            "--https-port",
            str(https_port),
        ]
        run_certsmith(*command[1:], env=new.certsmith_env(), home=fresh, check=True)
        live = x509.load_pem_x509_certificate(
            (fresh / "live" / "moved.test" / "cert.pem").read_bytes()
        )
        wait_until(lambda: port_open(https_port), what="lighttpd's HTTPS listener")
        assert served_serial(https_port, "moved.test", root_pem) == live.serial_number
    finally:
        new.close()


# -- damaged backups: every kind of flipped byte is refused before the home changes -------------


def _flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


def _tar_offsets(tar_bytes: bytes) -> dict[str, int]:
    """Offsets in the uncompressed tar of a real backup, one or two per kind of damage."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        members = {m.name: m for m in tar.getmembers()}
    key = members["archive/example.com/2/privkey.pem"]
    cert = members["archive/app.internal/3/cert.pem"]
    link = members["live/app.internal"]
    manifest = members[backup_service.MANIFEST]
    sites = members["sites/example.com.toml"]
    key_header = key.offset_data - 512
    link_header = link.offset_data - 512
    return {
        # tar headers: the name, mode, size, checksum and link-target fields
        "header-name": key_header + 20,
        "header-mode": key_header + 100 + 4,
        "header-size": key_header + 124 + 9,
        "header-checksum": key_header + 148 + 3,
        "header-link-target": link_header + 157 + len(link.linkname) - 1,
        "header-first": 0,
        # member data
        "data-key": key.offset_data + 40,
        "data-cert": cert.offset_data + cert.size // 2,
        "data-site": sites.offset_data + 3,
        # the manifest: its JSON syntax, a digest in it, its own seal
        "manifest-start": manifest.offset_data,
        "manifest-digest": manifest.offset_data
        + max(
            0,
            tar_bytes[manifest.offset_data : manifest.offset_data + manifest.size].find(
                b'"sha256": "'
            ),
        )
        + 20,
        "manifest-seal": manifest.offset_data + manifest.size - 10,
    }


@pytest.fixture(scope="module")
def real_backup(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A backup made by the CLI of a realistic home (two certificates, a local CA, an
    account)."""
    base = tmp_path_factory.mktemp("real-backup")
    make_home(base / "home")
    result = cli(base / "home", "backup", str(base / "b.tar.gz"))
    assert result.returncode == 0, result.stderr
    return (base / "b.tar.gz").read_bytes()


def _damaged(real: bytes, case: str) -> bytes:
    kind, _, where = case.partition(":")
    if kind == "tar":  # damage inside the tar, under an intact gzip envelope
        tar_bytes = gzip.decompress(real)
        return gzip.compress(_flip(tar_bytes, _tar_offsets(tar_bytes)[where]))
    if where == "cut-trailer":
        return real[:-4]
    if where == "cut-stream":
        return real[:-8]
    offset = {
        "trailer-crc": -8,
        "trailer-crc-last": -5,
        "trailer-size": -4,
        "deflate-early": len(real) // 10,
        "deflate-middle": len(real) // 2,
        "deflate-late": len(real) - 40,
    }[where]
    return _flip(real, offset % len(real))


DAMAGE = [
    f"tar:{k}"
    for k in (
        "header-name",
        "header-mode",
        "header-size",
        "header-checksum",
        "header-link-target",
        "header-first",
        "data-key",
        "data-cert",
        "data-site",
        "manifest-start",
        "manifest-digest",
        "manifest-seal",
    )
] + [
    f"gzip:{k}"
    for k in (
        "trailer-crc",
        "trailer-crc-last",
        "trailer-size",
        "cut-trailer",
        "cut-stream",
        "deflate-early",
        "deflate-middle",
        "deflate-late",
    )
]


@pytest.mark.parametrize("case", DAMAGE)
def test_damaged_backup_is_refused_before_the_home_changes(
    real_backup: bytes, tmp_path: Path, case: str
) -> None:
    archive = tmp_path / "damaged.tar.gz"
    archive.write_bytes(_damaged(real_backup, case))
    existing = tmp_path / "existing" / "certsmith"
    make_home(existing, ("keep.example",))
    before = snapshot(existing.parent)
    result = cli(existing, "restore", "--force", str(archive))
    err = one_error_line(result)
    assert "not a certsmith backup" in err or f"refusing to restore {archive}" in err, err
    assert "restored" not in result.stdout
    assert snapshot(existing.parent) == before  # byte for byte: nothing moved, nothing deleted
    fresh = tmp_path / "fresh" / "certsmith"
    fresh.parent.mkdir()
    one_error_line(cli(fresh, "restore", str(archive)))
    assert list(fresh.parent.iterdir()) == []


def test_damage_names_what_is_wrong(real_backup: bytes, tmp_path: Path) -> None:
    archive = tmp_path / "d.tar.gz"
    target = tmp_path / "h"
    for case, why in (
        (
            "tar:data-key",
            "archive/example.com/2/privkey.pem does not match its checksum in the manifest",
        ),
        ("tar:header-checksum", "the archive ends before archive/example.com/2/privkey.pem"),
        ("tar:manifest-digest", "certsmith-backup.json does not match its checksum"),
        ("gzip:trailer-crc", "the compressed data is damaged"),
        ("gzip:cut-trailer", "the compressed data is damaged"),
    ):
        archive.write_bytes(_damaged(real_backup, case))
        err = one_error_line(cli(target, "restore", str(archive)))
        assert why in err, (case, err)
        assert not target.exists()


def test_force_replaces_only_what_the_archive_carries_and_says_so(tmp_path: Path) -> None:
    """A backup without a local CA, restored with --force over a home that has one: the CA
    (its root key) stays; what is replaced is named before (refusal) and after (--force)."""
    old = tmp_path / "old"
    make_home(old, ("moved.example",))
    for f in (old / "ca").iterdir():
        f.unlink()
    file = tmp_path / "b.tar.gz"
    assert cli(old, "backup", str(file)).returncode == 0
    here = tmp_path / "here"
    make_home(here, ("here.example",))
    ca_before = snapshot(here / "ca")
    err = one_error_line(cli(here, "restore", str(file)))
    assert f"{here} already has certificates (here.example), 1 other file; use --force" in err, (
        err
    )  # (the account is the same in both: it is not lost)
    result = cli(here, "restore", "--force", str(file))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1] == (
        "replaced what was there: certificates (here.example), 1 other file"
    )
    assert snapshot(here / "ca") == ca_before and (here / "ca" / "rootCA-key.pem").is_file()
    assert FileStore(here).live_version("moved.example") == 2
    assert not (here / "live" / "here.example").exists()
    # the same backup again: nothing differs, so no --force is needed and nothing is replaced
    again = cli(here, "restore", str(file))
    assert again.returncode == 0, again.stderr
    assert len(again.stdout.splitlines()) == 1


# -- a backup is a consistent snapshot, even while certificates renew ----------------------------

RENEWER = """
import sys
from pathlib import Path
from certsmith.base.identifiers import parse_identifier
from certsmith.services.proxy.certs import ensure_local

home, stop, names = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
ids = {n: (parse_identifier(n),) for n in names}
for n in names:
    ensure_local(home, n, ids[n], force=True)
print("ready", flush=True)
for i in range(5000):  # bounded: the test stops it long before
    if stop.exists():
        break
    name = names[i % len(names)]
    ensure_local(home, name, ids[name], force=True)
print(i, flush=True)
"""


@pytest.mark.slow  # a renewer process and sixteen CLI runs
def test_backups_taken_during_renewals_are_all_restorable(tmp_path: Path) -> None:
    """Local-CA renewals run without pause (the same lineage writer and lock the proxy's
    renewals use) while the CLI takes backups: every backup restores, and in every restored
    home each live/ link resolves to a version whose key matches its certificate."""
    home = tmp_path / "home"
    FileStore(home).ensure()
    names = [f"app{i}.internal" for i in range(8)]
    stop = tmp_path / "stop"
    renewer = subprocess.Popen(
        [sys.executable, "-c", RENEWER, str(home), str(stop), *names],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert renewer.stdout is not None
        assert renewer.stdout.readline() == "ready\n", (
            renewer.stderr.read() if renewer.stderr else ""
        )
        problems = []
        for n in range(8):
            file = tmp_path / f"b{n}.tar.gz"
            result = cli(home, "backup", str(file))
            assert result.returncode == 0, result.stderr
            new = tmp_path / f"restored{n}"
            restored = cli(new, "restore", str(file))
            if restored.returncode != 0:
                problems.append(restored.stderr.strip())
                continue
            for name in names:
                live = new / "live" / name
                if not (live / "cert.pem").is_file():
                    problems.append(f"backup {n}: live/{name} -> {os.readlink(live)} dangles")
                    continue
                key = (live / "privkey.pem").read_bytes()
                cert = x509.load_pem_x509_certificate((live / "cert.pem").read_bytes())
                pub = serialization.load_pem_private_key(key, None).public_key()
                fmt = serialization.PublicFormat.SubjectPublicKeyInfo
                assert pub.public_bytes(
                    serialization.Encoding.DER, fmt
                ) == cert.public_key().public_bytes(serialization.Encoding.DER, fmt)
        assert problems == []
    finally:
        stop.touch()
        out, err = renewer.communicate(timeout=120)
    assert renewer.returncode == 0, err
    assert int(out.split()[-1]) > len(names)  # renewals did run during the backups


# -- an unreadable file or directory fails the backup ---------------------------------------------


@pytest.fixture
def nobody_home() -> Iterator[Path]:
    """A state directory whose mode bits apply to the CLI: root ignores them, so the test runs
    certsmith as root without the capabilities that override them (see ``cli_as_nobody``),
    which also works where the checkout itself is out of an unprivileged user's reach."""
    import shutil

    base = Path(tempfile.mkdtemp(prefix="certsmith-backup-"))
    try:
        base.chmod(0o755)
        make_home(base / "home")
        (base / "out").mkdir()
        yield base
    finally:
        shutil.rmtree(base)


def cli_as_nobody(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTSMITH_")}
    env["HOME"] = str(home.parent)
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    return subprocess.run(
        [*drop, sys.executable, "-m", "certsmith", "--home", str(home), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "unreadable", ["archive/example.com/1", "archive/app.internal/3/privkey.pem", "accounts"]
)
def test_unreadable_entry_fails_the_backup(nobody_home: Path, unreadable: str) -> None:
    home, out = nobody_home / "home", nobody_home / "out"
    ok = cli_as_nobody(home, "backup", str(out / "first.tar.gz"))
    assert ok.returncode == 0, ok.stderr  # the user can back up this home...
    (out / "first.tar.gz").unlink()
    (home / unreadable).chmod(0o000)
    result = cli_as_nobody(home, "backup", str(out / "b.tar.gz"))
    err = one_error_line(result)  # ...but not one with an entry it cannot read
    assert f"cannot read {home / unreadable}: Permission denied" in err, err
    assert result.stdout == ""
    assert list(out.iterdir()) == []  # no archive, no temporary file


# -- restore defects: mismatched keys, modes, endless input ---------------------------------------


def test_key_that_does_not_match_its_certificate_is_refused(home: Path, tmp_path: Path) -> None:
    other_key, _ = key_and_cert("other")
    (home / "archive" / "example.com" / "1" / "privkey.pem").write_bytes(other_key)
    file = tmp_path / "b.tar.gz"
    assert cli(home, "backup", str(file)).returncode == 0  # (the checksums are of these bytes)
    target = tmp_path / "new"
    err = one_error_line(cli(target, "restore", str(file)))
    assert (
        "archive/example.com/1/privkey.pem does not match archive/example.com/1/cert.pem" in err
    ), err
    assert not target.exists()


def test_modes_are_normalised(tmp_path: Path) -> None:
    key, cert = key_and_cert("x")
    members = [
        _dir("sites"),
        _file("sites/x.toml", b"", 0o6777),
        _dir("archive"),
        _dir("archive/x"),
        _dir("archive/x/1"),
        _file("archive/x/1/privkey.pem", key, 0o777),
        _file("archive/x/1/cert.pem", cert, 0o7755),
        _dir("state"),
        _file("state/x.json", b"{}", 0o4640),
        _dir("live"),
        _link("live/x", "../archive/x/1"),
    ]
    members[4][0].mode = 0o7777  # archive/x/1
    target = tmp_path / "h"
    result = cli(target, "restore", str(write_tar(tmp_path / "m.tar.gz", members)))
    assert result.returncode == 0, result.stderr

    def mode(rel: str) -> int:
        return stat.S_IMODE((target / rel).stat().st_mode)

    assert mode("sites/x.toml") == 0o644
    assert mode("archive/x/1") == 0o755
    assert mode("archive/x/1/privkey.pem") == 0o600
    assert mode("archive/x/1/cert.pem") == 0o644
    assert mode("state/x.json") == 0o640  # narrowed, never widened


def test_restore_of_an_endless_file_ends(tmp_path: Path) -> None:
    target = tmp_path / "h"
    assert "not a regular file" in one_error_line(cli(target, "restore", "/dev/zero"))
    # endless-looking input inside a real archive: far more bytes than the manifest announces
    good = tmp_path / "good.tar.gz"
    write_tar(good, GOOD)
    padded = tmp_path / "padded.tar.gz"
    padded.write_bytes(gzip.compress(gzip.decompress(good.read_bytes()) + b"\x01" * (32 << 20)))
    assert "longer than its manifest allows" in one_error_line(cli(target, "restore", str(padded)))
    assert not target.exists()


def test_member_missing_from_the_manifest_is_refused(tmp_path: Path) -> None:
    manifest = manifest_for(GOOD)
    archive = write_tar(
        tmp_path / "x.tar.gz", [*GOOD, _file("sites/extra.toml")], manifest=manifest
    )
    target = tmp_path / "h"
    assert "members its manifest does not list" in one_error_line(
        cli(target, "restore", str(archive))
    )
    assert not target.exists()


def test_force_names_a_replaced_local_ca(home: Path, tmp_path: Path) -> None:
    file = tmp_path / "b.tar.gz"
    assert cli(home, "backup", str(file)).returncode == 0
    here = tmp_path / "here"
    make_home(here, ("example.com", "app.internal"))
    (here / "ca" / "rootCA-key.pem").write_bytes(b"this machine's own CA key\n")
    err = one_error_line(cli(here, "restore", str(file)))
    assert "a local CA with its root key" in err and "--force" in err, err
    result = cli(here, "restore", "--force", str(file))
    assert result.returncode == 0, result.stderr
    assert "replaced what was there: " in result.stdout
    assert "a local CA with its root key" in result.stdout.splitlines()[1]
    assert (here / "ca" / "rootCA-key.pem").read_bytes() == b"local ca key\n"
