"""Obtaining and renewing the proxy's certificates: local CA for local names, ACME for the rest.

Runs in a short-lived process the supervisor forks (first at start, then on a timer), so the
workers never block on a CA and the supervisor never runs threads it would later fork. ACME goes
through :class:`~certsmith.services.manager.Manager` like ``certsmith get``/``renew``: the same
store, locks, renewal schedule (ARI, lifetime fraction, back-off) and events. HTTP-01 and
TLS-ALPN-01 are answered by the proxy's own listeners: the solver writes them into the store,
where every worker reads them. A ``dns-01`` site's challenges go through its DNS provider (its
:class:`~certsmith.base.solverspec.DnsSpec`); the only way to a public wildcard.

Each site's lineage records the solver it is ordered and renewed with (:func:`site_solver`):
sites are ordered in one ``Manager.get`` per distinct solver, and before a renewal each site
file is pointed at its site's solver, so ``certsmith renew`` from a timer does the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from certsmith.base import policy
from certsmith.base.model import SolverSpec, TlsAlpnSpec, WebrootSpec
from certsmith.base.sites import load_site
from certsmith.base.solverspec import DnsSpec
from certsmith.base.store import Store, open_store
from certsmith.base.store import keys as store_keys
from certsmith.errors import CertsmithError, UsageError
from certsmith.services.lifecycle import Bus
from certsmith.services.proxy.certs import TLS_ALPN_DIR, ensure_local
from certsmith.services.proxy.config import ProxyConfig, Site

# Under the home, the one HTTP-01 directory (shared with the web-server installers); the
# workers answer /.well-known/acme-challenge/ from it.
WEBROOT = policy.HTTP01_DIR


def challenge_webroot(home: Path) -> Path:
    """Where HTTP-01 answers are written (by any certsmith process) for the proxy to serve."""
    path = Path(home) / WEBROOT
    path.mkdir(parents=True, exist_ok=True)
    return path


def solver_spec(config: ProxyConfig, home: Path) -> SolverSpec:
    """Challenges answered by the proxy itself: HTTP-01 from a webroot the workers serve, or
    TLS-ALPN-01 from challenge certificates they load. Either way through the store, so
    ``certsmith renew`` from a timer works through a running proxy too. (With a top-level
    ``challenge = "dns-01"``, HTTP-01 for the sites that say ``challenge = "http-01"``.)"""
    return _listener(config.acme.challenge, home)


def _listener(challenge: str, home: Path) -> SolverSpec:
    if challenge == "tls-alpn-01":
        return TlsAlpnSpec(webroot=str(Path(home) / TLS_ALPN_DIR))
    return WebrootSpec(webroot=str(challenge_webroot(home)))


def site_solver(site: Site, config: ProxyConfig, home: Path) -> SolverSpec:
    """How an ACME site proves control: its DNS-01 spec, or the proxy's listener for its own
    challenge or, without one, the proxy's."""
    if site.dns is not None:
        return site.dns
    return _listener(site.challenge or config.acme.challenge, home)


def check_dns_files(config: ProxyConfig) -> None:
    """The files the dns-01 sites' providers read (a TSIG key, a credentials file) can be
    read: one line at start and on reload, rather than a failed order later in the job."""
    import os
    import stat

    for site in config.sites:
        if site.dns is None:
            continue
        for key in ("tsig_key_file", "credentials"):
            path = getattr(site.dns, key)
            if not path:
                continue
            try:
                if not stat.S_ISREG(os.stat(path).st_mode):  # (a FIFO would block a read)
                    raise UsageError(f"{site.names[0]}: DNS-01 {key} {path}: not a file")
                os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
            except OSError as exc:
                raise UsageError(
                    f"{site.names[0]}: DNS-01 {key} {path}: {exc.strerror or exc}"
                ) from None


@dataclass(frozen=True)
class JobResult:
    changed: tuple[str, ...]  # lineages with a new version
    failed: tuple[str, ...]  # lineages still without a usable certificate or failing renewal


def ensure_local_sites(
    config: ProxyConfig,
    home: Path,
    say: Callable[[str], None],
    force: bool = False,
    bus: Bus | None = None,
) -> list[str]:
    """Issue or re-issue the local-CA certificates that are due; the lineages changed. A
    failure raises (at start and on reload the proxy must not run without them)."""
    from certsmith.services.manager import Outcome

    changed = []
    outcomes = []
    for site in config.sites:
        if site.uses_acme:
            continue
        version = ensure_local(home, site.cert_name, site.cert_identifiers, force=force, bus=bus)
        if version is not None:
            say(f"local CA certificate for {_names(site)} (version {version})")
            changed.append(site.cert_name)
            outcomes.append(
                Outcome(
                    site.cert_name, "issued" if version == 1 else "renewed", f"version {version}"
                )
            )
    if bus is not None and outcomes:
        bus.run_done("issuance", outcomes)
    return changed


def _local_job(
    config: ProxyConfig, home: Path, say: Callable[[str], None], bus: Bus
) -> tuple[list[str], list[str]]:
    """The job's local-CA part: each site on its own (one failing does not stop the others),
    the run told to the bus like any renewal run, so alerts and metrics see it."""
    from certsmith.services import lineage
    from certsmith.services.manager import Outcome

    changed: list[str] = []
    failed: list[str] = []
    outcomes: list[Outcome] = []
    for site in config.sites:
        if site.uses_acme:
            continue
        try:
            version = ensure_local(home, site.cert_name, site.cert_identifiers, bus=bus)
        except CertsmithError as exc:
            say(f"{site.cert_name}: local CA certificate failed: {exc}")
            try:
                lineage.record_failure(
                    open_store(home), bus, site.cert_name, str(exc), issuer="local CA"
                )
            except CertsmithError as again:  # (the store itself is failing)
                say(f"{site.cert_name}: cannot record the failure: {again}")
            outcomes.append(Outcome(site.cert_name, "failed", str(exc)))
            failed.append(site.cert_name)
            continue
        if version is not None:
            say(f"local CA certificate for {_names(site)} (version {version})")
            changed.append(site.cert_name)
            outcomes.append(Outcome(site.cert_name, "renewed", f"version {version}"))
    if outcomes:
        bus.run_done("renewal", outcomes)
    return changed, failed


