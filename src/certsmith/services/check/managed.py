"""``certsmith check --all``: where each managed certificate should be served, and which one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from certsmith.base.keys import cert_info
from certsmith.base.sites import load_site, site_names
from certsmith.base.store import open_store
from certsmith.services.check.target import Target, parse_target


@dataclass(frozen=True)
class ManagedTarget:
    name: str
    target: Target
    live_serial: str | None
    live_version: int | None


def managed_targets(home: Path, *, connect: str | None = None,
                    http_port: int | bool | None = True) -> list[ManagedTarget]:
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
