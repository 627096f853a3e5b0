"""``certsmith dns check``: a DNS-01 preflight that spends no CA rate limit.

For each name: where its TXT record goes (CNAME or ``--dns-alias`` followed), the zone, every
authoritative server and the one taking updates; then write access is proven the way an order
would use it: a test value is presented through the provider, awaited on every authoritative
server, and removed (through the DNS-01 solver itself, so nothing differs from a real order).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from certsmith.base.solverspec import DnsSpec
from certsmith.base.store.base import Store
from certsmith.core.dns.propagation import Target
from certsmith.core.solvers.base import Challenge, SolverContext
from certsmith.core.solvers.dns01 import Dns01Solver


@dataclass(frozen=True)
class CheckReport:
    targets: tuple[Target, ...]
    update_servers: tuple[str, ...]  # per target: where an RFC 2136 update goes, or ""
    seconds: float  # from presenting until every server had every value
    provider: str


def _domains(names: Sequence[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        domain = name.lower().rstrip(".").removeprefix("*.")
        if domain not in out:
            out.append(domain)
    return out


def check(
    store: Store | None,
    spec: DnsSpec,
    names: Sequence[str],
    *,
    progress: Callable[[str], None] = lambda _line: None,
) -> CheckReport:
    solver = Dns01Solver(spec, SolverContext(store, progress))
    solver.prepare()
    try:
        domains = _domains(names)
        targets = tuple(solver.target(d) for d in domains)
        servers = tuple(solver.update_server(t) for t in targets)
        challenges = [
            Challenge(
                d, secrets.token_urlsafe(16), f"certsmith-dns-check.{secrets.token_urlsafe(16)}"
            )
            for d in domains
        ]
        started = time.monotonic()
        presented: Sequence[Challenge] = challenges
        remaining = challenges
        try:
            while remaining:
                presented = remaining
                presented = solver.present_all(remaining) or remaining
                solver.wait_ready(presented, time.monotonic() + spec.timeout)
                solver.cleanup_all(presented)
                done = set(presented)
                presented = ()
                remaining = [c for c in remaining if c not in done]
        finally:
            if presented:
                solver.cleanup_all(presented)
        return CheckReport(targets, servers, time.monotonic() - started, solver.provider.label)
    finally:
        solver.close()
