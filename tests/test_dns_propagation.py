"""The DNS-01 propagation check (core/dns): where a challenge record goes, which servers must
show it, and waiting for them, against fake authoritative servers in this process
(tests/support/fake_dns.py, a unit-test double; the real BIND/PowerDNS runs are elsewhere).

The "resolver" here is the fake authoritative server itself (no recursion), as when a user
names an internal authoritative server on split-horizon DNS. Two fakes share one port at
127.0.0.1 and 127.0.0.2: ns1 and ns2 of example.org.
"""

from __future__ import annotations

import queue
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from certsmith.core.dns.propagation import Lookup, Nameserver, Target
from certsmith.core.dns.query import parse_resolver
from certsmith.errors import DnsError, UsageError
from tests.support.fake_dns import FakeDns, Records, fake_pair

NS1 = Nameserver("ns1.example.org", "127.0.0.1")
NS2 = Nameserver("ns2.example.org", "127.0.0.2")
NSNET = Nameserver("ns.example.net", "127.0.0.2")
RECORD = "_acme-challenge.example.org"


def soa(zone: str, mname: str) -> list[str]:
    return [f"{mname} hostmaster.{zone} 1 3600 600 86400 60"]


BASE: Records = {
    ("example.org", "SOA"): soa("example.org", "ns1.example.org"),
    ("example.org", "NS"): ["ns1.example.org", "ns2.example.org"],
    ("ns1.example.org", "A"): ["127.0.0.1"],
    ("ns2.example.org", "A"): ["127.0.0.2"],
    ("www.example.org", "A"): ["192.0.2.80"],
    ("example.net", "SOA"): soa("example.net", "ns.example.net"),
    ("example.net", "NS"): ["ns.example.net"],
    ("ns.example.net", "A"): ["127.0.0.2"],
}


@pytest.fixture
def fakes() -> Iterator[tuple[FakeDns, FakeDns]]:
    with fake_pair(BASE) as pair:
        yield pair


def lookup_of(fake: FakeDns, timeout: float = 0.5) -> Lookup:
    return Lookup([fake.address], timeout=timeout, port=fake.port)


def with_records(extra: Records) -> Records:
    return {**BASE, **extra}


# -- target ---------------------------------------------------------------------------


def test_simple_zone(fakes: tuple[FakeDns, FakeDns]) -> None:
    lookup = lookup_of(fakes[0])
    target = lookup.target("example.org")
    assert target == Target(
        domain="example.org",
        record=RECORD,
        fqdn=RECORD,
        zone="example.org",
        servers=(NS1, NS2),
        primary="127.0.0.1",
        cname=(),
    )
    # a wildcard is its base; case and the trailing dot do not matter
    assert lookup.target("*.Example.ORG.") == target
    # a name below the apex that exists, and one that does not
    assert lookup.target("www.example.org").zone == "example.org"
    assert lookup.target("nowhere.example.org").fqdn == "_acme-challenge.nowhere.example.org"
    # questions about names that exist went to the resolver given, asked recursively; the
    # challenge records (which do not exist yet) were asked of the zone's first server only,
    # without recursion: a resolver would keep their NXDOMAIN for the CA to find
    asked = fakes[0].queries
    assert asked and all(rd for n, _t, rd in asked if not n.startswith("_acme-challenge."))
    record_questions = [(n, t, rd) for n, t, rd in asked if n.startswith("_acme-challenge.")]
    assert record_questions and all((t, rd) == ("CNAME", False) for _n, t, rd in record_questions)
    assert not fakes[1].queries


