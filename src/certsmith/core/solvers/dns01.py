"""DNS-01 (RFC 8555 section 8.4): TXT records written through a DNS provider, then seen on
every authoritative server of their zone before the CA is asked.

- All records of an order are presented at once (in parallel), then one wait covers them all
  (:meth:`Lookup.wait <certsmith.core.dns.propagation.Lookup.wait>` asks each authoritative
  server directly; no fixed sleep).
- A wildcard and its apex put two values at one name. A provider that replaces the values at a
  name instead of adding one is noticed (the first value is gone once the second is written):
  from then on one value per name is presented, validated and removed at a time.
- Cleanup removes exactly the values presented here; other TXT records at the name stay.
- Write-ahead record: before anything is added, what will be presented is written to the store
  under a *slot* (``dns-01/pending/<slot>.json``) whose lease this solver holds while it lives.
  A run killed before its cleanup leaves the record behind with its lease free; the next
  solver that starts removes those values (``prepare``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from certsmith.base.solverspec import DnsSpec, SolverSpec
from certsmith.base.store import keys
from certsmith.base.store.base import Lease, Store
from certsmith.core.dns.propagation import Lookup, Target
from certsmith.core.dns.provider import DnsProvider
from certsmith.core.dns.providers import from_spec as provider_from_spec
from certsmith.core.solvers.base import Challenge, SolverContext
from certsmith.errors import CertsmithError, DnsError, LockedError

MAX_PARALLEL = 8
MAX_SLOTS = 64


def txt_value(key_authorization: str) -> str:
    """The TXT value for a key authorization (RFC 8555 section 8.4)."""
    digest = hashlib.sha256(key_authorization.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class Record:
    """One TXT value presented: where (zone, name), what, and the server an RFC 2136 update
    goes to (empty for other providers)."""

    zone: str
    fqdn: str
    value: str
    server: str = ""


class Dns01Solver:
    challenge_type = "dns-01"

    def __init__(
        self,
        spec: DnsSpec,
        context: SolverContext,
        *,
        lookup: Lookup | None = None,
        provider: DnsProvider | None = None,
    ) -> None:
        self.spec = spec
        self.store: Store | None = context.store
        self.progress = context.progress
        self.lookup = lookup if lookup is not None else Lookup(spec.resolvers)
        self.provider = (
            provider
            if provider is not None
            else provider_from_spec(spec, primary_for=self._primary_for)
        )
        self.ready_timeout = float(spec.timeout)
        # True once the provider was seen replacing values instead of adding
        self.replaces = False
        self._lock = threading.Lock()
        self._targets: dict[str, Target] = {}
        self._journal: dict[tuple[str, str], Record] = {}
        self._slot: int | None = None
        self._lease: Lease | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def prepare(self) -> None:
        self.provider.prepare()
        if self.store is None:
            return
        self._slot, self._lease = self._take_slot(self.store)
        self._clean_leftovers(self.store)

    def close(self) -> None:
        if self._lease is not None:
            self._lease.release()
            self._lease = None

    # -- the Solver seam ------------------------------------------------------------------------

    def present_all(self, challenges: Sequence[Challenge]) -> Sequence[Challenge] | None:
        planned = [(c, self._record(c)) for c in challenges]
        if self.replaces:
            planned = _one_per_name(planned)
        records = [r for _c, r in planned]
        self._remember(records)
        failed = self._run_each(
            lambda r: self.provider.add_txt(r.zone, r.fqdn, r.value, self.spec.ttl),
            records,
            raise_first=False,
        )
        if failed:
            # a refused add wrote nothing: nothing to remove for it later
            self._forget(list(failed))
            raise failed[next(r for r in records if r in failed)]
        if not self.replaces and self.provider.appends is not True:
            planned = self._notice_replacing(planned)
        if len(planned) == len(challenges):
            return None
        return [c for c, _r in planned]

    def wait_ready(self, challenges: Sequence[Challenge], deadline: float) -> None:
        want: dict[Target, set[str]] = {}
        for c in challenges:
            want.setdefault(self._target(c.domain), set()).add(txt_value(c.key_authorization))
        until = min(deadline, time.monotonic() + self.spec.timeout)
        self.lookup.wait(want, until, on_wait=self.progress)

    def cleanup_all(self, challenges: Sequence[Challenge]) -> None:
        wanted = [self._record(c) for c in challenges]
        with self._lock:
            records = [r for r in wanted if (r.fqdn, r.value) in self._journal]
        failed = self._run_each(
            lambda r: self.provider.remove_txt(r.zone, r.fqdn, r.value), records, raise_first=False
        )
        self._forget([r for r in records if r not in failed])
        for record, exc in failed.items():
            self.progress(
                f"could not remove the TXT value at {record.fqdn} ({exc}); the next run removes it"
            )

    # -- where the records go -------------------------------------------------------------------

    def target(self, domain: str) -> Target:
        """Where the TXT record for ``domain`` (a wildcard's base name) is written."""
        return self._target(domain)

    def _target(self, domain: str) -> Target:
        with self._lock:
            found = self._targets.get(domain)
        if found is None:
            found = self.lookup.target(domain, self.spec.alias or None)
            with self._lock:
                self._targets[domain] = found
        return found

    def _record(self, challenge: Challenge) -> Record:
        target = self._target(challenge.domain)
        return Record(
            target.zone,
            target.fqdn,
            txt_value(challenge.key_authorization),
            self.update_server(target),
        )

    def _primary_for(self, zone: str) -> str:
        with self._lock:
            target = next((t for t in self._targets.values() if t.zone == zone), None)
        if target is None:
            raise DnsError(f"no server known for updates of zone {zone}: give --dns-server")
        return self.update_server(target)

    def update_server(self, target: Target) -> str:
        """Where an RFC 2136 update for ``target`` goes ("" for other providers)."""
        if not self.spec.provider.startswith("rfc2136"):
            return ""
        if self.spec.server:
            return self.spec.server
        if target.primary is None:
            raise DnsError(
                f"cannot find the primary server of zone {target.zone} (its SOA "
                "names no server with an address): give --dns-server HOST[:PORT]"
            )
        return _host_port(target.primary)

    # -- replacing providers --------------------------------------------------------------------

    def _notice_replacing(
        self, planned: list[tuple[Challenge, Record]]
    ) -> list[tuple[Challenge, Record]]:
        """After presenting: at a name given two values or more, is the first still there?
        If not, the provider replaces; keep only what it holds now."""
        by_name: dict[str, list[tuple[Challenge, Record]]] = {}
        for item in planned:
            by_name.setdefault(item[1].fqdn, []).append(item)
        kept: list[tuple[Challenge, Record]] = []
        for fqdn, items in by_name.items():
            if len(items) < 2:
                kept.extend(items)
                continue
            held = self._held(items[0][1])
            values = {r.value for _c, r in items}
            if held is None or values <= held or not (held & values):
                kept.extend(items)
                continue
            self.replaces = True
            self.progress(
                f"{self.provider.label} replaces the TXT values at {fqdn} instead "
                "of adding one: validating one value at a time"
            )
            kept.extend(item for item in items if item[1].value in held)
        return kept

    def _held(self, record: Record) -> set[str] | None:
        try:
            listed = self.provider.list_txt(record.zone, record.fqdn)
        except CertsmithError:
            listed = None
        if listed is not None:
            return set(listed)
        target = next((t for t in self._targets.values() if t.fqdn == record.fqdn), None)
        if target is None or not target.servers:
            return None
        try:
            return self.lookup.txt(target.servers[0], record.fqdn)
        except CertsmithError:
            return None

    # -- running provider calls -----------------------------------------------------------------

    def _run_each(
        self, call: Callable[[Record], None], records: Sequence[Record], *, raise_first: bool = True
    ) -> dict[Record, CertsmithError]:
        failed: dict[Record, CertsmithError] = {}

        def one(record: Record) -> None:
            try:
                call(record)
            except CertsmithError as exc:
                failed[record] = exc

        if len(records) == 1:
            one(records[0])
        elif records:
            with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(records))) as pool:
                list(pool.map(one, records))
        if failed and raise_first:
            first = next(r for r in records if r in failed)
            raise failed[first]
        return failed

    # -- the write-ahead record -----------------------------------------------------------------

    def _remember(self, records: Sequence[Record]) -> None:
        with self._lock:
            for r in records:
                self._journal[(r.fqdn, r.value)] = r
            self._save_journal()

    def _forget(self, records: Sequence[Record]) -> None:
        with self._lock:
            for r in records:
                self._journal.pop((r.fqdn, r.value), None)
            self._save_journal()

    def _save_journal(self) -> None:
        if self.store is None or self._slot is None:
            return
        key = keys.dns01_pending(str(self._slot))
        if not self._journal:
            self.store.delete(key)
            return
        body = {"spec": self.spec.to_dict(), "records": [asdict(r) for r in self._journal.values()]}
        self.store.put(key, json.dumps(body, indent=1).encode())

    def _take_slot(self, store: Store) -> tuple[int, Lease]:
        for slot in range(MAX_SLOTS):
            try:
                return slot, store.lock(keys.dns01_lease(str(slot)), ttl=24 * 3600, wait=0)
            except LockedError:
                continue
        raise DnsError(f"{MAX_SLOTS} DNS-01 runs are going on at once; wait for one to end")

    def _clean_leftovers(self, store: Store) -> None:
        clean_leftovers(store, self.progress, own_slot=self._slot, reuse=(self.spec, self.provider))


