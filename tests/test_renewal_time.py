"""Renewal arithmetic (pure): ARI windows, the lifetime fallback, jitter and backoff."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from certsmith.core import renewal

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_ninety_day_cert_renews_with_a_third_left() -> None:
    nb, na = T0, T0 + dt.timedelta(days=90)
    at = renewal.lifetime_renewal_time(nb, na, "serial-1")
    left = na - at
    assert dt.timedelta(days=30) <= left <= dt.timedelta(days=30) + dt.timedelta(days=4.5)
    assert not renewal.decide(
        T0 + dt.timedelta(days=50), not_before=nb, not_after=na, seed="serial-1", ari=None
    ).due
    assert renewal.decide(
        T0 + dt.timedelta(days=61), not_before=nb, not_after=na, seed="serial-1", ari=None
    ).due


def test_short_lived_cert_renews_at_half() -> None:
    nb, na = T0, T0 + dt.timedelta(days=6)
    at = renewal.lifetime_renewal_time(nb, na, "x")
    assert dt.timedelta(days=3) <= na - at <= dt.timedelta(days=3.3)


def test_ari_window_wins_and_is_stable() -> None:
    nb, na = T0, T0 + dt.timedelta(days=90)
    window = renewal.AriWindow(T0 + dt.timedelta(days=10), T0 + dt.timedelta(days=11))
    d1 = renewal.decide(T0, not_before=nb, not_after=na, seed="s", ari=window)
    d2 = renewal.decide(T0, not_before=nb, not_after=na, seed="s", ari=window)
    assert d1 == d2 and not d1.due and window.start <= d1.at <= window.end
    assert renewal.decide(
        T0 + dt.timedelta(days=11), not_before=nb, not_after=na, seed="s", ari=window
    ).due


def test_window_in_the_past_is_due_now() -> None:
    window = renewal.AriWindow(T0 - dt.timedelta(days=2), T0 - dt.timedelta(days=1))
    assert renewal.decide(
        T0,
        not_before=T0 - dt.timedelta(days=5),
        not_after=T0 + dt.timedelta(days=80),
        seed="s",
        ari=window,
    ).due


def test_backoff_grows_and_honours_retry_after() -> None:
    na = T0 + dt.timedelta(days=60)
    waits = [renewal.backoff_until(n, T0, na) - T0 for n in range(1, 10)]
    assert waits == sorted(waits)
    assert waits[0] == dt.timedelta(minutes=5) and waits[-1] == renewal.BACKOFF_CAP
    later = T0 + dt.timedelta(hours=20)
    assert renewal.backoff_until(1, T0, na, retry_after=later) == later
    d = renewal.decide(
        T0 + dt.timedelta(minutes=1),
        not_before=T0 - dt.timedelta(days=89),
        not_after=T0 + dt.timedelta(days=1),
        seed="s",
        ari=None,
        failures=1,
        last_failure=T0,
    )
    assert not d.due and "backing off" in d.reason
    d = renewal.decide(
        T0 + dt.timedelta(minutes=6),
        not_before=T0 - dt.timedelta(days=89),
        not_after=T0 + dt.timedelta(days=1),
        seed="s",
        ari=None,
        failures=1,
        last_failure=T0,
    )
    assert d.due


@given(st.integers(min_value=1, max_value=400 * 86400), st.text(max_size=20))
def test_fallback_always_inside_lifetime(seconds: int, seed: str) -> None:
    na = T0 + dt.timedelta(seconds=seconds)
    at = renewal.lifetime_renewal_time(T0, na, seed)
    assert T0 <= at < na
    assert na - at >= (na - T0) / 3 - dt.timedelta(microseconds=1)


@given(st.integers(min_value=1, max_value=40), st.integers(min_value=60, max_value=10**8))
def test_backoff_never_passes_expiry(failures: int, left: int) -> None:
    na = T0 + dt.timedelta(seconds=left)
    assert renewal.backoff_until(failures, T0, na) < na or left < 60 * 8