def test_cname_chain_followed_into_another_zone() -> None:
    records = with_records(
        {
            ("_acme-challenge.www.example.org", "CNAME"): ["a.example.net"],
            ("a.example.net", "CNAME"): ["b.example.net"],
        }
    )
    with fake_pair(records) as (first, _second):
        target = lookup_of(first).target("www.example.org")
    assert target.record == "_acme-challenge.www.example.org"
    assert target.cname == ("a.example.net", "b.example.net")
    assert target.fqdn == "b.example.net"  # does not exist yet: NXDOMAIN, zone from its SOA
    assert target.zone == "example.net"
    assert target.servers == (NSNET,)
    assert target.primary == "127.0.0.2"


def test_wildcard_cname_not_followed() -> None:
    records = with_records(
        {
            ("example.com", "SOA"): soa("example.com", "ns1.example.org"),
            ("example.com", "NS"): ["ns1.example.org"],
            ("*.example.com", "CNAME"): ["lb.example.net"],
        }
    )
    with fake_pair(records) as (first, _second):
        target = lookup_of(first).target("example.com")
        probes = [n for n, t, _rd in first.queries if n.startswith("_certsmith-probe-")]
    assert target.fqdn == "_acme-challenge.example.com"
    assert target.cname == ()
    assert target.zone == "example.com"  # not lb.example.net's zone
    assert target.servers == (NS1,)
    assert len(probes) == 1 and probes[0].endswith(".example.com")


def test_real_cname_beside_a_wildcard_is_followed() -> None:
    records = with_records(
        {
            ("example.com", "SOA"): soa("example.com", "ns1.example.org"),
            ("example.com", "NS"): ["ns1.example.org"],
            ("*.example.com", "CNAME"): ["lb.example.net"],
            ("_acme-challenge.example.com", "CNAME"): ["example-com.example.net"],
        }
    )
    with fake_pair(records) as (first, _second):
        target = lookup_of(first).target("example.com")
    assert target.cname == ("example-com.example.net",)
    assert (target.fqdn, target.zone) == ("example-com.example.net", "example.net")


def test_alias() -> None:
    records = with_records({(RECORD, "CNAME"): ["elsewhere.example.org"]})
    with fake_pair(records) as (first, _second):
        target = lookup_of(first).target("*.example.org", alias="Example.NET")
    assert target.record == RECORD
    assert target.fqdn == "_acme-challenge.example.net"  # the CNAME at the record is ignored
    assert target.cname == ()
    assert target.zone == "example.net"
    assert target.servers == (NSNET,)


def test_referral_from_an_authoritative_only_resolver() -> None:
    parent = with_records(
        {
            ("sub.example.org", "NS"): ["ns.sub.example.org"],
            ("ns.sub.example.org", "A"): ["127.0.0.2"],
        }
    )
    child: Records = {
        ("sub.example.org", "SOA"): soa("sub.example.org", "ns.sub.example.org"),
        ("sub.example.org", "NS"): ["ns.sub.example.org"],
        ("ns.sub.example.org", "A"): ["127.0.0.2"],
    }
    with fake_pair(parent, child) as (first, _second):
        target = lookup_of(first).target("host.sub.example.org")
    assert target.zone == "sub.example.org"
    assert target.servers == (Nameserver("ns.sub.example.org", "127.0.0.2"),)
    assert target.primary == "127.0.0.2"  # from the child's own SOA, asked directly


def test_challenge_record_delegated_as_a_zone_of_its_own() -> None:
    # _acme-challenge.example.org is a zone (as acme-dns setups delegate it): example.org's
    # servers answer the record's question with a referral, and its own server is asked
    parent = with_records(
        {
            (RECORD, "NS"): ["ns.acme.example.org"],
            ("ns.acme.example.org", "A"): ["127.0.0.2"],
        }
    )
    child: Records = {
        (RECORD, "SOA"): soa(RECORD, "ns.acme.example.org"),
        (RECORD, "NS"): ["ns.acme.example.org"],
    }
    with fake_pair(parent, child) as (first, second):
        target = lookup_of(first).target("*.example.org")
    assert (target.fqdn, target.zone, target.cname) == (RECORD, RECORD, ())
    assert target.servers == (Nameserver("ns.acme.example.org", "127.0.0.2"),)
    assert target.primary == "127.0.0.2"
    assert (RECORD, "CNAME", False) in second.queries


