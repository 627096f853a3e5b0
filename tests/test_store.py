"""The Store contract, run against every store implementation (``STORES``; a new backend adds
its name and a branch in ``make_store`` and must pass unchanged), then what only the
filesystem store promises: atomic writes, modes, versions and the live switch as symlinks."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from certsmith.base.store import Store
from certsmith.base.store.fs import FileStore
from certsmith.errors import LockedError, StaleLeaseError, StoreError
from tests.support.postgres import node_store

STORES = ["fs", "pg"]
CERT_FILES = {
    "cert.pem": b"c1",
    "chain.pem": b"ch1",
    "fullchain.pem": b"c1ch1",
    "privkey.pem": b"k1",
}
PRIVATE = frozenset({"privkey.pem"})


def make_store(kind: str, where: Path) -> Store:
    """A store of ``kind`` whose state is at ``where``; two calls with the same ``where`` are
    two nodes (or processes) sharing one state."""
    if kind == "fs":
        return FileStore(where)
    if kind == "pg":
        return node_store(where)
    raise AssertionError(kind)


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "pg":
        request.getfixturevalue("postgres")  # the session's cluster, for node_store
    return str(request.param)


@pytest.fixture
def store(store_kind: str, tmp_path: Path) -> Store:
    return make_store(store_kind, tmp_path / "state")


# -- the contract -------------------------------------------------------------------------------


def test_keyed_bytes_round_trip(store: Store) -> None:
    assert store.get("sites/a.toml") is None and not store.exists("sites/a.toml")
    assert store.list("sites") == []
    store.put("sites/a.toml", b"one")
    store.put("sites/b.toml", b"two")
    store.put("sites/a.toml", b"three")  # replaced whole
    assert store.get("sites/a.toml") == b"three" and store.exists("sites/a.toml")
    assert store.list("sites") == ["sites/a.toml", "sites/b.toml"]
    store.put("accounts/ca/1/key.pem", b"secret", private=True)
    assert store.get("accounts/ca/1/key.pem") == b"secret"
    store.delete("sites/a.toml")
    store.delete("sites/missing.toml")  # deleting what is not there is fine
    assert store.list("sites") == ["sites/b.toml"] and store.get("sites/a.toml") is None


def test_append_keeps_every_record_whole(store_kind: str, tmp_path: Path) -> None:
    one, two = (make_store(store_kind, tmp_path / "state") for _ in range(2))
    for i in range(3):
        one.append("events.jsonl", b"one %d\n" % i)
        two.append("events.jsonl", b"two %d\n" % i)
    lines = (one.get("events.jsonl") or b"").splitlines()
    assert lines == [b"one 0", b"two 0", b"one 1", b"two 1", b"one 2", b"two 2"]


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../b", "", "a//b"])
def test_contract_refuses_escaping_keys(store: Store, key: str) -> None:
    with pytest.raises(StoreError):
        store.put(key, b"x")


def test_another_handle_sees_the_same_state(store_kind: str, tmp_path: Path) -> None:
    one, two = (make_store(store_kind, tmp_path / "state") for _ in range(2))
    one.put("sites/a.toml", b"a")
    assert two.get("sites/a.toml") == b"a"
    assert one.publish("ex", CERT_FILES, PRIVATE) == 1
    assert two.live_version("ex") == 1 and list(two.versions("ex")) == [1]


def test_another_nodes_publish_is_materialized_here(store_kind: str, tmp_path: Path) -> None:
    one, two = (make_store(store_kind, tmp_path / "state") for _ in range(2))
    assert two.materialize("ex") is False  # nothing published yet
    one.publish("ex", CERT_FILES, PRIVATE)
    two.materialize("ex")
    live = two.live_path("ex")
    assert (live / "fullchain.pem").read_bytes() == b"c1ch1"
    assert stat.S_IMODE((live / "privkey.pem").stat().st_mode) == 0o600
    assert two.materialize("ex") is False  # already showing the live version
    second = {k: v.replace(b"1", b"2") for k, v in CERT_FILES.items()}
    one.publish("ex", second, PRIVATE)
    two.materialize("ex")
    assert (two.live_path("ex") / "privkey.pem").read_bytes() == b"k2"
    one.relink("ex", 1)  # a repair on one node reaches the other the same way
    two.materialize("ex")
    assert (two.live_path("ex") / "cert.pem").read_bytes() == b"c1"


def test_versions_publish_relink_and_materialize(store: Store) -> None:
    assert store.live_version("ex") is None and list(store.versions("ex")) == []
    assert store.publish("ex", CERT_FILES, PRIVATE) == 1
    second = {k: v.replace(b"1", b"2") for k, v in CERT_FILES.items()}
    assert store.publish("ex", second, PRIVATE) == 2
    assert list(store.versions("ex")) == [1, 2] and store.live_version("ex") == 2
    # Web servers read the live files from local disk, whatever holds the state.
    assert (store.live_path("ex") / "fullchain.pem").read_bytes() == b"c2ch2"
    store.relink("ex", 1)
    assert store.live_version("ex") == 1
    assert (store.live_path("ex") / "privkey.pem").read_bytes() == b"k1"


def test_lease_excludes_and_tokens_grow(store: Store) -> None:
    with store.lock("cert-x", ttl=30) as first:
        assert first.name == "cert-x"
        with pytest.raises(LockedError), store.lock("cert-x", wait=0):
            pass
        first.renew(30)
        token = first.token
    with store.lock("cert-x", wait=0) as second:
        assert second.token > token
    with store.lock("cert-y", wait=0):  # another name is independent
        pass


def test_stale_fencing_token_is_refused(store: Store) -> None:
    stale = store.lock("cert-ex")
    stale.token  # noqa: B018 (drawn while it was the holder)
    store.put("state/ex.json", b"by the first holder", fence=stale)
    stale.release()
    with pytest.raises(StaleLeaseError):
        stale.renew()
    with store.lock("cert-ex", wait=0) as current:
        store.put("state/ex.json", b"by the second holder", fence=current)
        for write in (
            lambda: store.put("state/ex.json", b"late", fence=stale),
            lambda: store.delete("state/ex.json", fence=stale),
            lambda: store.publish("ex", CERT_FILES, PRIVATE, fence=stale),
        ):
            with pytest.raises(StaleLeaseError):
                write()
        assert store.get("state/ex.json") == b"by the second holder"
        assert store.live_version("ex") is None and list(store.versions("ex")) == []
        assert store.publish("ex", CERT_FILES, PRIVATE, fence=current) == 1
        store.relink("ex", 1, fence=current)


def test_a_lease_taken_but_never_used_cannot_write_after_release(store: Store) -> None:
    idle = store.lock("cert-ex")
    idle.release()
    with store.lock("cert-ex"), pytest.raises(StaleLeaseError):
        store.put("state/ex.json", b"x", fence=idle)
    assert store.get("state/ex.json") is None


# -- the filesystem store ---------------------------------------------------------------------


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
    files = {
        "cert.pem": b"c1",
        "chain.pem": b"ch1",
        "fullchain.pem": b"c1ch1",
        "privkey.pem": b"k1",
    }
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


def _hold(
    home: str,
    started: multiprocessing.synchronize.Event,
    release: multiprocessing.synchronize.Event,
) -> None:
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
