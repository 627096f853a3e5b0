"""Check one lineage's state before trusting it: the state file, the live set, the archive.

``renew`` decides from ``state/<name>.json``; if that file is damaged, or the live set it
describes is (a dangling ``live/`` link, a deleted key, a truncated chain), the decision would
be wrong in silence: re-order at once, or never notice that nothing servable is left. Here the
live set is verified (files parse, key matches the certificate), repaired from the newest intact
version in the archive, and the state recomputed from the certificate actually live. What was
damaged comes back as one line naming the file; what cannot be repaired makes the lineage due.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from certsmith.base import events, keys
from certsmith.base.certstate import CertState, load_state_checked, save_state, state_key
from certsmith.base.liveset import Damaged, examine
from certsmith.base.store import Store
from certsmith.base.store import keys as store_keys


@dataclass(frozen=True)
class Checked:
    state: CertState
    damage: str | None = None  # one line for the operator (already repaired, or not)
    due: str | None = None  # why the lineage must be renewed now, if it must


@dataclass(frozen=True)
class _Seen:
    state: CertState
    state_problem: str | None
    cert: x509.Certificate | None
    live_problem: str | None  # the live set exists (or should) and cannot be served
    newer: tuple[int, ...]  # archive versions newer than the live one


def _live_dir(store: Store, name: str) -> Path:
    return Path(os.path.realpath(store.live_path(name)))


def _look(store: Store, name: str) -> _Seen:
    state, state_problem = load_state_checked(store, name)
    live = store.live_path(name)
    versions = tuple(store.versions(name))
    if not os.path.lexists(live):
        problem = f"live/{name} is missing" if versions or state.serial else None
        return _Seen(state, state_problem, None, problem, ())
    current = store.live_version(name)
    newer = tuple(v for v in versions if current is not None and v > current)
    where = _live_dir(store, name)
    if not live.is_symlink():
        return _Seen(
            state,
            state_problem,
            None,
            f"live/{name} is not a link to a version in the archive",
            newer,
        )
    if not where.is_dir():
        return _Seen(
            state,
            state_problem,
            None,
            f"live/{name} points to a missing version ({os.readlink(live)})",
            newer,
        )
    try:
        cert = examine(where)
    except Damaged as exc:
        return _Seen(state, state_problem, None, f"{exc} (in {where})", newer)
    return _Seen(state, state_problem, cert, None, newer)


def _serial(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def _clean(seen: _Seen) -> bool:
    if seen.state_problem or seen.live_problem or seen.newer:
        return False
    return seen.cert is None or seen.state.serial == _serial(seen.cert)


def check(store: Store, name: str) -> Checked:
    """Verify lineage ``name`` (repairing under its lock what can be repaired)."""
    seen = _look(store, name)
    if _clean(seen):
        return Checked(seen.state)
    with store.lock(store_keys.lineage_lease(name)):
        return _repair(store, name, _look(store, name))


def _repair(store: Store, name: str, seen: _Seen) -> Checked:
    notes: list[str] = []
    due: str | None = None
    cert = seen.cert
    if seen.live_problem:
        found = _newest_intact(store, name)
        if found is None:
            notes.append(
                f"damaged live set: {seen.live_problem}; no intact version in the archive: renewing"
            )
            due = "no intact certificate"
        else:
            version, cert = found
            store.relink(name, version)
            events.record(store.home, "repaired", name, version=version, error=seen.live_problem)
            lost = [v for v in store.versions(name) if v > version]
            note = f"damaged live set: {seen.live_problem}; live/{name} -> version {version}"
            if lost:
                note += f" (version {lost[-1]} is damaged): renewing"
                due = f"version {lost[-1]} is damaged"
            notes.append(note)
    elif seen.newer:
        for version in seen.newer:
            try:
                examine(Path(store.home, "archive", name, str(version)))
            except Damaged as exc:
                notes.append(
                    f"damaged version {store.home}/archive/{name}/{version}: {exc}; renewing"
                )
                due = f"version {version} is damaged"
    state = seen.state
    if seen.state_problem:
        where = store.where(state_key(name))
        if cert is None:
            notes.append(
                f"damaged state file {where}: {seen.state_problem}; no certificate "
                "to recompute it from"
            )
            due = due or "state unknown"
        else:
            notes.append(
                f"damaged state file {where}: {seen.state_problem}; recomputed from "
                f"live/{name}/cert.pem"
            )
    if cert is not None and (seen.state_problem or state.serial != _serial(cert)):
        state = _from_cert(state, cert)
        save_state(store, name, state)
        events.record(store.home, "state-recomputed", name, serial=state.serial)
    return Checked(state, "; ".join(notes) or None, due)


def _newest_intact(store: Store, name: str) -> tuple[int, x509.Certificate] | None:
    for version in sorted(store.versions(name), reverse=True):
        try:
            return version, examine(Path(store.home, "archive", name, str(version)))
        except Damaged:
            continue
    return None


def _from_cert(state: CertState, cert: x509.Certificate) -> CertState:
    """What the state says about the live certificate, taken from the certificate; the ARI
    window is asked again, failures and history are kept."""
    from cryptography.hazmat.primitives import serialization

    info = keys.cert_info(cert.public_bytes(serialization.Encoding.PEM))
    return state.update(
        serial=info.serial,
        not_before=info.not_before,
        not_after=info.not_after,
        issuer=info.issuer,
        ari_id=info.ari_id,
        ari_start=None,
        ari_end=None,
        ari_next_check=None,
    )