def _names(site: Site) -> str:
    return ", ".join(i.value for i in site.cert_identifiers)


def _needs_order(store: Store, site: Site) -> bool:
    """No certificate yet, or the site's names changed since it was issued."""
    if store.live_version(site.cert_name) is None:
        return True
    try:
        spec = load_site(store, site.cert_name)
    except CertsmithError:
        return True
    return set(spec.identifiers) != set(site.names)


def run_job(config: ProxyConfig, home: Path, say: Callable[[str], None]) -> JobResult:
    """Issue what is missing and renew what is due, for every site."""
    from certsmith.core.issuers.cas import resolve_server
    from certsmith.services.accounts import AccountOptions
    from certsmith.services.manager import GetRequest, Outcome
    from certsmith.services.root import build

    services = build(home)  # the same subscribers as 'certsmith renew': alerts, metrics
    changed, failed = _local_job(config, home, say, services.bus)
    acme_sites = [s for s in config.sites if s.uses_acme]
    if not acme_sites:
        return _done(changed, failed, services.bus.failures, say)
    store = services.store
    manager = services.manager
    solvers = {s.cert_name: site_solver(s, config, home) for s in acme_sites}
    server = resolve_server(config.acme.server)
    to_order = [s for s in acme_sites if _needs_order(store, s)]
    to_renew = [s.cert_name for s in acme_sites if s not in to_order]
    for solver, sites in by_solver(to_order, solvers).items():
        say(
            "ordering certificates for "
            + "; ".join(_names(s) for s in sites)
            + f" from {server}{_how(solver)}"
        )
        request = GetRequest(
            groups=tuple((s.cert_name, s.names) for s in sites),
            server=server,
            solver=solver,
            account=AccountOptions(email=config.acme.email, agree_tos=config.acme.agree_tos),
        )
        try:
            outcomes = manager.get(request)
        except CertsmithError as exc:  # before any order (the CA is unreachable, say)
            say(f"cannot order certificates for {'; '.join(_names(s) for s in sites)}: {exc}")
            failed += [s.cert_name for s in sites]
            outcomes = []
            services.bus.run_done(
                "issuance", [Outcome(s.cert_name, "failed", str(exc)) for s in sites]
            )
        for outcome in outcomes:
            if outcome.ok:
                say(
                    f"{outcome.name}: {outcome.action} (serial {outcome.serial}, valid until "
                    f"{outcome.not_after:%Y-%m-%d %H:%M}Z)"
                )
                changed.append(outcome.name)
            else:
                say(f"{outcome.name}: failed: {outcome.detail}")
                failed.append(outcome.name)
    if to_renew:
        _use_site_solvers(store, {name: solvers[name] for name in to_renew})
        try:
            outcomes = manager.renew(to_renew)
        except CertsmithError as exc:
            say(f"renewal check failed: {exc}")
            outcomes = []
            failed += to_renew
            services.bus.run_done(
                "renewal", [Outcome(n, "failed", str(exc)) for n in to_renew], scan_expiry=True
            )
        for outcome in outcomes:
            if outcome.action == "renewed":
                say(f"{outcome.name}: renewed (serial {outcome.serial})")
                changed.append(outcome.name)
            elif not outcome.ok:
                say(f"{outcome.name}: renewal failed: {outcome.detail}")
                failed.append(outcome.name)
        for name, line in manager.damage:  # found (and repaired, or renewed) by this run
            say(f"{name}: {line}")
    return _done(changed, failed, services.bus.failures, say)


def _done(
    changed: list[str],
    failed: list[str],
    failures: list[tuple[str, str]],
    say: Callable[[str], None],
) -> JobResult:
    for name, line in failures:  # a subscriber (audit log, alerts, metrics) that failed
        say(f"{name}: {line}")
    return JobResult(tuple(changed), tuple(failed))


def by_solver(sites: list[Site], solvers: dict[str, SolverSpec]) -> dict[SolverSpec, list[Site]]:
    """``sites`` grouped by their solver (``solvers``: by lineage), in the order first seen:
    one order run per group."""
    groups: dict[SolverSpec, list[Site]] = {}
    for site in sites:
        groups.setdefault(solvers[site.cert_name], []).append(site)
    return groups


def _how(solver: SolverSpec) -> str:
    return f" (DNS-01 through {solver.provider})" if isinstance(solver, DnsSpec) else ""


def _use_site_solvers(store: Store, solvers: dict[str, SolverSpec]) -> None:
    """Point each lineage (name -> its site's solver) at the solver its site uses now: the
    proxy's listener (a webroot or standalone listener chosen earlier could not work while
    the proxy holds the ports), or the site's DNS-01 spec, as the configuration changed."""
    from dataclasses import replace

    from certsmith.base.sites import save_site

    for name, solver in solvers.items():
        spec = load_site(store, name)
        if spec.solver != solver:
            with store.lock(store_keys.lineage_lease(name)):
                save_site(store, replace(spec, solver=solver))
