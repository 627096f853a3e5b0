"""The DNS-01 solver's own logic, without DNS: which values go where, a provider that replaces
instead of appending, exact cleanup, and the write-ahead record that the next run cleans.

The provider and the lookup are in-memory doubles (the real providers and the propagation check
against BIND 9 and PowerDNS are in tests/test_dns01_e2e.py and tests/test_dns_providers_servers.py):
here the point is the solver's bookkeeping, which a double shows exactly.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from certsmith.base.solverspec import DnsSpec
from certsmith.base.store import keys, open_store
from certsmith.base.store.base import Store
from certsmith.core.dns.propagation import Nameserver, Target
from certsmith.core.solvers.base import Challenge, SolverContext
from certsmith.core.solvers.dns01 import Dns01Solver, clean_leftovers, txt_value
from certsmith.errors import DnsError

SPEC = DnsSpec(provider="hook", hook="/bin/true")


class Zone:
    """TXT values by name, as a provider's backend holds them."""

    def __init__(self) -> None:
        self.txt: dict[str, list[str]] = {}
        self.lock = threading.Lock()


class FakeProvider:
    def __init__(
        self,
        zone: Zone,
        *,
        appends: bool | None = True,
        replaces: bool = False,
        fail_remove: bool = False,
    ) -> None:
        self.zone = zone
        self._appends = appends
        self.replaces = replaces
        self.fail_remove = fail_remove
        self.calls: list[tuple[str, str, str]] = []

    @property
    def label(self) -> str:
        return "fake"

    @property
    def appends(self) -> bool | None:
        return self._appends

    def prepare(self) -> None:
        return None

    def add_txt(self, zone: str, fqdn: str, value: str, ttl: int) -> None:
        with self.zone.lock:
            self.calls.append(("add", fqdn, value))
            if self.replaces:
                self.zone.txt[fqdn] = [value]
            else:
                self.zone.txt.setdefault(fqdn, []).append(value)

    def remove_txt(self, zone: str, fqdn: str, value: str) -> None:
        with self.zone.lock:
            self.calls.append(("remove", fqdn, value))
            if self.fail_remove:
                raise DnsError("the provider is down")
            values = self.zone.txt.get(fqdn, [])
            if value in values:
                values.remove(value)
            if not values:
                self.zone.txt.pop(fqdn, None)

    def list_txt(self, zone: str, fqdn: str) -> set[str] | None:
        with self.zone.lock:
            return set(self.zone.txt.get(fqdn, []))


class FakeLookup:
    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.waits: list[dict[str, set[str]]] = []

    def target(self, domain: str, alias: str | None = None) -> Target:
        record = f"_acme-challenge.{domain}"
        fqdn = f"_acme-challenge.{alias}" if alias else record
        return Target(
            domain=domain,
            record=record,
            fqdn=fqdn,
            zone="example.org",
            servers=(Nameserver("ns1.example.org", "192.0.2.1"),),
            primary="192.0.2.1",
        )

    def txt(self, server: Nameserver, fqdn: str) -> set[str]:
        return set(self.zone.txt.get(fqdn, []))

    def wait(
        self,
        want: Mapping[Target, set[str]],
        deadline: float,
        *,
        on_wait: Callable[[str], None] = lambda _s: None,
        poll: float = 1.0,
    ) -> None:
        self.waits.append({t.fqdn: set(v) for t, v in want.items()})
        for t, values in want.items():
            missing = values - set(self.zone.txt.get(t.fqdn, []))
            assert not missing, f"{t.fqdn} lacks {missing}"


def solver(
    zone: Zone,
    provider: FakeProvider,
    store: Store | None = None,
    lines: list[str] | None = None,
    spec: DnsSpec = SPEC,
) -> Dns01Solver:
    out = lines if lines is not None else []
    s = Dns01Solver(
        spec,
        SolverContext(store, out.append),
        lookup=FakeLookup(zone),  # type: ignore[arg-type]
        provider=provider,
    )
    s.prepare()
    return s


def wildcard_and_apex() -> list[Challenge]:
    return [Challenge("example.org", "t1", "t1.thumb"), Challenge("example.org", "t2", "t2.thumb")]


def test_txt_value_is_what_the_acme_library_validates() -> None:
    # RFC 8555 section 8.4: base64url(SHA-256(key authorization)), no padding; checked
    # against the acme library's own DNS01 (what the issuer gives the solver is the key
    # authorization, and the solver derives the value)
    import josepy as jose
    from acme import challenges
    from cryptography.hazmat.primitives.asymmetric import ec

    key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    chall = challenges.DNS01(token=b"x" * 32)
    assert txt_value(chall.key_authorization(key)) == chall.validation(key)