def test_no_server_of_the_zone_answers_for_the_record(fakes: tuple[FakeDns, FakeDns]) -> None:
    fakes[1].silent = True
    # the zone's only NS is ns2, which is silent; the first fake, asked as the resolver,
    # knows the zone but is not one of its servers, so it is not asked about the record
    lookup = lookup_of(fakes[0], timeout=0.2)
    fakes[0].set("example.org", "NS", ["ns2.example.org"])
    with pytest.raises(DnsError) as err:
        lookup.target("example.org")
    assert str(err.value) == (
        f"no authoritative server of example.org answered for CNAME of {RECORD}: "
        f"ns2.example.org (127.0.0.2) did not answer for {RECORD} (timed out after 0.2 s)"
    )


def test_all_addresses_of_each_ns_and_no_primary_address() -> None:
    records = with_records(
        {
            ("example.org", "SOA"): soa("example.org", "hidden.example.org"),
            ("ns2.example.org", "AAAA"): ["::1"],
        }
    )
    with fake_pair(records) as (first, _second):
        target = lookup_of(first).target("example.org")
    assert target.servers == (NS1, NS2, Nameserver("ns2.example.org", "::1"))
    assert target.primary is None


def test_ns_without_address() -> None:
    records = with_records({("example.org", "NS"): ["ns1.example.org", "ns3.example.org"]})
    with fake_pair(records) as (first, _second), pytest.raises(DnsError) as err:
        lookup_of(first).target("example.org")
    assert str(err.value) == (
        "ns3.example.org (an NS of example.org) has no address: the check would never see it"
    )


def test_ns_outside_what_the_resolver_knows(fakes: tuple[FakeDns, FakeDns]) -> None:
    fakes[0].set("example.org", "NS", ["ns1.example.org", "ns.elsewhere.test"])
    with pytest.raises(DnsError) as err:
        lookup_of(fakes[0]).target("example.org")
    assert str(err.value) == (
        "ns.elsewhere.test (an NS of example.org) has no address: the check would never see "
        f"it; no answer from DNS resolver {fakes[0].address} for A of ns.elsewhere.test "
        "(answered REFUSED)"
    )


def test_unreachable_resolver() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    lookup = Lookup([f"127.0.0.1:{port}"], timeout=0.5)
    with pytest.raises(DnsError) as err:
        lookup.target("example.org")
    assert str(err.value) == (
        f"no answer from DNS resolver 127.0.0.1:{port} for SOA of example.org (connection refused)"
    )


def test_resolver_that_times_out(fakes: tuple[FakeDns, FakeDns]) -> None:
    fakes[0].silent = True
    with pytest.raises(DnsError) as err:
        lookup_of(fakes[0], timeout=0.2).target("example.org")
    assert str(err.value) == (
        f"no answer from DNS resolver {fakes[0].address} for SOA of "
        "example.org (timed out after 0.2 s)"
    )


def test_next_resolver_after_a_silent_one(fakes: tuple[FakeDns, FakeDns]) -> None:
    fakes[1].silent = True
    lookup = Lookup(
        [f"127.0.0.2:{fakes[1].port}", fakes[0].address], timeout=0.2, port=fakes[0].port
    )
    assert lookup.target("example.org").zone == "example.org"
    assert len(fakes[1].queries) == 1  # asked first once, then last


def test_cname_loop() -> None:
    records = with_records(
        {
            (RECORD, "CNAME"): ["a.example.net"],
            ("a.example.net", "CNAME"): ["b.example.net"],
            ("b.example.net", "CNAME"): ["a.example.net"],
        }
    )
    with fake_pair(records) as (first, _second), pytest.raises(DnsError) as err:
        lookup_of(first).target("example.org")
    assert str(err.value) == (
        f"CNAME loop: {RECORD} -> a.example.net -> b.example.net -> "
        "a.example.net; fix the CNAME records"
    )


