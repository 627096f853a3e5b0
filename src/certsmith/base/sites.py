"""Site specs on disk: ``sites/<name>.toml``."""

from __future__ import annotations

import tomllib

import tomli_w

from certsmith.base.model import SiteSpec
from certsmith.base.store.base import Store
from certsmith.errors import NotFoundError, UsageError


def site_key(name: str) -> str:
    return f"sites/{name}.toml"


def load_site(store: Store, name: str) -> SiteSpec:
    data = store.get(site_key(name))
    if data is None:
        raise NotFoundError(f"no certificate named {name!r} (see 'certsmith list')")
    try:
        parsed = tomllib.loads(data.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"broken site file sites/{name}.toml: {exc}") from exc
    return SiteSpec.from_dict(parsed)


def save_site(store: Store, spec: SiteSpec) -> None:
    store.put(site_key(spec.name), tomli_w.dumps(spec.to_dict()).encode())


def site_names(store: Store) -> list[str]:
    return [key.rsplit("/", 1)[1][: -len(".toml")] for key in store.list("sites")
            if key.endswith(".toml")]
