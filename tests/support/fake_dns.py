"""A fake authoritative DNS server for unit tests: a UDP socket on loopback answering from a
dict, in a thread of the test process.

A unit-test double only, for the fast tier (tests/test_dns_propagation.py): it answers the
way an authoritative-only server does (AA set, no recursion, REFUSED outside its zones,
NXDOMAIN/NODATA with the zone's SOA in the authority section, CNAMEs chased within its own
data, wildcards at the closest encloser, referrals with glue below a delegation), and no
more: no TCP, no EDNS, no DNSSEC. The real servers (BIND, PowerDNS) are tested by their own
fixtures.

Records are ``{(name, TYPE): [rdata text, ...]}`` with names lowercase, without the trailing
dot (rdata names are taken as absolute); TXT values are given unquoted. Change them from any
thread with ``set``; ``silent = True`` makes it drop every query (a server that times out).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator, Mapping

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

Records = Mapping[tuple[str, str], list[str]]
TTL = 60


def _parent(name: str) -> str:
    return name.partition(".")[2]


def _within(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


class FakeDns:
    """One fake authoritative server on ``host:port`` (port 0: any free one)."""

    def __init__(self, records: Records, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], list[str]] = {}
        for (name, rdtype), values in records.items():
            self.set(name, rdtype, values)
        self.silent = False
        self.refuse_outside = True  # False: NXDOMAIN without an SOA outside its zones
        self.queries: list[tuple[str, str, bool]] = []  # (name, TYPE, recursion desired)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.bind((host, port))
        except OSError:
            self._sock.close()
            raise
        self.host, self.port = self._sock.getsockname()[:2]
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name="fake-dns", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def set(self, name: str, rdtype: str, values: list[str]) -> None:
        """Replace the records of one type at one name (an empty list removes them)."""
        key = (name.rstrip(".").lower(), rdtype.upper())
        if key[1] == "TXT":
            values = ['"' + v.replace('"', '\\"') + '"' for v in values]
        with self._lock:
            if values:
                self._records[key] = list(values)
            else:
                self._records.pop(key, None)

    def close(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):  # wake the blocked recvfrom
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"", (self.host, self.port))
        self._thread.join(5)
        self._sock.close()

    # -- the server --------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            try:
                wire, peer = self._sock.recvfrom(65535)
            except OSError:
                return
            if self._stopped:
                return
            try:
                query = dns.message.from_wire(wire)
            except Exception:
                continue
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True).lower()
            rdtype = dns.rdatatype.to_text(question.rdtype)
            self.queries.append((name, rdtype, bool(query.flags & dns.flags.RD)))
            if self.silent:
                continue
            response = dns.message.make_response(query)
            response.flags &= ~dns.flags.RA
            with self._lock:
                self._answer(response, name, rdtype)
            self._sock.sendto(response.to_wire(), peer)

    def _rrset(self, owner: str, name: str, rdtype: str) -> dns.rrset.RRset:
        return dns.rrset.from_text_list(
            dns.name.from_text(name),
            TTL,
            dns.rdataclass.IN,
            rdtype,
            self._records[(owner, rdtype)],
            origin=dns.name.root,
            relativize=False,
        )

    def _zone(self, name: str) -> str | None:
        zones = [n for (n, t) in self._records if t == "SOA" and _within(name, n)]
        return max(zones, key=len) if zones else None

    def _exists(self, name: str) -> bool:
        return any(_within(n, name) for (n, _t) in self._records)

    def _source(self, name: str, zone: str) -> str | None:
        """The owner whose records answer for ``name``: itself, or a wildcard."""
        if self._exists(name):
            return name
        encloser = _parent(name)
        while _within(encloser, zone) and not self._exists(encloser):
            encloser = _parent(encloser)
        wildcard = f"*.{encloser}"
        return wildcard if self._exists(wildcard) else None

    def _delegation(self, name: str, zone: str) -> str | None:
        cut = name
        while cut != zone:
            if (cut, "NS") in self._records:
                return cut
            cut = _parent(cut)
        return None

    def _answer(self, response: dns.message.Message, qname: str, rdtype: str) -> None:
        name = qname
        for hop in range(8):
            zone = self._zone(name)
            if zone is None:
                if hop == 0:
                    response.set_rcode(
                        dns.rcode.REFUSED if self.refuse_outside else dns.rcode.NXDOMAIN
                    )
                return
            child = self._delegation(name, zone)
            if child is not None:
                if hop == 0:
                    response.authority.append(self._rrset(child, child, "NS"))
                    self._glue(response, child)
                return
            response.flags |= dns.flags.AA
            source = self._source(name, zone)
            if source is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
                response.authority.append(self._rrset(zone, zone, "SOA"))
                return
            if (source, rdtype) in self._records:
                response.answer.append(self._rrset(source, name, rdtype))
                if rdtype == "NS":
                    self._glue(response, source)
                return
            if (source, "CNAME") in self._records and rdtype != "CNAME":
                response.answer.append(self._rrset(source, name, "CNAME"))
                name = self._records[(source, "CNAME")][0].rstrip(".").lower()
                continue
            response.authority.append(self._rrset(zone, zone, "SOA"))
            return

    def _glue(self, response: dns.message.Message, owner: str) -> None:
        for target in self._records[(owner, "NS")]:
            host = target.rstrip(".").lower()
            for kind in ("A", "AAAA"):
                if (host, kind) in self._records:
                    response.additional.append(self._rrset(host, host, kind))


@contextlib.contextmanager
def fake_pair(
    records: Records, second_records: Records | None = None
) -> Iterator[tuple[FakeDns, FakeDns]]:
    """Two fakes on the same port, at 127.0.0.1 and 127.0.0.2 (the authoritative servers are
    all asked on one port), with the same records unless ``second_records`` are given."""
    for _ in range(50):
        first = FakeDns(records)
        try:
            second = FakeDns(
                records if second_records is None else second_records,
                host="127.0.0.2",
                port=first.port,
            )
        except OSError:
            first.close()
            continue
        try:
            yield first, second
        finally:
            first.close()
            second.close()
        return
    raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")
