"""Finding where a challenge record lives: its CNAME chain, its zone, the zone's servers.

Two kinds of question, kept apart:

- About names that exist (the zone above a record, its NS, their addresses): asked of the
  resolvers the user named (or this machine's when none was named), the NS names' addresses
  included: on split-horizon DNS the system resolver may not know the internal servers at
  all, or know other ones.
- About the challenge record itself (its CNAME, and the wildcard probe beside it): asked of
  the zone's authoritative servers directly, never of a resolver. Before certsmith writes
  it, ``_acme-challenge.NAME`` usually does not exist, and a recursive resolver that was
  asked about it keeps the NXDOMAIN for the zone's negative TTL (minutes to hours): when the
  CA validates through that same resolver (a private CA on the internal DNS), it would get
  the cached NXDOMAIN instead of the record that is now there.

- CNAME: followed from the record, at most :data:`MAX_CNAME` names, loop-safe. A CNAME that
  a wildcard made (``*.example.org CNAME lb.example.net`` answers for every name under
  example.org without one) is not followed: writing the TXT at the record itself creates the
  name, and from then on the wildcard no longer applies to it. It is recognised by asking
  the same question for a random name beside it: the same target means a wildcard. (A real
  CNAME at the record that points where the wildcard points looks the same, and is treated
  as the wildcard's.)
- The zone: walk up from the name's parent asking SOA; the cut is the owner of the SOA in
  the answer or the authority section. A server that is authoritative only (the user's
  internal BIND as "resolver") answers for its own zones, and for a zone it delegates it
  answers with a referral, which gives the cut and the child's servers too. When the record
  is itself below a cut the walk did not see (``_acme-challenge.NAME`` delegated as a zone
  of its own), the zone's servers answer with a referral, and the child is asked instead.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.SOA

from certsmith.core.dns.query import (
    Failed,
    Resolvers,
    chased,
    delegated,
    direct,
    glue,
    nonrecursive,
    parent,
    rrset,
    text,
)
from certsmith.core.dns.target import Nameserver
from certsmith.errors import DnsError

MAX_CNAME = 8
PROBE = "_certsmith-probe-"


def _within(name: str, zone: str) -> bool:
    return bool(zone) and (name == zone or name.endswith("." + zone))


@dataclass(frozen=True)
class Cut:
    """A zone found by the walk: its apex, its SOA when the answer had one, and the referral
    when an authoritative-only "resolver" delegates it (the referral names its servers)."""

    zone: str
    soa: dns.rdtypes.ANY.SOA.SOA | None = None
    referral: dns.message.Message | None = None


def zone_cut(res: Resolvers, fqdn: str) -> Cut:
    """The zone that holds ``fqdn``."""
    name = fqdn
    while name:
        msg = res.ask(name, dns.rdatatype.SOA)
        found = rrset(msg, name, dns.rdatatype.SOA)
        if found is not None:
            return Cut(name, found[0])
        # an alias is never a zone's apex, and the SOA that follows it is its target's
        if rrset(msg, name, dns.rdatatype.CNAME) is None:
            for rr in msg.authority:
                owner = text(rr.name)
                if rr.rdtype == dns.rdatatype.SOA and _within(name, owner):
                    return Cut(owner, rr[0])
            for rr in msg.authority:
                owner = text(rr.name)
                if (
                    rr.rdtype == dns.rdatatype.NS
                    and _within(name, owner)
                    and not msg.flags & dns.flags.AA
                    and msg.rcode() == dns.rcode.NOERROR
                ):
                    return Cut(owner, referral=msg)
        name = parent(name)
    raise DnsError(
        f"no DNS zone holds {fqdn}: no name from it up to its top-level domain has "
        "an SOA record (does the domain exist in the DNS these resolvers see?)"
    )


def ordered(addresses: set[str]) -> list[str]:
    """IPv4 first, then IPv6, each in numeric order."""
    parsed = [ipaddress.ip_address(a) for a in addresses]
    return [str(a) for a in sorted(parsed, key=lambda a: (a.version, int(a)))]


def addresses(res: Resolvers, name: str) -> tuple[set[str], list[str]]:
    """The A and AAAA addresses of ``name``, and why a question got no answer."""
    found: set[str] = set()
    why = []
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        try:
            msg = res.ask(name, rdtype)
        except DnsError as exc:
            why.append(str(exc))
            continue
        answer = chased(msg, name, rdtype)
        if answer is not None:
            found.update(rd.address for rd in answer)
    return found, why


def servers(res: Resolvers, cut: Cut) -> tuple[Nameserver, ...]:
    """Every address of every NS of the zone (glue included)."""
    zone = cut.zone
    msg = cut.referral if cut.referral is not None else res.ask(zone, dns.rdatatype.NS)
    found = rrset(msg, zone, dns.rdatatype.NS) or rrset(msg, zone, dns.rdatatype.NS, "AUTHORITY")
    names = sorted({text(rd.target) for rd in found}) if found is not None else []
    if not names:
        raise DnsError(
            f"the zone {zone} has no NS records: no server to check the challenge record on"
        )
    glued = glue(msg, names)
    out: list[Nameserver] = []
    for name in names:
        found_addresses, why = addresses(res, name)
        found_addresses |= glued.get(name, set())
        if not found_addresses:
            reason = f"; {why[0]}" if why else ""
            raise DnsError(
                f"{name} (an NS of {zone}) has no address: the check would never see it{reason}"
            )
        out.extend(Nameserver(name, a) for a in ordered(found_addresses))
    return tuple(out)


def primary(
    res: Resolvers, cut: Cut, nameservers: tuple[Nameserver, ...], port: int, timeout: float
) -> str | None:
    """The first address of the zone's SOA MNAME (where RFC 2136 updates go), or None."""
    soa = cut.soa
    if soa is None:  # a referral: ask the zone's own servers
        for server in nameservers:
            msg = direct(server.address, port, cut.zone, dns.rdatatype.SOA, timeout)
            answer = None if isinstance(msg, Failed) else rrset(msg, cut.zone, dns.rdatatype.SOA)
            if answer is not None:
                soa = answer[0]
                break
    if soa is None:
        return None
    mname = text(soa.mname)
    known = {s.address for s in nameservers if s.name == mname}
    if not known:
        known, _why = addresses(res, mname)
    return ordered(known)[0] if known else None


