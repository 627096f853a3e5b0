"""What only the PostgreSQL store promises, beyond the Store contract (tests/test_store.py):
leases that expire on the database's clock and fence a paused holder out, private data sealed
at rest (a pg_dump holds no private key), the key file's checks, live files materialized on each
node, the schema's version, and one line when the database cannot be reached."""

from __future__ import annotations

import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from certsmith.base.store.pg import MIGRATIONS, PostgresStore
from certsmith.errors import LockedError, StaleLeaseError, StoreError
from tests.support.net import free_port, wait_until
from tests.support.postgres import Postgres, database_name, node_store

PEM_KEY = (
    b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n"
    b"-----END PRIVATE KEY-----\n"
)
FILES = {
    "cert.pem": b"-----BEGIN CERTIFICATE-----\nc1\n-----END CERTIFICATE-----\n",
    "chain.pem": b"ch1",
    "fullchain.pem": b"c1ch1",
    "privkey.pem": PEM_KEY,
}
PRIVATE = frozenset({"privkey.pem"})


@pytest.fixture
def where(tmp_path: Path, postgres: Postgres) -> Path:
    return tmp_path / "state"


def rows(postgres: Postgres, where: Path, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(postgres.url(database_name(where))) as conn:
        return conn.execute(sql.encode()).fetchall()


def one_line(exc: pytest.ExceptionInfo[StoreError]) -> str:
    text = str(exc.value)
    assert "\n" not in text and exc.value.__cause__ is None, text
    return text


def test_a_holder_past_its_ttl_is_fenced_out_by_the_next(where: Path) -> None:
    one, two = node_store(where), node_store(where)
    stale = one.lock("cert-ex", ttl=0.5)
    one.put("state/ex.json", b"by the first holder", fence=stale)
    with pytest.raises(LockedError):
        two.lock("cert-ex", wait=0)

    def take() -> object:
        try:
            return two.lock("cert-ex", ttl=30, wait=0)
        except LockedError:
            return None

    # The database's clock decides when the first lease is over.
    current = wait_until(take, what="the first lease to expire", timeout=30)
    assert current.token > stale.token
    with pytest.raises(StaleLeaseError):
        one.put("state/ex.json", b"late", fence=stale)
    with pytest.raises(StaleLeaseError):
        one.publish("ex", FILES, PRIVATE, fence=stale)
    with pytest.raises(StaleLeaseError):
        stale.renew()
    assert two.get("state/ex.json") == b"by the first holder"
    assert two.live_version("ex") is None
    two.put("state/ex.json", b"by the second holder", fence=current)
    current.release()
    assert one.get("state/ex.json") == b"by the second holder"


def test_lease_rows_are_never_deleted_so_tokens_only_grow(where: Path, postgres: Postgres) -> None:
    store = node_store(where)
    tokens = []
    for _ in range(3):
        with store.lock("cert-x") as lease:
            tokens.append(lease.token)
    assert tokens == sorted(set(tokens))
    assert rows(postgres, where, "SELECT name, token FROM certsmith_leases") == [
        ("cert-x", tokens[-1])
    ]


def test_nodes_racing_for_a_lease_one_wins(where: Path) -> None:
    nodes = [node_store(where) for _ in range(6)]
    for node in nodes:
        node.ensure()
    start = threading.Barrier(len(nodes))

    def race(node: PostgresStore) -> int | None:
        start.wait(30)
        try:
            return node.lock("cert-x", ttl=30, wait=0).token
        except LockedError:
            return None

    with ThreadPoolExecutor(len(nodes)) as pool:
        won = [t for t in pool.map(race, nodes) if t is not None]
    assert len(won) == 1


def test_a_waiting_node_gets_the_lease_when_it_is_released(where: Path) -> None:
    one, two = node_store(where), node_store(where)
    held = one.lock("cert-x", ttl=30)
    with ThreadPoolExecutor(1) as pool:
        waiter = pool.submit(lambda: two.lock("cert-x", ttl=30, wait=None))
        with pytest.raises(LockedError):
            two.lock("cert-x", wait=0.05)
        assert not waiter.done()
        held.release()
        assert waiter.result(timeout=30).token > held.token


def test_private_data_is_sealed_at_rest(where: Path, postgres: Postgres) -> None:
    store = node_store(where)
    store.put("accounts/ca/1/key.pem", PEM_KEY, private=True)
    store.put("sites/a.toml", b"name = 'a'")
    assert store.publish("ex", FILES, PRIVATE) == 1
    kv = dict(rows(postgres, where, "SELECT key, data FROM certsmith_kv"))
    assert bytes(kv["sites/a.toml"]) == b"name = 'a'"  # not private: as it is
    assert b"PRIVATE KEY" not in bytes(kv["accounts/ca/1/key.pem"])
    files = dict(rows(postgres, where, "SELECT file, data FROM certsmith_version_files"))
    assert b"PRIVATE KEY" not in bytes(files["privkey.pem"])
    assert bytes(files["cert.pem"]) == FILES["cert.pem"]
    # Each node reads it back in clear.
    other = node_store(where)
    assert other.get("accounts/ca/1/key.pem") == PEM_KEY


def test_pg_dump_holds_no_private_key(where: Path, postgres: Postgres) -> None:
    store = node_store(where)
    store.put("ca/root-key.pem", PEM_KEY, private=True)
    store.publish("ex", FILES, PRIVATE)
    dump = postgres.dump(database_name(where))
    assert b"certsmith_version_files" in dump  # the dump is of our tables
    assert b"PRIVATE KEY" not in dump


def test_sealed_rows_cannot_be_swapped(where: Path, postgres: Postgres) -> None:
    store = node_store(where)
    store.put("accounts/a/key.pem", b"key of a", private=True)
    store.put("accounts/b/key.pem", b"key of b", private=True)
    with psycopg.connect(postgres.url(database_name(where))) as conn:
        conn.execute(
            "UPDATE certsmith_kv SET data = (SELECT data FROM certsmith_kv"
            " WHERE key = 'accounts/a/key.pem') WHERE key = 'accounts/b/key.pem'"
        )
    with pytest.raises(StoreError) as exc:
        store.get("accounts/b/key.pem")
    assert "accounts/b/key.pem" in one_line(exc)


def test_a_node_with_another_key_file_is_refused(where: Path, postgres: Postgres) -> None:
    node_store(where).put("ca/root-key.pem", PEM_KEY, private=True)
    wrong = where.parent / "wrong.key"
    stranger = PostgresStore(postgres.url(database_name(where)), where.parent / "n", wrong)
    with pytest.raises(StoreError) as exc:
        stranger.get("ca/root-key.pem")
    assert str(wrong) in one_line(exc) and "not the key" in str(exc.value)
    assert postgres.password not in str(exc.value)


def test_key_file_is_created_0600_and_refused_when_others_can_read_it(
    where: Path, postgres: Postgres
) -> None:
    url = postgres.url(database_name(where))
    key = where.parent / "node.key"
    PostgresStore(url, where.parent / "n", key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_bytes().strip()) == 44  # one base64 line of 32 bytes
    key.chmod(0o640)
    with pytest.raises(StoreError) as exc:
        PostgresStore(url, where.parent / "n", key)
    assert "chmod 600" in one_line(exc)
    key.chmod(0o600)
    key.write_text("not a key\n")
    with pytest.raises(StoreError) as exc:
        PostgresStore(url, where.parent / "n", key)
    assert "base64" in one_line(exc)


def test_live_files_are_materialized_on_each_node(where: Path) -> None:
    one, two = node_store(where), node_store(where)
    assert one.publish("ex", FILES, PRIVATE) == 1
    second = {k: v.replace(b"1", b"2") for k, v in FILES.items()}
    assert one.publish("ex", second, PRIVATE) == 2
    live = one.live_path("ex")
    assert live.is_symlink() and os.readlink(live) == "../archive/ex/2"
    assert stat.S_IMODE((live / "privkey.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((live / "cert.pem").stat().st_mode) == 0o644
    # The other node has nothing local until it switches: relink fetches the version.
    assert not two.live_path("ex").exists()
    two.relink("ex", 1)
    assert (two.live_path("ex") / "privkey.pem").read_bytes() == PEM_KEY
    assert one.live_version("ex") == 1
    with pytest.raises(StoreError):
        two.relink("ex", 7)


def test_list_shows_children_as_directories_do(where: Path) -> None:
    store = node_store(where)
    store.put("accounts/ca/1/account.json", b"{}")
    store.put("accounts/ca/1/key.pem", b"k", private=True)
    store.put("accounts/ca/2/account.json", b"{}")
    store.put("accounts/ca.json", b"{}")
    assert store.list("accounts/ca") == ["accounts/ca/1", "accounts/ca/2"]
    assert store.list("accounts") == ["accounts/ca", "accounts/ca.json"]
    assert store.exists("accounts/ca/1") and not store.exists("accounts/c")
    store.delete("accounts/ca/1")  # as a directory: everything under it
    assert store.list("accounts/ca") == ["accounts/ca/2"]


def test_schema_is_versioned_and_a_newer_one_refused(where: Path, postgres: Postgres) -> None:
    node_store(where).ensure()
    assert rows(postgres, where, "SELECT version FROM certsmith_schema_version") == [
        (len(MIGRATIONS),)
    ]
    with psycopg.connect(postgres.url(database_name(where))) as conn:
        conn.execute("UPDATE certsmith_schema_version SET version = version + 1")
    with pytest.raises(StoreError) as exc:
        node_store(where).ensure()
    assert "upgrade certsmith" in one_line(exc)


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    store = PostgresStore(
        f"postgresql://certsmith:s3cret-pw@127.0.0.1:{port}/x", tmp_path, tmp_path / "k"
    )
    with pytest.raises(StoreError) as exc:
        store.get("sites/a.toml")
    text = one_line(exc)
    assert f"127.0.0.1:{port}" in text and "s3cret-pw" not in text


def test_refused_password_is_one_line(where: Path, postgres: Postgres) -> None:
    url = postgres.url(database_name(where), password="wrong-pw-123")
    with pytest.raises(StoreError) as exc:
        PostgresStore(url, where.parent / "n", where.parent / "k").get("sites/a.toml")
    text = one_line(exc)
    assert f"{postgres.host}:{postgres.port}" in text and "password" in text
    assert "wrong-pw-123" not in text and postgres.password not in text
