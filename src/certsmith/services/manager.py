"""Certificate lifecycle: get, renew, revoke, deploy, list.

One lock per certificate (the store's) makes two certsmith processes order a certificate once;
each new version is published whole before ``live/`` switches, so a crash or a CA failure leaves
the previous certificate live. Several certificates are ordered concurrently (threads; the ACME
round trips dominate).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from certsmith.base.certstate import CertState, load_state, save_state
from certsmith.base.crashpoints import crash_point
from certsmith.base.identifiers import Identifier
from certsmith.base.model import Bundle, FileTarget, SiteSpec, SolverSpec
from certsmith.base.sites import load_site, site_key, site_names
from certsmith.base.solverspec import DnsSpec
from certsmith.base.store import Lease, Store, open_store
from certsmith.base.store import keys as store_keys
from certsmith.core import renewal
from certsmith.core.solvers.base import SolverContext
from certsmith.errors import (
    CAError,
    CertsmithError,
    ChallengeError,
    DeployError,
    NotFoundError,
    StoreError,
    UsageError,
)
from certsmith.services import integrity
from certsmith.services.accounts import (
    AccountOptions,
    check_can_register,
    load_or_create,
    reregister,
)
from certsmith.services.lifecycle import Bus, event_log_bus

if TYPE_CHECKING:
    from certsmith.base import keys as keys_module
    from certsmith.core.issuers.acme import Account, AcmeConnection
    from certsmith.core.issuers.base import Issued
    from certsmith.core.solvers.base import Solver

MAX_PARALLEL = 20
Progress = Callable[[str, str], None]


@dataclass(frozen=True)
class Outcome:
    """What happened to one certificate in one command."""

    name: str
    action: str  # issued | renewed | skipped | failed | due | deploy-failed
    detail: str = ""
    serial: str | None = None
    not_after: dt.datetime | None = None
    version: int | None = None

    @property
    def ok(self) -> bool:
        return self.action not in ("failed", "deploy-failed")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "action": self.action,
            "detail": self.detail,
            "serial": self.serial,
            "version": self.version,
            "not_after": self.not_after.isoformat() if self.not_after else None,
        }


@dataclass(frozen=True)
class SiteStatus:
    spec: SiteSpec
    state: CertState
    next_renewal: dt.datetime | None
    live_version: int | None

    def to_json(self) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        na = self.state.not_after
        return {
            "name": self.spec.name,
            "names": [i.value for i in self.spec.identifiers],
            "server": self.spec.server,
            "solver": self.spec.solver.describe(),
            "issuer": self.state.issuer,
            "serial": self.state.serial,
            "not_after": na.isoformat() if na else None,
            "days_left": round((na - now).total_seconds() / 86400, 1) if na else None,
            "next_renewal": self.next_renewal.isoformat() if self.next_renewal else None,
            "last_result": self.state.last_result,
            "last_error": self.state.last_error,
            "failures": self.state.failures,
            "version": self.live_version,
        }


@dataclass(frozen=True)
class DamagedSite:
    """A lineage whose site file cannot be read: listed by name, with why."""

    name: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "names": [],
            "server": None,
            "solver": None,
            "issuer": None,
            "serial": None,
            "not_after": None,
            "days_left": None,
            "next_renewal": None,
            "last_result": "damaged",
            "last_error": self.reason,
            "failures": 0,
            "version": None,
        }


@dataclass(frozen=True)
class GetRequest:
    groups: tuple[tuple[str, tuple[Identifier, ...]], ...]
    server: str
    solver: SolverSpec
    account: AccountOptions = field(default_factory=AccountOptions)
    key_type: str = "ecdsa-p256"
    reuse_key: bool = False
    profile: str | None = None
    preferred_chain: str | None = None
    deploy_files: tuple[FileTarget, ...] = ()
    deploy_commands: tuple[str, ...] = ()
    ca_bundle: str | None = None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_solver(spec: SolverSpec, context: SolverContext | None = None) -> Solver:
    from certsmith.core.solvers.registry import build

    return build(spec, context)


class Manager:
    def __init__(
        self,
        home: Path,
        progress: Progress | None = None,
        *,
        store: Store | None = None,
        bus: Bus | None = None,
    ) -> None:
        self.home = home
        self.store = store if store is not None else open_store(home)
        # Lifecycle events go out on the bus; services.root wires alerts and metrics to it.
        self.bus = bus if bus is not None else event_log_bus(home)
        self.progress: Progress = progress or (lambda _n, _s: None)
        self._connections: dict[tuple[str, str | None], AcmeConnection] = {}
        # (name, one line) for every damage found and reported by this command (repaired or
        # not); the CLI prints them and exits non-zero.
        self.damage: list[tuple[str, str]] = []

    def connection(self, server: str, ca_bundle: str | None = None) -> AcmeConnection:
        """One connection per CA and trust bundle (``ca_bundle``: see ``SiteSpec``)."""
        from certsmith.core.issuers.acme import AcmeConnection

        if ca_bundle and not Path(ca_bundle).exists():
            raise CAError(
                f"the CA bundle {ca_bundle} recorded for {server} is gone: run "
                "'certsmith get' again with --ca-bundle, or restore the file"
            )
        key = (server, ca_bundle)
        if key not in self._connections:
            self._connections[key] = AcmeConnection(server, ca_bundle)
        return self._connections[key]

    # -- get ------------------------------------------------------------------------------------

    def get(self, req: GetRequest) -> list[Outcome]:
        """Obtain one certificate per group (concurrently), store, deploy.

        What each lineage holds is noted first: a ``get`` of the same site by another process
        that finishes while this one waits (for the standalone listener, the lineage lock) is
        seen under the lock, and not ordered twice."""
        from certsmith.core.deploy import check_target

        self._clean_dns_leftovers()
        seen = {name: load_state(self.store, name).serial for name, _ in req.groups}
        for target in req.deploy_files:
            check_target(target)
        for _name, idents in req.groups:
            wild = [i.value for i in idents if i.is_wildcard]
            if wild and not isinstance(req.solver, DnsSpec):
                raise UsageError(
                    f"{wild[0]} needs the DNS-01 challenge: give --dns "
                    "(rfc2136, lexicon:PROVIDER or hook)"
                )
        check_can_register(self.store, req.server, req.account)
        specs = [
            SiteSpec(
                name=name,
                identifiers=idents,
                server=req.server,
                solver=req.solver,
                key_type=req.key_type,
                reuse_key=req.reuse_key,
                profile=req.profile,
                preferred_chain=req.preferred_chain,
                deploy_files=req.deploy_files,
                deploy_commands=req.deploy_commands,
                ca_bundle=req.ca_bundle,
            )
            for name, idents in req.groups
        ]
        conn = self.connection(req.server, req.ca_bundle)
        conn.directory()  # an unreachable CA stops here, before anything is written
        with self._solver(req.solver) as solver:
            account = load_or_create(self.store, conn, req.account)
            jobs = [
                (
                    spec,
                    functools.partial(
                        self._issue,
                        conn,
                        account,
                        spec,
                        solver,
                        renewing=False,
                        seen_serial=seen[spec.name],
                    ),
                )
                for spec in specs
            ]
            outcomes = self._run_all(jobs)
        self.bus.run_done("issuance", outcomes)
        return outcomes

    def _clean_dns_leftovers(self) -> None:
        """TXT records that a DNS-01 run killed before its cleanup left behind are removed
        by the next get or renew, whatever it is for (a failure here fails nothing)."""
        try:
            if not self.store.list(store_keys.DNS01_PENDING):
                return
            from certsmith.core.solvers.dns01 import clean_leftovers

            clean_leftovers(self.store, lambda line: self.progress("dns-01", line))
        except CertsmithError as exc:
            self.progress("dns-01", f"could not clean up after an earlier run: {exc}")

    @contextlib.contextmanager
    def _solver(self, spec: SolverSpec) -> Iterator[Solver]:
        """A prepared solver. Our own listener is shared by no two certsmith processes: the
        second waits for the first to finish (and then usually finds nothing left to do)."""
        with contextlib.ExitStack() as stack:
            exclusive = spec.exclusive()
            if exclusive is not None:
                stack.enter_context(self.store.lock(exclusive))
            solver = make_solver(
                spec, SolverContext(self.store, lambda line: self.progress(spec.kind, line))
            )
            solver.prepare()
            stack.callback(solver.close)
            yield solver

    def _run_all(self, jobs: Sequence[tuple[SiteSpec, Callable[[], Outcome]]]) -> list[Outcome]:
        if len(jobs) == 1:
            return [self._guard(jobs[0][0], jobs[0][1])]
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(jobs))) as pool:
            futures = [pool.submit(self._guard, spec, fn) for spec, fn in jobs]
            return [f.result() for f in futures]

    def _guard(self, spec: SiteSpec, fn: Callable[[], Outcome]) -> Outcome:
        try:
            return fn()
        except CertsmithError as exc:
            return Outcome(spec.name, "failed", str(exc))

    def _issue(
        self,
        conn: AcmeConnection,
        account: Account,
        spec: SiteSpec,
        solver: Solver,
        *,
        renewing: bool,
        force: bool = False,
        seen_serial: str | None = None,
    ) -> Outcome:
        name = spec.name
        with self.store.lock(store_keys.lineage_lease(name)) as lease:
            state = load_state(self.store, name)
            if renewing and state.serial != seen_serial:
                # Another process renewed it while we waited for the lock.
                return Outcome(
                    name,
                    "skipped",
                    "renewed by another certsmith process",
                    state.serial,
                    state.not_after,
                )
            if not renewing and state.serial != seen_serial and self._same_site(spec):
                # Another 'get' of the same site finished while we waited for the lock.
                return Outcome(
                    name,
                    "skipped",
                    "issued by another certsmith process",
                    state.serial,
                    state.not_after,
                    self.store.live_version(name),
                )
            started = _now()
            try:
                outcome = self._order(conn, account, spec, solver, state, renewing, lease)
            except CertsmithError as exc:
                retry_after = None
                if isinstance(exc, CAError) and exc.retry_after:
                    retry_after = started + dt.timedelta(seconds=exc.retry_after)
                failures = state.failures + 1
                if renewing or state.serial is not None:
                    # (A first attempt that failed leaves no half-made certificate behind.)
                    save_state(
                        self.store,
                        name,
                        state.update(
                            failures=failures,
                            last_attempt=started,
                            last_failure=started,
                            last_error=str(exc),
                            retry_after=retry_after,
                            last_result="failed",
                        ),
                        fence=lease,
                    )
                self.bus.emit("failed", name, error=str(exc), failures=failures)
                raise
        return self._deploy_after(spec, outcome)

    def _same_site(self, spec: SiteSpec) -> bool:
        try:
            return load_site(self.store, spec.name) == spec
        except CertsmithError:
            return False

    def _order(
        self,
        conn: AcmeConnection,
        account: Account,
        spec: SiteSpec,
        solver: Solver,
        state: CertState,
        renewing: bool,
        lease: Lease,
    ) -> Outcome:
        from certsmith.core.issuers.acme_issuer import AcmeIssuer
        from certsmith.services import lineage

        name = spec.name
        reused = None
        if spec.reuse_key and self.store.live_version(name) is not None:
            reused = self._live_key(name)
        request = lineage.request_for(
            spec.identifiers, spec.key_type, reused[1] if reused is not None else None
        )
        crash_point("order:key-generated")
        replaces = state.ari_id if (renewing and state.ari_supported) else None
        self.progress(name, "ordering")

        def order(acct: Account) -> tuple[Issued, Bundle]:
            issuer = AcmeIssuer(conn, acct, on_step=lambda s: self.progress(name, s))
            return lineage.obtain(
                issuer,
                spec.identifiers,
                request,
                solver,
                profile=spec.profile,
                replaces=replaces,
                preferred_chain=spec.preferred_chain,
            )

        try:
            issued, bundle = order(account)
        except CAError as exc:
            if exc.code != "accountDoesNotExist":
                raise
            issued, bundle = order(reregister(self.store, conn, account))
        crash_point("order:issued")
        if issued.replace_refused:
            self.bus.emit("replaces-refused", name, replaces=replaces, error=issued.replace_refused)
        replaces = issued.replaced
        action = "renewed" if renewing else "issued"
        written = lineage.write(
            self.store,
            self.bus,
            lineage.NewVersion(
                name,
                bundle,
                action,
                meta={"server": spec.server, "key_type": spec.key_type, "replaces": replaces},
                event={"replaces": replaces},
                ari_supported=conn.has_ari(),
            ),
            site=spec,
            fence=lease,
        )
        version, info = written.version, written.info
        self.progress(name, action)
        return Outcome(name, action, f"version {version}", info.serial, info.not_after, version)

    def _live_key(self, name: str) -> tuple[keys_module.PrivateKey, bytes] | None:
        """The live key for --reuse-key, unless the live set is damaged (then a new one)."""
        from certsmith.base import keys
        from certsmith.base.liveset import Damaged, examine

        try:
            examine(self.store.live_path(name))
            pem = (self.store.live_path(name) / "privkey.pem").read_bytes()
            return keys.load_key(pem), pem
        except (Damaged, UsageError, OSError):
            return None

    def _deploy_after(self, spec: SiteSpec, outcome: Outcome) -> Outcome:
        if not (spec.deploy_files or spec.deploy_commands):
            return outcome
        try:
            self.deploy(spec.name, spec)
        except DeployError as exc:
            return Outcome(
                outcome.name,
                "deploy-failed",
                f"{outcome.action}, but {exc}",
                outcome.serial,
                outcome.not_after,
                outcome.version,
            )
        return outcome

    # -- deploy ---------------------------------------------------------------------------------

    def deploy(self, name: str, spec: SiteSpec | None = None) -> list[str]:
        from certsmith.core.deploy import LiveFiles, deploy

        spec = spec or load_site(self.store, name)
        if self.store.live_version(name) is None:
            raise UsageError(f"{name} has no certificate yet")
        live = LiveFiles(name, tuple(i.value for i in spec.identifiers), self.store.live_path(name))
        try:
            written = deploy(live, spec.deploy_files, spec.deploy_commands)
            self._prove_served(name)
        except DeployError as exc:
            self.bus.emit("deploy-failed", name, error=str(exc))
            raise
        self.bus.emit("deployed", name, files=written, commands=len(spec.deploy_commands))
        return written

    def _prove_served(self, name: str) -> None:
        """A reload command's exit status proves nothing: the web servers certsmith installed
        NAME into must serve the live certificate now, or the deployment failed."""
        from certsmith.services.servers import prove_installed

        shortfall = prove_installed(self.home, name)
        if shortfall is not None:
            raise DeployError(f"the reload did not take effect: {shortfall}")

    # -- renew ----------------------------------------------------------------------------------

    def _names(self, names: Iterable[str] | None) -> list[str]:
        if not names:
            return site_names(self.store)
        wanted = list(dict.fromkeys(names))
        for name in wanted:
            if not self.store.exists(site_key(name)):
                raise NotFoundError(f"no certificate named {name!r} (see 'certsmith list')")
        return wanted

    def renew(
        self, names: Sequence[str] | None = None, *, force: bool = False, dry_run: bool = False
    ) -> list[Outcome]:
        """Renew what is due. The scan touches no network unless an ARI answer expired; it
        reads each site file and verifies each live set (``integrity``), so damage is found
        and reported at every run, and one damaged lineage fails alone."""
        now = _now()
        if not dry_run:
            self._clean_dns_leftovers()
        wanted = self._names(names)
        outcomes: dict[str, Outcome] = {}
        specs: dict[str, SiteSpec] = {}
        states: dict[str, CertState] = {}
        forced: dict[str, str] = {}
        for name in wanted:
            spec = self._load_spec(name)
            if isinstance(spec, DamagedSite):  # reported and alerted as a failure
                outcomes[name] = Outcome(name, "failed", spec.reason)
                continue
            try:
                states[name], due_now = self._check(name)
            except StoreError as exc:  # unreadable: this certificate fails, not the others
                outcomes[name] = Outcome(name, "failed", str(exc))
                continue
            specs[name] = spec
            if due_now:
                forced[name] = due_now
        healthy = [n for n in wanted if n in specs]

        def spec_of(name: str) -> SiteSpec:
            return specs[name]

        self._refresh_ari(healthy, states, now, spec_of)
        due: list[tuple[SiteSpec, renewal.Decision]] = []
        for name in healthy:
            state = states[name]
            decision = self._decide(name, state, now, force, forced.get(name))
            if decision.due:
                due.append((spec_of(name), decision))
            else:
                outcomes[name] = Outcome(
                    name,
                    "skipped",
                    f"{decision.reason}; next {decision.at:%Y-%m-%d %H:%M}Z",
                    state.serial,
                    state.not_after,
                )
        if dry_run:
            for spec, decision in due:
                outcomes[spec.name] = Outcome(
                    spec.name, "due", decision.reason, states[spec.name].serial
                )
        elif due:
            for spec, _decision in due:
                outcomes[spec.name] = Outcome(spec.name, "failed", "not attempted")
            for outcome in self._renew_due(due, states, force):
                outcomes[outcome.name] = outcome
        result = [outcomes[n] for n in wanted]
        if not dry_run:
            # Damage found (repaired or not) is alerted as a failure of that certificate.
            damaged = [Outcome(name, "failed", line) for name, line in self.damage]
            self.bus.run_done("renewal", [*result, *damaged], scan_expiry=True)
        return result

    def _load_spec(self, name: str) -> SiteSpec | DamagedSite:
        """The lineage's spec, or why its site file cannot be used (one damaged file must not
        stop the other certificates)."""
        try:
            return load_site(self.store, name)
        except StoreError as exc:  # damaged, or unreadable
            self.bus.emit("damaged", name, error=str(exc))
            return DamagedSite(name, str(exc))

    def _check(self, name: str) -> tuple[CertState, str | None]:
        """The lineage's state after verifying (and repairing) it; a reason if it is due now."""
        checked = integrity.check(self.store, name)
        if checked.damage:
            self.damage.append((name, checked.damage))
        return checked.state, checked.due

    def _decide(
        self, name: str, state: CertState, now: dt.datetime, force: bool, due_now: str | None = None
    ) -> renewal.Decision:
        if due_now:
            return renewal.Decision(True, now, due_now)
        if (
            state.not_after is None
            or state.not_before is None
            or self.store.live_version(name) is None
        ):
            return renewal.Decision(True, now, "no certificate yet")
        ari = None
        if state.ari_start and state.ari_end:
            ari = renewal.AriWindow(state.ari_start, state.ari_end)
        return renewal.decide(
            now,
            not_before=state.not_before,
            not_after=state.not_after,
            seed=state.serial or name,
            ari=ari,
            failures=state.failures,
            last_failure=state.last_failure,
            retry_after=state.retry_after,
            force=force,
        )

    def _refresh_ari(
        self,
        names: Sequence[str],
        states: dict[str, CertState],
        now: dt.datetime,
        spec_of: Callable[[str], SiteSpec],
    ) -> None:
        """Ask the CA for renewal windows whose cached answer has expired (Retry-After)."""
        stale = [
            n
            for n in names
            if (st := states[n]).ari_supported
            and st.ari_id
            and st.not_after
            and st.not_after > now
            and (st.ari_next_check is None or st.ari_next_check <= now)
        ]
        if not stale:
            return
        servers = {n: (spec_of(n).server, spec_of(n).ca_bundle) for n in stale}

        def fetch(name: str) -> None:
            state = states[name]
            try:
                window, next_check = self.connection(*servers[name]).renewal_info(
                    state.ari_id or ""
                )
            except CertsmithError as exc:
                self.bus.emit("ari-failed", name, error=str(exc))
                states[name] = state.update(ari_next_check=now + dt.timedelta(hours=1))
            else:
                states[name] = state.update(
                    ari_start=window.start, ari_end=window.end, ari_next_check=next_check
                )
            with self.store.lock(store_keys.lineage_lease(name)):
                if load_state(self.store, name).serial == state.serial:
                    save_state(self.store, name, states[name])

        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(stale))) as pool:
            list(pool.map(fetch, stale))

    def _renew_due(
        self,
        due: Sequence[tuple[SiteSpec, renewal.Decision]],
        states: dict[str, CertState],
        force: bool,
    ) -> list[Outcome]:
        by_solver: dict[SolverSpec, list[SiteSpec]] = {}
        for spec, _decision in due:
            by_solver.setdefault(spec.solver, []).append(spec)
        outcomes: list[Outcome] = []
        for solver_spec, specs in by_solver.items():
            try:
                with self._solver(solver_spec) as solver:
                    jobs = [
                        (spec, self._renew_job(spec, solver, states[spec.name], force))
                        for spec in specs
                    ]
                    outcomes += self._run_all(jobs)
            except ChallengeError as exc:  # the solver could not be prepared
                outcomes += [self._record_failure(spec, states[spec.name], exc) for spec in specs]
        return outcomes

    def _renew_job(
        self, spec: SiteSpec, solver: Solver, state: CertState, force: bool
    ) -> Callable[[], Outcome]:
        def job() -> Outcome:
            conn = self.connection(spec.server, spec.ca_bundle)
            account = load_or_create(self.store, conn, AccountOptions())
            return self._issue(
                conn, account, spec, solver, renewing=True, force=force, seen_serial=state.serial
            )

        return job

    def _record_failure(self, spec: SiteSpec, state: CertState, exc: CertsmithError) -> Outcome:
        now = _now()
        with self.store.lock(store_keys.lineage_lease(spec.name)):
            save_state(
                self.store,
                spec.name,
                state.update(
                    failures=state.failures + 1,
                    last_attempt=now,
                    last_failure=now,
                    last_error=str(exc),
                    last_result="failed",
                ),
            )
        self.bus.emit("failed", spec.name, error=str(exc))
        return Outcome(spec.name, "failed", str(exc))

    # -- revoke ---------------------------------------------------------------------------------

    def revoke(self, name: str, reason: int = 0) -> Outcome:
        from certsmith.services.accounts import load_existing

        spec = load_site(self.store, name)
        if self.store.live_version(name) is None:
            raise UsageError(f"{name} has no certificate to revoke")
        cert_pem = (self.store.live_path(name) / "cert.pem").read_bytes()
        conn = self.connection(spec.server, spec.ca_bundle)
        account = load_existing(self.store, spec.server)
        conn.revoke(account, cert_pem, reason)
        with self.store.lock(store_keys.lineage_lease(name)):
            state = load_state(self.store, name)
            # Ask the CA again at the next scan: after a revocation its window moves.
            save_state(self.store, name, state.update(ari_next_check=None, last_result="revoked"))
        self.bus.emit("revoked", name, serial=load_state(self.store, name).serial)
        return Outcome(name, "revoked", "", load_state(self.store, name).serial)

    # -- list -----------------------------------------------------------------------------------

    def status(self) -> list[SiteStatus | DamagedSite]:
        """Every lineage, verified (see ``integrity``); damaged site files are listed too."""
        now = _now()
        out: list[SiteStatus | DamagedSite] = []
        for name in site_names(self.store):
            spec = self._load_spec(name)
            if isinstance(spec, DamagedSite):
                out.append(spec)
                continue
            try:
                state, due_now = self._check(name)
            except StoreError as exc:
                out.append(DamagedSite(name, str(exc)))
                continue
            decision = self._decide(name, state, now, False, due_now)
            out.append(SiteStatus(spec, state, decision.at, self.store.live_version(spec.name)))
        return out
