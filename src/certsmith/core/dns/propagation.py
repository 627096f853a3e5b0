"""DNS-01 propagation: where each challenge record goes, and waiting until every
authoritative server of its zone answers with the wanted values.

Not a fixed sleep (certbot waits 60 s and hopes): every address of every NS of the zone is
asked directly, without recursion, until each one has every value, and a server that lags
is named. The zone and its servers are found through the resolvers the user named, never
the system resolver when they named one (on split-horizon DNS that one sees other zones, or
other servers for them).

:class:`Lookup` is the entry point; :class:`Target` and :class:`Nameserver` are re-exported
from :mod:`certsmith.core.dns.target`.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Mapping, Sequence

import dns.rdatatype

from certsmith.core.dns import locate
from certsmith.core.dns.progress import Answer, Check, gave_up, waiting
from certsmith.core.dns.query import (
    DNS_PORT,
    Failed,
    Resolvers,
    delegated,
    direct,
    norm,
    parent,
    rrset,
    text,
)
from certsmith.core.dns.target import Nameserver, Target
from certsmith.errors import DnsError

__all__ = ["CHALLENGE_LABEL", "Lookup", "Nameserver", "Target"]

CHALLENGE_LABEL = "_acme-challenge"
MAX_THREADS = 32
MAX_REFERRALS = 4


def _base(domain: str) -> str:
    name = norm(domain)
    return name[2:] if name.startswith("*.") else name


def _has_all(answer: Answer, want: frozenset[str]) -> bool:
    return not isinstance(answer, Failed) and want <= answer


class Lookup:
    """Finds challenge targets and checks them on their authoritative servers.

    ``resolvers``: HOST[:PORT] each (IPv6 as ``[::1]:53``), asked in order for the CNAMEs,
    zones, NS and addresses; empty: this machine's resolvers (resolv.conf). ``timeout``: per
    question, in seconds. ``port``: the port authoritative servers are asked on; 53 except
    in tests, where the servers run unprivileged on a high port."""

    def __init__(
        self, resolvers: Sequence[str] = (), *, timeout: float = 3.0, port: int = DNS_PORT
    ) -> None:
        self.timeout = timeout
        self.port = port
        self._resolvers = Resolvers.of(resolvers, timeout)
        self._zones: dict[str, locate.Zone] = {}

    def target(self, domain: str, alias: str | None = None) -> Target:
        """Where the TXT for ``domain`` (``*.example.org`` counts as ``example.org``) goes.

        The record is ``_acme-challenge.<domain>``; with ``alias`` the TXT goes to
        ``_acme-challenge.<alias>`` instead (CNAME not followed), else to the end of the
        record's CNAME chain (one made by a wildcard is not followed). The record and the
        names of its chain are asked about only at their zones' authoritative servers,
        never through a resolver (which would cache their NXDOMAIN for the CA to find).
        Raises DnsError."""
        base = _base(domain)
        record = f"{CHALLENGE_LABEL}.{base}"
        if alias:
            fqdn = f"{CHALLENGE_LABEL}.{_base(alias)}"
            zone, _target = self._place(fqdn)
            chain: tuple[str, ...] = ()
        else:
            fqdn, chain, zone = self._follow(record)
        return Target(
            domain=base,
            record=record,
            fqdn=fqdn,
            zone=zone.name,
            servers=zone.servers,
            primary=zone.primary,
            cname=chain,
        )

    def _zone(self, cut: locate.Cut) -> locate.Zone:
        if cut.zone not in self._zones:
            servers = locate.servers(self._resolvers, cut)
            primary = locate.primary(self._resolvers, cut, servers, self.port, self.timeout)
            self._zones[cut.zone] = locate.Zone(cut, servers, primary)
        return self._zones[cut.zone]

    def _place(self, name: str) -> tuple[locate.Zone, str | None]:
        """The zone holding ``name`` and the CNAME target its servers have there (or None).

        The zone is found from ``name``'s parent (a name that exists: the resolvers may be
        asked about it); ``name`` itself is asked of that zone's servers, and when they
        refer to a child zone below (``name`` delegated), of the child's."""
        zone = self._zone(locate.zone_cut(self._resolvers, parent(name) or name))
        for _ in range(MAX_REFERRALS):
            msg = locate.ask_zone(zone, name, dns.rdatatype.CNAME, self.port, self.timeout)
            child = delegated(msg, name, zone.name)
            if child is None:
                found = rrset(msg, name, dns.rdatatype.CNAME)
                return zone, (text(found[0].target) if found is not None else None)
            zone = self._zone(locate.Cut(child, referral=msg))
        raise DnsError(f"more than {MAX_REFERRALS} referrals below one another for {name}")

    def _follow(self, record: str) -> tuple[str, tuple[str, ...], locate.Zone]:
        """Where the TXT for ``record`` goes (the end of its CNAME chain), the chain, and
        that name's zone."""
        chain: list[str] = []
        name = record
        while True:
            zone, target = self._place(name)
            if target is None or locate.wildcard_made(zone, name, target, self.port, self.timeout):
                return name, tuple(chain), zone
            path = " -> ".join([record, *chain, target])
            if target == record or target in chain:
                raise DnsError(f"CNAME loop: {path}; fix the CNAME records")
            if len(chain) == locate.MAX_CNAME:
                raise DnsError(f"CNAME chain longer than {locate.MAX_CNAME} names: {path}")
            chain.append(target)
            name = target

    def _answer(self, server: Nameserver, fqdn: str, timeout: float) -> Answer:
        msg = direct(server.address, self.port, norm(fqdn), dns.rdatatype.TXT, timeout)
        if isinstance(msg, Failed):
            return msg
        found = rrset(msg, norm(fqdn), dns.rdatatype.TXT)
        if found is None:
            return frozenset()
        return frozenset(b"".join(rd.strings).decode("utf-8", "replace") for rd in found)

    def txt(self, server: Nameserver, fqdn: str) -> set[str]:
        """The TXT values ``server`` has at ``fqdn``: a direct, non-recursive question on
        ``port`` (UDP; TCP when truncated). Empty when there are none; DnsError when the
        server does not answer, refuses, or is not authoritative."""
        answer = self._answer(server, fqdn, self.timeout)
        if isinstance(answer, Failed):
            raise DnsError(answer.about(str(server), norm(fqdn)))
        return set(answer)

    def wait(
        self,
        want: Mapping[Target, set[str]],
        deadline: float,
        *,
        on_wait: Callable[[str], None] = lambda s: None,
        poll: float = 1.0,
    ) -> None:
        """Return once every server of every target has every wanted value at the target's
        fqdn (other values there are fine).

        All servers are asked at once, first at once, then every ``poll`` seconds; a server
        that has shown its values is not asked again. ``on_wait`` gets a one-line progress
        message whenever what is missing changes. ``deadline`` is a ``time.monotonic()``
        value; past it, DnsError names each server still missing and what it answered."""
        wanted: dict[Check, set[str]] = {}
        for target, values in want.items():
            for server in target.servers:
                wanted.setdefault(Check(norm(target.fqdn), server), set()).update(values)
        frozen = {check: frozenset(values) for check, values in wanted.items()}
        pending = [check for check, values in frozen.items() if values]
        if not pending:
            return
        answers: dict[Check, Answer] = {}
        start = time.monotonic()
        said = None
        workers = min(MAX_THREADS, len(pending))
        with concurrent.futures.ThreadPoolExecutor(workers, "dns-propagation") as pool:
            while True:
                began = time.monotonic()  # each question may take ``timeout`` past the deadline
                futures = {
                    check: pool.submit(self._answer, check.server, check.fqdn, self.timeout)
                    for check in pending
                }
                for check, future in futures.items():
                    answers[check] = future.result()
                pending = [
                    check for check in pending if not _has_all(answers[check], frozen[check])
                ]
                if not pending:
                    return
                now = time.monotonic()
                if now >= deadline:
                    ready = [check for check in frozen if check not in pending]
                    raise DnsError(gave_up(now - start, pending, ready, frozen, answers))
                line = waiting(pending, frozen, answers)
                if line != said:
                    on_wait(line)
                    said = line
                time.sleep(max(0.0, min(began + poll, deadline) - time.monotonic()))
