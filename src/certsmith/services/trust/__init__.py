"""``certsmith trust``: put the local CA's root into (or take it out of) every trust store.

Each store kind is one module (system, nss, java). A store that is missing or read-only is
reported and skipped; a failing store never stops the others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from certsmith.errors import UsageError
from certsmith.services.trust.base import SKIPPED, Report, Root, TrustStore

KINDS = ("system", "nss", "java")


@dataclass(frozen=True)
class TrustResult:
    reports: tuple[Report, ...]
    root: Root
    ca_created: bool = False

    @property
    def failed(self) -> bool:
        return any(r.state == "failed" for r in self.reports)

    def hints(self) -> list[str]:
        return env_hints(self.root, self.reports)


def make_stores(kinds: Sequence[str] | None = None) -> list[TrustStore]:
    from certsmith.services.trust.java import JavaStore
    from certsmith.services.trust.nss import NssStore
    from certsmith.services.trust.system import SystemStore

    chosen = list(kinds) if kinds else list(KINDS)
    unknown = [k for k in chosen if k not in KINDS]
    if unknown:
        raise UsageError(f"unknown trust store {unknown[0]!r}; choose from {', '.join(KINDS)}")
    factories = {"system": SystemStore, "nss": NssStore, "java": JavaStore}
    return [factories[k]() for k in KINDS if k in chosen]


def load_root(home: Path, *, create: bool) -> tuple[Root, bool] | None:
    from certsmith.base import der
    from certsmith.core.issuers.localca import LocalCA

    ca = LocalCA(home)
    created = False
    if not ca.exists():
        if not create:
            return None
        ca.ensure()
        created = True
    root_der = ca.root_der()
    return Root(
        der.pem("CERTIFICATE", root_der),
        root_der,
        ca.path / "root.pem",
        hashlib.sha256(root_der).hexdigest(),
    ), created


def _run(home: Path, action: str, kinds: Sequence[str] | None) -> TrustResult | None:
    stores = make_stores(kinds)
    loaded = load_root(home, create=action == "install")
    if loaded is None:
        return None
    root, created = loaded
    reports: list[Report] = []
    for store in stores:
        try:
            reports += getattr(store, action)(root)
        except OSError as exc:  # a store's files vanished under us: report, go on
            reports.append(Report(store.kind, "-", "failed", str(exc)))
    return TrustResult(tuple(reports), root, created)


def install(home: Path, kinds: Sequence[str] | None = None) -> TrustResult:
    result = _run(home, "install", kinds)
    assert result is not None
    return result


def uninstall(home: Path, kinds: Sequence[str] | None = None) -> TrustResult | None:
    """None when there is no local CA (so nothing can be trusted)."""
    return _run(home, "uninstall", kinds)


def status(home: Path, kinds: Sequence[str] | None = None) -> TrustResult | None:
    return _run(home, "status", kinds)


def env_hints(root: Root, reports: Sequence[Report]) -> list[str]:
    """One environment variable per runtime that ignores the stores above."""
    from certsmith.services.trust.system import detect

    hints = [f"NODE_EXTRA_CA_CERTS={root.path}    # Node.js uses its own CA list"]
    flavour = detect()
    system_ok = any(
        r.store.startswith("system") and r.state in ("trusted", "installed") for r in reports
    )
    if flavour is not None and system_ok:
        hints.append(f"REQUESTS_CA_BUNDLE={flavour.bundle}    # Python requests/certifi")
    else:
        hints.append(f"REQUESTS_CA_BUNDLE={root.path}    # Python requests/certifi (this CA only)")
    return hints


__all__ = ["KINDS", "SKIPPED", "Report", "Root", "TrustResult", "install", "status", "uninstall"]
