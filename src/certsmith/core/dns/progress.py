"""What the propagation check says: the progress line while it waits, the line when it gives up.

Pure: each check is one server asked for one name, with the values wanted there and what the
server last answered (the set of values it has, or a phrase saying why it did not answer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from certsmith.core.dns.query import Failed, seconds
from certsmith.core.dns.target import Nameserver

SHOWN = 6  # at most this many servers named in one line; the rest are counted


@dataclass(frozen=True)
class Check:
    """One server asked for one name."""

    fqdn: str
    server: Nameserver


Answer = frozenset[str] | Failed  # the values the server has there, or why it did not answer


def _count(n: int) -> str:
    return "the value" if n == 1 else "both values" if n == 2 else f"all {n} values"


def _has(want: frozenset[str], answer: frozenset[str]) -> str:
    total = len(want)
    return f"{len(want & answer)} of {total} value{'' if total == 1 else 's'}"


def _capped(parts: Sequence[str]) -> list[str]:
    if len(parts) <= SHOWN:
        return list(parts)
    return [*parts[:SHOWN], f"and {len(parts) - SHOWN} more"]


def waiting(
    missing: Sequence[Check], want: Mapping[Check, frozenset[str]], answers: Mapping[Check, Answer]
) -> str:
    """``waiting for ns2.example.org (127.53.1.2): _acme-challenge.example.org has 1 of 2
    values``, one part per check still missing."""
    parts = []
    for check in missing:
        answer = answers[check]
        if isinstance(answer, Failed):
            parts.append(answer.about(f"{check.server}:", check.fqdn))
        else:
            parts.append(f"{check.server}: {check.fqdn} has {_has(want[check], answer)}")
    return "waiting for " + "; ".join(_capped(parts))


def gave_up(
    elapsed: float,
    missing: Sequence[Check],
    ready: Sequence[Check],
    want: Mapping[Check, frozenset[str]],
    answers: Mapping[Check, Answer],
) -> str:
    """``DNS-01: after 120 s, ns2.example.org (127.53.1.2) answers _acme-challenge.example.org
    with nothing, ns1.example.org (127.53.1.1) has both values; raise --dns-timeout or check
    the zone's secondaries``: each server still missing and what it answered, then the
    servers that do have the values at the same names."""
    parts = []
    for check in missing:
        answer = answers[check]
        if isinstance(answer, Failed):
            parts.append(answer.about(str(check.server), check.fqdn))
        elif not answer & want[check]:
            parts.append(
                f"{check.server} answers {check.fqdn} with nothing" + (" wanted" if answer else "")
            )
        else:
            parts.append(f"{check.server} answers {check.fqdn} with {_has(want[check], answer)}")
    parts = _capped(parts)
    names = {c.fqdn for c in missing}
    shown = [c for c in ready if c.fqdn in names]
    several = len(names) > 1
    for check in shown[:3]:
        at = f" at {check.fqdn}" if several else ""
        parts.append(f"{check.server} has {_count(len(want[check]))}{at}")
    if len(shown) > 3:
        parts.append(f"{len(shown) - 3} more servers have theirs")
    return (
        f"DNS-01: after {seconds(elapsed)} s, "
        + ", ".join(parts)
        + "; raise --dns-timeout or check the zone's secondaries"
    )