def test_wildcard_and_apex_both_values_at_one_name_then_exact_cleanup() -> None:
    zone = Zone()
    zone.txt["_acme-challenge.example.org"] = ["someone-else"]
    provider = FakeProvider(zone)
    s = solver(zone, provider)
    chs = wildcard_and_apex()
    assert s.present_all(chs) is None  # all presented at once
    s.wait_ready(chs, 1e18)
    assert set(zone.txt["_acme-challenge.example.org"]) == {
        "someone-else",
        txt_value("t1.thumb"),
        txt_value("t2.thumb"),
    }
    s.cleanup_all(chs)
    assert zone.txt == {"_acme-challenge.example.org": ["someone-else"]}


def test_a_replacing_provider_is_noticed_and_one_value_per_name_is_presented() -> None:
    zone = Zone()
    lines: list[str] = []
    provider = FakeProvider(zone, appends=None, replaces=True)
    s = solver(zone, provider, lines=lines)
    chs = [*wildcard_and_apex(), Challenge("www.example.org", "t3", "t3.thumb")]
    first = s.present_all(chs)
    assert first is not None and len(first) == 2
    assert s.replaces
    assert any("replaces the TXT values at _acme-challenge.example.org" in ln for ln in lines)
    s.wait_ready(first, 1e18)
    s.cleanup_all(first)
    rest = [c for c in chs if c not in first]
    assert s.present_all(rest) is None
    s.wait_ready(rest, 1e18)
    s.cleanup_all(rest)
    assert zone.txt == {}


def test_alias_writes_every_record_at_the_alias() -> None:
    zone = Zone()
    provider = FakeProvider(zone)
    s = solver(
        zone, provider, spec=DnsSpec(provider="hook", hook="/bin/true", alias="acme.example.net")
    )
    chs = [Challenge("a.example.org", "t1", "k1"), Challenge("b.example.org", "t2", "k2")]
    s.present_all(chs)
    assert set(zone.txt["_acme-challenge.acme.example.net"]) == {txt_value("k1"), txt_value("k2")}


def test_the_write_ahead_record_is_cleaned_by_the_next_run(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    zone = Zone()
    provider = FakeProvider(zone)
    first = solver(zone, provider, store)
    chs = wildcard_and_apex()
    first.present_all(chs)
    pending = store.list(keys.DNS01_PENDING)
    assert len(pending) == 1
    body = json.loads(store.get(pending[0]) or b"")
    assert {r["value"] for r in body["records"]} == {txt_value("t1.thumb"), txt_value("t2.thumb")}
    # While the first run lives, nobody removes its records.
    lines: list[str] = []
    clean_leftovers(store, lines.append)
    assert len(zone.txt["_acme-challenge.example.org"]) == 2
    # It dies without cleanup (its lease is released as the kernel would): the next run cleans.
    first.close()
    second_provider = FakeProvider(zone)
    second = Dns01Solver(
        SPEC,
        SolverContext(store, lines.append),
        lookup=FakeLookup(zone),  # type: ignore[arg-type]
        provider=second_provider,
    )
    second.prepare()
    assert zone.txt == {}
    assert store.list(keys.DNS01_PENDING) == []
    assert sum("removed a TXT value left" in ln for ln in lines) == 2


def test_cleanup_that_fails_is_kept_for_the_next_run(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    zone = Zone()
    lines: list[str] = []
    s = solver(zone, FakeProvider(zone, fail_remove=True), store, lines)
    chs = wildcard_and_apex()
    s.present_all(chs)
    s.cleanup_all(chs)  # never raises: the order's outcome is not changed by it
    assert any("the next run removes it" in ln for ln in lines)
    assert len(store.list(keys.DNS01_PENDING)) == 1
    s.close()
    clean_leftovers(store, lines.append)  # the provider from the spec is a real hook: /bin/true
    assert store.list(keys.DNS01_PENDING) == []


def test_present_all_failure_leaves_what_was_presented_recorded(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    zone = Zone()

    class Failing(FakeProvider):
        def add_txt(self, zone_: str, fqdn: str, value: str, ttl: int) -> None:
            if value == txt_value("t2.thumb"):
                raise DnsError("refused")
            super().add_txt(zone_, fqdn, value, ttl)

    s = solver(zone, Failing(zone), store)
    with pytest.raises(DnsError, match="refused"):
        s.present_all(wildcard_and_apex())
    assert len(store.list(keys.DNS01_PENDING)) == 1
    s.cleanup_all(wildcard_and_apex())  # what the order does after a failure
    assert zone.txt == {}
    assert store.list(keys.DNS01_PENDING) == []
