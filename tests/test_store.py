"""Filesystem store: atomic writes, modes, versions and the live switch, locks."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from certsmith.base.store.fs import FileStore
from certsmith.errors import LockedError, StoreError


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_private_files_and_dirs(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "home")
    store.put("accounts/ca/1/key.pem", b"secret", private=True)
    store.put("sites/x.toml", b"name = 'x'")
    home = tmp_path / "home"
    assert mode(home / "accounts/ca/1/key.pem") == 0o600
    for d in ("accounts", "accounts/ca", "accounts/ca/1", "archive", "ca", "state"):
        assert mode(home / d) == 0o700, d
    assert mode(home / "sites/x.toml") == 0o644
    assert store.get("accounts/ca/1/key.pem") == b"secret"
    assert store.list("sites") == ["sites/x.toml"]
    assert not [p for p in (home / "sites").iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../b", "", "a//b"])
def test_keys_cannot_escape(tmp_path: Path, key: str) -> None:
    with pytest.raises(StoreError):
        FileStore(tmp_path).put(key, b"x")


def test_publish_switches_all_files_at_once(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    files = {"cert.pem": b"c1", "chain.pem": b"ch1", "fullchain.pem": b"c1ch1",
             "privkey.pem": b"k1"}
    assert store.publish("ex", files, frozenset({"privkey.pem"})) == 1
    live = store.live_path("ex")
    assert live.is_symlink() and os.readlink(live) == "../archive/ex/1"
    assert (live / "privkey.pem").read_bytes() == b"k1"
    assert mode(live / "privkey.pem") == 0o600 and mode(live / "cert.pem") == 0o644
    files2 = {k: v.replace(b"1", b"2") for k, v in files.items()}
    assert store.publish("ex", files2, frozenset({"privkey.pem"})) == 2
    assert (live / "fullchain.pem").read_bytes() == b"c2ch2"
    assert (tmp_path / "archive/ex/1/privkey.pem").read_bytes() == b"k1"
    assert list(store.versions("ex")) == [1, 2] and store.live_version("ex") == 2


def test_publish_removes_staging_left_by_a_dead_process(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.ensure()
    stale = tmp_path / "archive/ex/.1.999999999.tmp"
    stale.mkdir(parents=True)
    (stale / "privkey.pem").write_bytes(b"half")
    store.publish("ex", {"cert.pem": b"c"}, frozenset())
    assert not stale.exists()
    assert store.live_version("ex") == 1


def _hold(home: str, started: multiprocessing.synchronize.Event,
          release: multiprocessing.synchronize.Event) -> None:
    with FileStore(Path(home)).lock("cert-x"):
        started.set()
        release.wait(30)


def test_lock_excludes_other_processes_and_dies_with_them(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    started, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold, args=(str(tmp_path), started, release))
    proc.start()
    assert started.wait(30)
    store = FileStore(tmp_path)
    with pytest.raises(LockedError), store.lock("cert-x", wait=0):
        pass
    proc.kill()
    proc.join()
    with store.lock("cert-x", wait=0):
        pass