def clean_leftovers(
    store: Store,
    progress: Callable[[str], None],
    *,
    own_slot: int | None = None,
    reuse: tuple[DnsSpec, DnsProvider] | None = None,
) -> None:
    """Remove what DNS-01 runs that died before their cleanup left in DNS (their slot's lease
    is free; ``own_slot`` is held by the caller, so what it records is a dead run's too)."""
    for key in store.list(keys.DNS01_PENDING):
        slot = key.rsplit("/", 1)[-1].removesuffix(".json")
        lease: Lease | None = None
        if slot != str(own_slot):
            try:
                lease = store.lock(keys.dns01_lease(slot), wait=0)
            except LockedError:
                continue  # its run is still going
        try:
            _clean_entry(store, key, progress, reuse)
        finally:
            if lease is not None:
                lease.release()


def _clean_entry(
    store: Store,
    key: str,
    progress: Callable[[str], None],
    reuse: tuple[DnsSpec, DnsProvider] | None,
) -> None:
    raw = store.get(key)
    try:
        body: dict[str, Any] = json.loads(raw or b"{}")
        spec = SolverSpec.from_dict(body["spec"])
        records = [Record(**r) for r in body["records"]]
    except (ValueError, KeyError, TypeError, CertsmithError):
        progress(f"ignoring an unreadable record of DNS-01 leftovers: {store.where(key)}")
        store.delete(key)
        return
    if not isinstance(spec, DnsSpec):
        store.delete(key)
        return
    providers: dict[str, DnsProvider] = {}
    left: list[Record] = []
    for r in records:
        try:
            provider = providers.get(r.server)
            if provider is None:
                provider = (
                    reuse[1]
                    if reuse is not None and reuse[0] == spec and (spec.server or not r.server)
                    else provider_from_spec(spec, server=r.server or None)
                )
                provider.prepare()
                providers[r.server] = provider
            provider.remove_txt(r.zone, r.fqdn, r.value)
            progress(f"removed a TXT value left at {r.fqdn} by an earlier run")
        except CertsmithError as exc:
            progress(
                f"could not remove the TXT value left at {r.fqdn}: {exc}; trying again next run"
            )
            left.append(r)
    if left:
        body["records"] = [asdict(r) for r in left]
        store.put(key, json.dumps(body, indent=1).encode())
    else:
        store.delete(key)


def _one_per_name(planned: list[tuple[Challenge, Record]]) -> list[tuple[Challenge, Record]]:
    seen: set[str] = set()
    out = []
    for item in planned:
        if item[1].fqdn not in seen:
            seen.add(item[1].fqdn)
            out.append(item)
    return out


def _host_port(address: str) -> str:
    return f"[{address}]:53" if ":" in address else f"{address}:53"


def from_spec(spec: DnsSpec, context: SolverContext) -> Dns01Solver:
    return Dns01Solver(spec, context)
