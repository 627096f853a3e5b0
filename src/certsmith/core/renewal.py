"""When to renew and when to retry: pure arithmetic on times, no I/O and no clock.

Renewal is driven by the certificate's own lifetime, never a fixed "30 days":
- inside the CA's ARI window when the CA gives one (RFC 9773: a uniformly random moment of the
  window, chosen once per window so repeated scans agree);
- otherwise when 1/3 of the lifetime remains (1/2 for lifetimes under 10 days), moved earlier by
  a jitter of up to 5% of the lifetime derived from the serial (stable across runs, spread across
  certificates).
A failed attempt backs off exponentially (5 min doubling, capped at 6 h, and never past a point
that would let the certificate expire untried), or until the CA's Retry-After if later.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

BACKOFF_BASE = dt.timedelta(minutes=5)
BACKOFF_CAP = dt.timedelta(hours=6)
SHORT_LIFETIME = dt.timedelta(days=10)
JITTER_FRACTION = 0.05


@dataclass(frozen=True)
class AriWindow:
    start: dt.datetime
    end: dt.datetime

    def pick(self, seed: str) -> dt.datetime:
        """A point in the window, uniformly spread by ``seed`` but fixed for a given seed."""
        span = (self.end - self.start).total_seconds()
        if span <= 0:
            return self.start
        return self.start + dt.timedelta(seconds=span * _unit(f"{seed}|{self.start}|{self.end}"))


def _unit(seed: str) -> float:
    digest = hashlib.sha256(seed.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def lifetime_renewal_time(
    not_before: dt.datetime, not_after: dt.datetime, seed: str
) -> dt.datetime:
    """The fallback renewal moment when the CA gives no ARI window."""
    lifetime = not_after - not_before
    fraction = 0.5 if lifetime < SHORT_LIFETIME else 1 / 3
    jitter = lifetime * (JITTER_FRACTION * _unit(seed))
    return not_after - lifetime * fraction - jitter


def renewal_time(
    not_before: dt.datetime, not_after: dt.datetime, seed: str, ari: AriWindow | None
) -> dt.datetime:
    if ari is not None:
        picked: dt.datetime = min(ari.pick(seed), not_after)
        return picked
    return lifetime_renewal_time(not_before, not_after, seed)


def backoff_until(
    failures: int,
    last_failure: dt.datetime,
    not_after: dt.datetime | None,
    retry_after: dt.datetime | None = None,
) -> dt.datetime:
    """When the next attempt may run after ``failures`` consecutive failures."""
    if failures <= 0:
        return last_failure
    delay = min(BACKOFF_BASE * (1 << min(failures - 1, 20)), BACKOFF_CAP)
    when = last_failure + delay
    if not_after is not None:
        # Close to expiry, keep trying at least every 1/8 of what is left.
        remaining = not_after - last_failure
        if remaining > dt.timedelta(0):
            when = min(when, last_failure + max(remaining / 8, dt.timedelta(minutes=1)))
    if retry_after is not None and retry_after > when:
        when = retry_after
    return when


@dataclass(frozen=True)
class Decision:
    due: bool
    at: dt.datetime
    reason: str


def decide(
    now: dt.datetime,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
    seed: str,
    ari: AriWindow | None,
    failures: int = 0,
    last_failure: dt.datetime | None = None,
    retry_after: dt.datetime | None = None,
    force: bool = False,
) -> Decision:
    """Is a renewal attempt due at ``now``? Returns the planned moment and a reason."""
    if force:
        return Decision(True, now, "forced")
    planned = renewal_time(not_before, not_after, seed, ari)
    source = "ARI window" if ari is not None else "lifetime"
    if failures and last_failure is not None:
        retry = backoff_until(failures, last_failure, not_after, retry_after)
        if retry > now:
            return Decision(False, max(planned, retry), f"backing off after {failures} failure(s)")
        if planned <= now or failures:
            return Decision(True, now, f"retry after {failures} failure(s)")
    if now >= planned:
        return Decision(True, planned, f"due ({source})")
    return Decision(False, planned, f"not due ({source})")
