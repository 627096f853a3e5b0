"""Site specs on disk: ``sites/<name>.toml``."""

from __future__ import annotations

import tomllib

import tomli_w

from certsmith.base.model import SiteSpec
from certsmith.base.store import keys as store_keys
from certsmith.base.store.base import Lease, Store
from certsmith.errors import DamagedError, NotFoundError, UsageError


def site_key(name: str) -> str:
    return store_keys.site(name)


def load_site(store: Store, name: str) -> SiteSpec:
    """The spec of lineage ``name``; a file that cannot be used raises ``DamagedError`` naming
    the file (never the name inside it, which may be the damaged part)."""
    data = store.get(site_key(name))
    if data is None:
        raise NotFoundError(f"no certificate named {name!r} (see 'certsmith list')")
    where = store.where(site_key(name))
    try:
        parsed = tomllib.loads(data.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DamagedError(f"damaged site file {where}: {exc}") from exc
    if not parsed:
        raise DamagedError(f"damaged site file {where}: empty")
    try:
        spec = SiteSpec.from_dict(parsed)
    except UsageError as exc:
        raise DamagedError(f"damaged site file {where}: {_reason(exc)}") from exc
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        raise DamagedError(f"damaged site file {where}: {type(exc).__name__}: {exc}") from exc
    if spec.name != name:
        raise DamagedError(f"damaged site file {where}: it names the certificate {spec.name!r}")
    return spec


def _reason(exc: UsageError) -> str:
    """``SiteSpec.from_dict`` says "invalid site file for NAME: 'key'": keep what is wrong."""
    text = str(exc)
    if text.startswith("invalid site file for ") and ": " in text:
        missing = text.split(": ", 1)[1]
        return f"missing or invalid {missing}" if missing.startswith("'") else missing
    return text


def save_site(store: Store, spec: SiteSpec, *, fence: Lease | None = None) -> None:
    store.put(site_key(spec.name), tomli_w.dumps(spec.to_dict()).encode(), fence=fence)


def site_names(store: Store) -> list[str]:
    return [
        key.rsplit("/", 1)[1][: -len(".toml")]
        for key in store.list(store_keys.SITES)
        if key.endswith(".toml")
    ]


def lineage_names(store: Store) -> list[str]:
    """Every lineage with a site file or a certificate state: what ``renew`` manages, plus the
    proxy's local-CA lineages (state, no site file: the proxy re-issues them itself)."""
    sites = site_names(store)
    known = set(sites)
    states = [
        name
        for key in store.list(store_keys.STATE)
        if key.endswith(".json")
        and (name := key.rsplit("/", 1)[1][: -len(".json")]) not in known
        and store.live_version(name) is not None
    ]  # (not other files under state/)
    return sorted({*sites, *states})