def test_no_zone_up_to_the_top() -> None:
    with fake_pair(BASE) as (first, _second):
        first.refuse_outside = False  # NXDOMAIN without an SOA, for every name it lacks
        with pytest.raises(DnsError) as err:
            lookup_of(first).target("nothing.test")
    assert str(err.value) == (
        "no DNS zone holds nothing.test: no name from it up to its top-level "
        "domain has an SOA record (does the domain exist in the DNS these resolvers see?)"
    )


def test_zone_without_ns(fakes: tuple[FakeDns, FakeDns]) -> None:
    fakes[0].set("example.org", "NS", [])
    with pytest.raises(DnsError, match=r"^the zone example\.org has no NS records"):
        lookup_of(fakes[0]).target("example.org")


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("192.0.2.1", ("192.0.2.1", 53)),
        ("192.0.2.1:5353", ("192.0.2.1", 5353)),
        ("[::1]:53", ("::1", 53)),
        ("::1", ("::1", 53)),
        ("[2001:db8::1]", ("2001:db8::1", 53)),
    ],
)
def test_resolver_spec(spec: str, parsed: tuple[str, int]) -> None:
    assert parse_resolver(spec) == parsed


@pytest.mark.parametrize("spec", ["dns.example.org", "192.0.2.1:0", "[::1", "1.2.3.4:x", ""])
def test_bad_resolver_spec(spec: str) -> None:
    with pytest.raises(UsageError, match="give an IP address"):
        Lookup([spec])


# -- txt and wait ---------------------------------------------------------------------


def test_txt_is_a_direct_query(fakes: tuple[FakeDns, FakeDns]) -> None:
    fakes[1].set(RECORD, "TXT", ["one", "two"])
    lookup = lookup_of(fakes[0])
    assert lookup.txt(NS2, RECORD) == {"one", "two"}
    assert lookup.txt(NS1, RECORD) == set()
    assert fakes[1].queries == [(RECORD, "TXT", False)]
    with pytest.raises(DnsError) as err:
        lookup.txt(NS1, "_acme-challenge.elsewhere.test")
    assert str(err.value) == (
        "ns1.example.org (127.0.0.1) answered REFUSED for _acme-challenge.elsewhere.test"
    )


def test_wait_for_a_lagging_secondary(fakes: tuple[FakeDns, FakeDns]) -> None:
    ns1, ns2 = fakes
    ns1.set(RECORD, "TXT", ["old", "v1", "v2"])  # other values there are fine
    lookup = lookup_of(ns1)
    target = lookup.target("example.org")
    said: list[str] = []
    reported: queue.Queue[str] = queue.Queue()

    def on_wait(line: str) -> None:
        said.append(line)
        reported.put(line)

    def secondary() -> None:  # catches up one value per progress line, like a slow transfer
        reported.get(timeout=10)
        ns2.set(RECORD, "TXT", ["v1"])
        reported.get(timeout=10)
        ns2.set(RECORD, "TXT", ["v1", "v2"])

    catching_up = threading.Thread(target=secondary)
    catching_up.start()
    lookup.wait({target: {"v1", "v2"}}, time.monotonic() + 30, on_wait=on_wait, poll=0.01)
    catching_up.join()
    assert said == [  # once per change, not once per poll
        f"waiting for {NS2}: {RECORD} has 0 of 2 values",
        f"waiting for {NS2}: {RECORD} has 1 of 2 values",
    ]


def test_wait_returns_at_once_when_everything_is_there(fakes: tuple[FakeDns, FakeDns]) -> None:
    for fake in fakes:
        fake.set(RECORD, "TXT", ["v1"])
    lookup = lookup_of(fakes[0])
    target = lookup.target("example.org")
    said: list[str] = []
    lookup.wait({target: {"v1"}}, time.monotonic() + 30, on_wait=said.append, poll=60)
    assert said == []