@dataclass(frozen=True)
class Zone:
    """A zone with its servers: what :func:`zone_cut`, :func:`servers` and :func:`primary`
    found."""

    cut: Cut
    servers: tuple[Nameserver, ...]
    primary: str | None

    @property
    def name(self) -> str:
        return self.cut.zone


def ask_zone(
    zone: Zone, name: str, rdtype: dns.rdatatype.RdataType, port: int, timeout: float
) -> dns.message.Message:
    """The first authoritative answer (or referral below the zone) from the zone's servers,
    asked in turn; DnsError naming each server and why when none gives one."""
    failures = []
    for server in zone.servers:
        msg = nonrecursive(server.address, port, name, rdtype, timeout)
        if isinstance(msg, dns.message.Message):
            if msg.flags & dns.flags.AA or delegated(msg, name, zone.name):
                return msg
            msg = Failed("is not authoritative", "a lame delegation?")
        failures.append(msg.about(str(server), name))
    kind = dns.rdatatype.to_text(rdtype)
    raise DnsError(
        f"no authoritative server of {zone.name} answered for {kind} of {name}: "
        + "; ".join(failures)
    )


def cname_at(zone: Zone, name: str, port: int, timeout: float) -> str | None:
    """The CNAME target the zone's servers have at ``name`` (None: none)."""
    found = rrset(
        ask_zone(zone, name, dns.rdatatype.CNAME, port, timeout), name, dns.rdatatype.CNAME
    )
    return text(found[0].target) if found is not None else None


def wildcard_made(zone: Zone, name: str, target: str, port: int, timeout: float) -> bool:
    """Whether the CNAME ``name`` -> ``target`` is one a wildcard beside ``name`` makes."""
    above = parent(name)
    if not above or not (above == zone.name or above.endswith("." + zone.name)):
        return False
    return cname_at(zone, f"{PROBE}{secrets.token_hex(8)}.{above}", port, timeout) == target
