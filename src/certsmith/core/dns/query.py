"""One DNS question, asked either of the resolvers (recursive) or of one server (direct).

Names are lowercase and absolute, without the trailing dot, in and out. Every failure a
person can cause or fix (a resolver that is down, refuses, or answers SERVFAIL) becomes one
line: :class:`~certsmith.errors.DnsError` from :meth:`Resolvers.ask`, a short phrase from
:func:`direct` (the propagation check collects those per server).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset

from certsmith.errors import DnsError, UsageError

DNS_PORT = 53
TIMED_OUT = "did not answer"
UNREACHABLE = "could not be asked"


def norm(name: str) -> str:
    """``Example.ORG.`` -> ``example.org``."""
    return name.strip().rstrip(".").lower()


def text(name: dns.name.Name) -> str:
    return norm(name.to_text(omit_final_dot=True)) if name != dns.name.root else ""


def parent(name: str) -> str:
    """``a.example.org`` -> ``example.org``; a top-level name -> ``""`` (the root)."""
    return name.partition(".")[2]


def seconds(value: float) -> str:
    """``3.0`` -> ``3``, ``0.25`` -> ``0.2``: a duration for a message."""
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def parse_resolver(spec: str) -> tuple[str, int]:
    """``HOST[:PORT]`` (HOST an IP address; IPv6 as ``[::1]:53`` or bare ``::1``) -> (host, port).

    Raises UsageError for anything else: a resolver named by a host name would itself need
    a resolver, which is what the user is choosing here."""
    raw = spec.strip()
    host, port = raw, str(DNS_PORT)
    if raw.startswith("["):
        host, sep, rest = raw[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            host = ""
        elif rest:
            port = rest[1:]
    elif raw.count(":") == 1:
        host, _, port = raw.partition(":")
    try:
        address = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        address, number = None, 0
    if address is None or not 0 < number < 65536:
        raise UsageError(
            f"DNS resolver {spec!r}: give an IP address with an optional port "
            "(HOST[:PORT], IPv6 as [::1]:53)"
        )
    return str(address), number


def where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _system() -> list[tuple[str, int]]:
    try:
        system = dns.resolver.Resolver()
    except dns.exception.DNSException as exc:
        raise DnsError(
            f"no DNS resolver configured on this machine ({exc}); name one for DNS-01"
        ) from None
    out = []
    for ns in system.nameservers:
        host = str(ns)
        try:
            out.append((str(ipaddress.ip_address(host)), system.port))
        except ValueError:
            continue  # a DNS-over-HTTPS URL set up in code: not from resolv.conf
    if not out:
        raise DnsError("no DNS resolver configured on this machine; name one for DNS-01")
    return out


def rrset(
    msg: dns.message.Message, name: str, rdtype: dns.rdatatype.RdataType, section: str = "ANSWER"
) -> dns.rrset.RRset | None:
    """The rrset of ``rdtype`` at ``name`` in a section of ``msg``, or None."""
    return msg.get_rrset(section, dns.name.from_text(name), dns.rdataclass.IN, rdtype)


def chased(
    msg: dns.message.Message, name: str, rdtype: dns.rdatatype.RdataType
) -> dns.rrset.RRset | None:
    """The answer's rrset of ``rdtype`` for ``name``, following the CNAMEs the answer holds."""
    for _ in range(16):
        found = rrset(msg, name, rdtype)
        if found is not None:
            return found
        alias = rrset(msg, name, dns.rdatatype.CNAME)
        if alias is None:
            return None
        name = text(alias[0].target)
    return None


def glue(msg: dns.message.Message, names: Iterable[str]) -> dict[str, set[str]]:
    """Addresses of ``names`` that ``msg`` carries in its additional section."""
    out: dict[str, set[str]] = {}
    for name in names:
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            found = rrset(msg, name, rdtype, "ADDITIONAL")
            if found is not None:
                out.setdefault(name, set()).update(rd.address for rd in found)
    return out


@dataclass(frozen=True)
class Failed:
    """Why a server gave no usable answer: ``verb`` says what it did ("did not answer"),
    ``reason`` why or how ("timed out after 3 s"; the same as ``verb`` when that says all)."""

    verb: str
    reason: str

    def about(self, server: str, name: str) -> str:
        """``ns1.example.org (192.0.2.1) did not answer for NAME (timed out after 3 s)``."""
        why = "" if self.reason == self.verb else f" ({self.reason})"
        return f"{server} {self.verb} for {name}{why}"