def test_wait_timeout_names_what_each_server_answered(fakes: tuple[FakeDns, FakeDns]) -> None:
    fakes[0].set(RECORD, "TXT", ["v1", "v2"])
    lookup = lookup_of(fakes[0])
    target = lookup.target("example.org")
    said: list[str] = []
    with pytest.raises(DnsError) as err:
        lookup.wait({target: {"v1", "v2"}}, time.monotonic() + 0.3, on_wait=said.append, poll=0.05)
    message = re.sub(r"after [\d.]+ s,", "after N s,", str(err.value))
    assert message == (
        f"DNS-01: after N s, {NS2} answers {RECORD} with nothing, {NS1} has both values; "
        "raise --dns-timeout or check the zone's secondaries"
    )
    assert said == [f"waiting for {NS2}: {RECORD} has 0 of 2 values"]


def test_wait_timeout_with_a_silent_and_a_partial_server(fakes: tuple[FakeDns, FakeDns]) -> None:
    ns1, ns2 = fakes
    lookup = lookup_of(ns1, timeout=0.2)
    target = lookup.target("example.org")
    ns1.set(RECORD, "TXT", ["v1", "other"])
    ns2.silent = True
    said: list[str] = []
    with pytest.raises(DnsError) as err:
        lookup.wait({target: {"v1", "v2"}}, time.monotonic() + 0.3, on_wait=said.append, poll=0.05)
    assert said == [
        f"waiting for {NS1}: {RECORD} has 1 of 2 values; {NS2}: did not answer for "
        f"{RECORD} (timed out after 0.2 s)"
    ]
    message = re.sub(r"after [\d.]+ s,", "after N s,", str(err.value))
    assert message == (
        f"DNS-01: after N s, {NS1} answers {RECORD} with 1 of 2 values, {NS2} did not answer "
        f"for {RECORD} (timed out after 0.2 s); raise --dns-timeout or check the zone's "
        "secondaries"
    )


def test_wait_polls_every_server_at_once(fakes: tuple[FakeDns, FakeDns]) -> None:
    """Ten targets on a silent secondary: the timeouts run side by side, not one after
    another (which would take 10 x 0.5 s per round)."""
    ns1, ns2 = fakes
    lookup = lookup_of(ns1, timeout=0.5)
    targets = [lookup.target(f"host{i}.example.org") for i in range(10)]
    for target in targets:
        ns1.set(target.fqdn, "TXT", ["v"])
    ns2.silent = True
    start = time.monotonic()
    with pytest.raises(DnsError) as err:
        lookup.wait({t: {"v"} for t in targets}, start + 0.5, poll=0.1)
    assert time.monotonic() - start < 3
    assert str(err.value).count("did not answer") == 6  # the rest are counted
    assert "and 4 more" in str(err.value)
    assert len([q for q in ns2.queries if q[1] == "TXT"]) >= 10


def test_targets_sharing_a_name_want_every_value(fakes: tuple[FakeDns, FakeDns]) -> None:
    """Two names whose records point at one place: that place needs both values."""
    records = with_records(
        {
            ("_acme-challenge.a.example.org", "CNAME"): ["shared.example.net"],
            ("_acme-challenge.b.example.org", "CNAME"): ["shared.example.net"],
            ("shared.example.net", "TXT"): ["va"],
        }
    )
    with fake_pair(records) as (first, _second):
        lookup = lookup_of(first)
        a, b = lookup.target("a.example.org"), lookup.target("b.example.org")
        assert a.fqdn == b.fqdn == "shared.example.net"
        with pytest.raises(DnsError, match=r"answers shared\.example\.net with 1 of 2 values"):
            lookup.wait({a: {"va"}, b: {"vb"}}, time.monotonic() + 0.2, poll=0.05)
