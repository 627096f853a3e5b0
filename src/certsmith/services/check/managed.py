"""``certsmith check --all``: where each managed certificate should be served, and which one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from certsmith.base.keys import cert_info
from certsmith.base.sites import load_site, site_names
from certsmith.base.store import open_store
from certsmith.services.check.target import Target, parse_target
from certsmith.services.check.verdict import Report
from certsmith.services.lifecycle import Bus


@dataclass(frozen=True)
class ManagedTarget:
    name: str
    target: Target
    live_serial: str | None
    live_version: int | None


def managed_targets(
    home: Path, *, connect: str | None = None, http_port: int | bool | None = True
) -> list[ManagedTarget]:
    """One target per managed site: ``check_url`` from its site file if set, else
    ``https://<first name>/``; ``connect`` dials another address for every site."""
    store = open_store(home)
    out = []
    for name in site_names(store):
        spec = load_site(store, name)
        url = spec.extra.get("check_url") or f"https://{spec.identifiers[0].value}/"
        if ":" in spec.identifiers[0].value and "check_url" not in spec.extra:
            url = f"https://[{spec.identifiers[0].value}]/"
        target = parse_target(str(url), connect=connect, http_port=http_port)
        serial = None
        version = store.live_version(name)
        if version is not None:
            try:
                serial = cert_info((store.live_path(name) / "cert.pem").read_bytes()).serial
            except (OSError, ValueError):
                serial = None
        out.append(ManagedTarget(name, target, serial, version))
    return out


def check_managed(
    home: Path,
    bus: Bus,
    *,
    roots: Sequence[x509.Certificate],
    warn_days: float,
    crit_days: float,
    timeout: float,
    connect: str | None = None,
    http_port: int | bool | None = True,
) -> tuple[list[ManagedTarget], list[Report]]:
    """Check every managed certificate where it is served; each problem is a lifecycle event
    (``served-differs`` when the server shows another certificate than the live one: a missed
    reload; else ``check-problem``), which the alerts subscriber sends."""
    from certsmith.services.check import check

    managed = managed_targets(home, connect=connect, http_port=http_port)
    if not managed:
        return [], []
    reports = check(
        [m.target for m in managed],
        roots=roots,
        warn_days=warn_days,
        crit_days=crit_days,
        expected=[m.live_serial for m in managed],
        timeout=timeout,
    )
    for m, r in zip(managed, reports, strict=True):
        if r.status:
            served = r.facts.get("serial")
            differs = bool(m.live_serial and served and served != m.live_serial.lower())
            bus.emit(
                "served-differs" if differs else "check-problem",
                m.name,
                target=r.target,
                status=r.status.name,
                reason=r.reason,
                served_serial=served,
                live_serial=m.live_serial,
            )
    return managed, reports
