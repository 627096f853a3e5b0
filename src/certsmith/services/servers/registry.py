"""Web-server installers from a registry: which :class:`~certsmith.services.servers.base.
Installer` serves a server kind.

A web server is one module with an ``installer(env)`` factory, listed in ``_BUILTIN`` (imported
on first use) or added with :func:`register`; nothing else names the kinds.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from certsmith.errors import UsageError
from certsmith.services.servers.base import Installer

Factory = Callable[[dict[str, str] | None], Installer]

_BUILTIN = {
    "nginx": "certsmith.services.servers.nginx:installer",
    "apache": "certsmith.services.servers.apache:installer",
    "lighttpd": "certsmith.services.servers.lighttpd:installer",
}
_FACTORIES: dict[str, Factory] = {}


def register(kind: str, factory: Factory) -> None:
    _FACTORIES[kind] = factory


def kinds() -> tuple[str, ...]:
    return tuple(dict.fromkeys([*_BUILTIN, *_FACTORIES]))


def installer_for(kind: str, env: dict[str, str] | None = None) -> Installer:
    if kind not in _FACTORIES and kind in _BUILTIN:
        module, name = _BUILTIN[kind].split(":")
        _FACTORIES[kind] = getattr(importlib.import_module(module), name)
    factory = _FACTORIES.get(kind)
    if factory is None:
        raise UsageError(f"unknown server {kind!r}; choose one of {', '.join(kinds())}")
    return factory(env)
