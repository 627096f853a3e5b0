"""The one lineage writer: a new certificate version, whoever issued it (an ACME CA, the local
CA).

In this order, each step durable before the next (a crash between two leaves the previous
version live, or the new one live with state that ``integrity`` recomputes from it):
publish the version whole (files and ``meta.json``) and switch ``live/``; save the site spec
when there is one; save the certificate state (what metrics, alerts and the renewal schedule
read); emit ``issued``/``renewed`` on the lifecycle bus.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from certsmith.base.certstate import CertState, save_state
from certsmith.base.crashpoints import crash_point
from certsmith.base.identifiers import Identifier
from certsmith.base.keys import CertInfo, cert_info
from certsmith.base.model import Bundle, SiteSpec
from certsmith.base.sites import save_site
from certsmith.base.store import Lease, Store
from certsmith.base.store import keys as store_keys
from certsmith.core.issuers.base import Issued, Issuer
from certsmith.core.solvers.base import Solver
from certsmith.errors import CAError
from certsmith.services.lifecycle import Bus

PRIVATE = frozenset({"privkey.pem"})


@dataclass(frozen=True)
class Request:
    """A key and the CSR for it: what every issuer is given."""

    key_pem: bytes
    csr_pem: bytes


def request_for(
    identifiers: Sequence[Identifier], key_type: str, key_pem: bytes | None = None
) -> Request:
    """A CSR for ``identifiers`` with a new key of ``key_type``, or ``key_pem`` (reused)."""
    from certsmith.base import keys

    key = keys.load_key(key_pem) if key_pem is not None else keys.generate_key(key_type)
    return Request(
        key_pem if key_pem is not None else keys.key_to_pem(key), keys.make_csr(key, identifiers)
    )


def obtain(
    issuer: Issuer,
    identifiers: Sequence[Identifier],
    request: Request,
    solver: Solver | None,
    **options: Any,
) -> tuple[Issued, Bundle]:
    """Have ``issuer`` sign ``request`` (ACME proves control through ``solver``; the local CA
    needs none) and check that what came back is for our key."""
    from certsmith.base import keys

    issued = issuer.issue(
        identifiers,
        request.csr_pem,
        solver,  # type: ignore[arg-type]
        **options,
    )
    if not keys.key_matches_cert(request.key_pem, issued.cert_pem):
        raise CAError("the CA returned a certificate for a different key")
    return issued, Bundle(issued.cert_pem, issued.chain_pem, request.key_pem)


@dataclass(frozen=True)
class NewVersion:
    name: str
    bundle: Bundle
    action: str  # issued | renewed
    meta: dict[str, Any] = field(default_factory=dict)  # added to (or overriding) meta.json's
    event: dict[str, Any] = field(default_factory=dict)  # added to the lifecycle event
    ari_supported: bool = False


@dataclass(frozen=True)
class Written:
    version: int
    info: CertInfo


def write(
    store: Store,
    bus: Bus,
    new: NewVersion,
    *,
    site: SiteSpec | None = None,
    fence: Lease | None = None,
) -> Written:
    """Publish ``new`` as the next version of its lineage; the caller holds its lease."""
    now = dt.datetime.now(dt.UTC)
    info = cert_info(new.bundle.cert_pem)
    meta: dict[str, Any] = {
        "serial": info.serial,
        "not_before": info.not_before.isoformat(),
        "not_after": info.not_after.isoformat(),
        "issuer": info.issuer,
        "names": list(info.names),
        "issued_at": now.isoformat(timespec="seconds"),
    }
    meta.update(new.meta)
    files = {**new.bundle.files(), "meta.json": json.dumps(meta, indent=1).encode()}
    version = store.publish(new.name, files, private=PRIVATE, fence=fence)
    crash_point("order:published")
    if site is not None:
        save_site(store, site, fence=fence)
        crash_point("order:site-saved")
    save_state(
        store,
        new.name,
        CertState(
            serial=info.serial,
            not_before=info.not_before,
            not_after=info.not_after,
            issuer=str(meta["issuer"]),
            ari_id=info.ari_id,
            ari_supported=new.ari_supported,
            ari_next_check=None,
            failures=0,
            last_attempt=now,
            last_success=now,
            last_result=new.action,
        ),
        fence=fence,
    )
    crash_point("order:state-saved")
    bus.emit(
        new.action,
        new.name,
        serial=info.serial,
        version=version,
        not_after=info.not_after.isoformat(),
        **new.event,
    )
    return Written(version, info)


def record_failure(store: Store, bus: Bus, name: str, error: str, **fields: Any) -> None:
    """A failed attempt at a lineage that has a certificate: counted in its state (metrics,
    back-off, ``list``) and emitted as ``failed``. The caller holds no lease on ``name``."""
    from certsmith.base.certstate import load_state

    now = dt.datetime.now(dt.UTC)
    with store.lock(store_keys.lineage_lease(name)):
        state = load_state(store, name)
        failures = state.failures + 1
        if state.serial is not None:
            save_state(
                store,
                name,
                state.update(
                    failures=failures,
                    last_attempt=now,
                    last_failure=now,
                    last_error=error,
                    last_result="failed",
                ),
            )
    bus.emit("failed", name, error=error, failures=failures, **fields)