def _exchange(
    name: str,
    rdtype: dns.rdatatype.RdataType,
    host: str,
    port: int,
    timeout: float,
    *,
    recursive: bool,
) -> dns.message.Message | Failed:
    """Ask once (UDP, TCP when the answer is truncated): the answer, or why there is none.

    The UDP socket is connected, so a port nobody listens on fails at once ("connection
    refused") instead of waiting out the timeout."""
    query = dns.message.make_query(dns.name.from_text(name), rdtype)
    if not recursive:
        query.flags &= ~dns.flags.RD
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.connect((host, port))
            answer, _tcp = dns.query.udp_with_fallback(
                query, host, timeout=timeout, port=port, ignore_unexpected=True, udp_sock=sock
            )
    except dns.exception.Timeout:
        return Failed(TIMED_OUT, f"timed out after {seconds(timeout)} s")
    except OSError as exc:
        return Failed(UNREACHABLE, (exc.strerror or str(exc)).lower())
    except dns.exception.DNSException as exc:
        return Failed("sent a broken answer", str(exc))
    rcode = answer.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        why = f"answered {dns.rcode.to_text(rcode)}"
        return Failed(why, why)
    return answer


class Resolvers:
    """The resolvers the user named (HOST[:PORT] each), else this machine's (resolv.conf).

    ``ask`` tries them in order and returns the first NOERROR or NXDOMAIN answer; a resolver
    that fails is skipped, and when none answers it raises DnsError naming each and why. One
    that did not answer at all goes to the end of the order, so that the next questions do
    not wait for it first."""

    def __init__(self, servers: Sequence[tuple[str, int]], timeout: float) -> None:
        self.servers = list(servers)
        self.timeout = timeout
        self._lock = threading.Lock()

    @classmethod
    def of(cls, specs: Sequence[str], timeout: float) -> Resolvers:
        return cls([parse_resolver(s) for s in specs] if specs else _system(), timeout)

    def _demote(self, server: tuple[str, int]) -> None:
        with self._lock:
            if server in self.servers:
                self.servers.remove(server)
                self.servers.append(server)

    def ask(self, name: str, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
        failures = []
        with self._lock:
            order = list(self.servers)
        for host, port in order:
            answer = _exchange(name, rdtype, host, port, self.timeout, recursive=True)
            if isinstance(answer, dns.message.Message):
                return answer
            if answer.verb in (TIMED_OUT, UNREACHABLE):
                self._demote((host, port))
            failures.append((where(host, port), answer.reason))
        kind = dns.rdatatype.to_text(rdtype)
        if len(failures) == 1:
            ((server, why),) = failures
            raise DnsError(f"no answer from DNS resolver {server} for {kind} of {name} ({why})")
        each = ", ".join(f"{server} ({why})" for server, why in failures)
        raise DnsError(f"no answer from DNS resolvers {each} for {kind} of {name}")


def direct(
    address: str, port: int, name: str, rdtype: dns.rdatatype.RdataType, timeout: float
) -> dns.message.Message | Failed:
    """A non-recursive question to one authoritative server: its authoritative answer, or why
    there is none (it did not answer, refused, or is not authoritative for ``name``)."""
    answer = _exchange(name, rdtype, address, port, timeout, recursive=False)
    if isinstance(answer, Failed):
        return answer
    if not answer.flags & dns.flags.AA:
        return Failed("is not authoritative", "a lame delegation?")
    return answer


def nonrecursive(
    address: str, port: int, name: str, rdtype: dns.rdatatype.RdataType, timeout: float
) -> dns.message.Message | Failed:
    """A non-recursive question to one server: its answer whatever it is (authoritative or a
    referral), or why there is none."""
    return _exchange(name, rdtype, address, port, timeout, recursive=False)


def delegated(msg: dns.message.Message, name: str, zone: str) -> str | None:
    """The child zone a referral for ``name`` from a server of ``zone`` hands over to (the
    owner of its NS rrset: ``name`` or an ancestor strictly below ``zone``), or None when
    ``msg`` is not such a referral."""
    if msg.flags & dns.flags.AA or msg.rcode() != dns.rcode.NOERROR or msg.answer:
        return None
    for rr in msg.authority:
        owner = text(rr.name)
        if (
            rr.rdtype == dns.rdatatype.NS
            and (name == owner or name.endswith("." + owner))
            and owner != zone
            and owner.endswith("." + zone)
        ):
            return owner
    return None
