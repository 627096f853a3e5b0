"""Obtaining and renewing the proxy's certificates: local CA for local names, ACME for the rest.

Runs in a short-lived process the supervisor forks (first at start, then on a timer), so the
workers never block on a CA and the supervisor never runs threads it would later fork. ACME goes
through :class:`~certsmith.services.manager.Manager` like ``certsmith get``/``renew``: the same
store, locks, renewal schedule (ARI, lifetime fraction, back-off) and events. Its challenges are
answered by the proxy's own listeners: the solver writes them into the store, where every worker
reads them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from certsmith.base import policy
from certsmith.base.model import SolverSpec, TlsAlpnSpec, WebrootSpec
from certsmith.base.sites import load_site
from certsmith.base.store import Store, open_store
from certsmith.base.store import keys as store_keys
from certsmith.errors import CertsmithError
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
    ``certsmith renew`` from a timer works through a running proxy too."""
    if config.acme.challenge == "tls-alpn-01":
        return TlsAlpnSpec(webroot=str(Path(home) / TLS_ALPN_DIR))
    return WebrootSpec(webroot=str(challenge_webroot(home)))


@dataclass(frozen=True)
class JobResult:
    changed: tuple[str, ...]  # lineages with a new version
    failed: tuple[str, ...]  # lineages still without a usable certificate or failing renewal


def ensure_local_sites(config: ProxyConfig, home: Path, say: Callable[[str], None],
                       force: bool = False, bus: Bus | None = None) -> list[str]:
    """Issue or re-issue the local-CA certificates that are due; the lineages changed. A
    failure raises (at start and on reload the proxy must not run without them)."""
    from certsmith.services.manager import Outcome

    changed = []
    outcomes = []
    for site in config.sites:
        if site.uses_acme:
            continue
        version = ensure_local(home, site.cert_name, site.cert_identifiers, force=force,
                               bus=bus)
        if version is not None:
            say(f"local CA certificate for {_names(site)} (version {version})")
            changed.append(site.cert_name)
            outcomes.append(Outcome(site.cert_name, "issued" if version == 1 else "renewed",
                                    f"version {version}"))
    if bus is not None and outcomes:
        bus.run_done("issuance", outcomes)
    return changed


def _local_job(config: ProxyConfig, home: Path, say: Callable[[str], None],
               bus: Bus) -> tuple[list[str], list[str]]:
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
                lineage.record_failure(open_store(home), bus, site.cert_name, str(exc),
                                       issuer="local CA")
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
    solver = solver_spec(config, home)
    server = resolve_server(config.acme.server)
    to_order = [s for s in acme_sites if _needs_order(store, s)]
    to_renew = [s.cert_name for s in acme_sites if s not in to_order]
    if to_order:
        say("ordering certificates for " + "; ".join(_names(s) for s in to_order)
            + f" from {server}")
        request = GetRequest(
            groups=tuple((s.cert_name, s.names) for s in to_order), server=server,
            solver=solver, account=AccountOptions(email=config.acme.email,
                                                  agree_tos=config.acme.agree_tos))
        try:
            outcomes = manager.get(request)
        except CertsmithError as exc:  # before any order (the CA is unreachable, say)
            say(f"cannot order certificates: {exc}")
            failed += [s.cert_name for s in to_order]
            outcomes = []
            services.bus.run_done("issuance", [Outcome(s.cert_name, "failed", str(exc))
                                               for s in to_order])
        for outcome in outcomes:
            if outcome.ok:
                say(f"{outcome.name}: {outcome.action} (serial {outcome.serial}, valid until "
                    f"{outcome.not_after:%Y-%m-%d %H:%M}Z)")
                changed.append(outcome.name)
            else:
                say(f"{outcome.name}: failed: {outcome.detail}")
                failed.append(outcome.name)
    if to_renew:
        _use_proxy_solver(store, to_renew, solver)
        try:
            outcomes = manager.renew(to_renew)
        except CertsmithError as exc:
            say(f"renewal check failed: {exc}")
            outcomes = []
            failed += to_renew
            services.bus.run_done("renewal", [Outcome(n, "failed", str(exc))
                                              for n in to_renew], scan_expiry=True)
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


def _done(changed: list[str], failed: list[str], failures: list[tuple[str, str]],
          say: Callable[[str], None]) -> JobResult:
    for name, line in failures:  # a subscriber (audit log, alerts, metrics) that failed
        say(f"{name}: {line}")
    return JobResult(tuple(changed), tuple(failed))


def _use_proxy_solver(store: Store, names: list[str], solver: SolverSpec) -> None:
    """Lineages the proxy serves are renewed through the proxy: a webroot or standalone
    listener chosen earlier could not work while the proxy holds the ports."""
    from dataclasses import replace

    from certsmith.base.sites import save_site

    for name in names:
        spec = load_site(store, name)
        if spec.solver != solver:
            with store.lock(store_keys.lineage_lease(name)):
                save_site(store, replace(spec, solver=solver))
