"""Solvers from a registry: which solver a :class:`~certsmith.base.solverspec.SolverSpec`
builds.

A solver kind is one module: its spec (a ``SolverSpec`` subclass registered with
``register_spec``) and its factory, registered here with :func:`register`. The built-in kinds
are listed in ``_BUILTIN`` by module, so nothing is imported until a solver is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from certsmith.base.solverspec import SolverSpec
from certsmith.core.solvers.base import Solver, SolverContext
from certsmith.errors import UsageError

Factory = Callable[[Any], Solver]
ContextFactory = Callable[[Any, SolverContext], Solver]

_FACTORIES: dict[str, Factory] = {}
_CONTEXT_FACTORIES: dict[str, ContextFactory] = {}
_BUILTIN = {
    "webroot": "certsmith.core.solvers.http01:from_webroot_spec",
    "server": "certsmith.core.solvers.http01:from_webroot_spec",
    "standalone": "certsmith.core.solvers.http01:from_standalone_spec",
    "tls-alpn": "certsmith.core.solvers.tlsalpn01:from_spec",
}
_BUILTIN_CONTEXT = {
    "dns-01": "certsmith.core.solvers.dns01:from_spec",
}


def register(spec_type: type[SolverSpec], factory: Factory) -> None:
    """Solvers of ``spec_type.kind`` are built by ``factory(spec)``."""
    _FACTORIES[spec_type.kind] = factory


def register_with_context(spec_type: type[SolverSpec], factory: ContextFactory) -> None:
    """Solvers of ``spec_type.kind`` are built by ``factory(spec, context)``: for solvers
    that record what they presented in the store, or report a wait."""
    _CONTEXT_FACTORIES[spec_type.kind] = factory


def _context_factory(kind: str) -> ContextFactory | None:
    if kind not in _CONTEXT_FACTORIES and kind in _BUILTIN_CONTEXT:
        module, name = _BUILTIN_CONTEXT[kind].split(":")
        _CONTEXT_FACTORIES[kind] = getattr(importlib.import_module(module), name)
    return _CONTEXT_FACTORIES.get(kind)


def factory_for(kind: str) -> Factory:
    if kind not in _FACTORIES and kind in _BUILTIN:
        module, name = _BUILTIN[kind].split(":")
        _FACTORIES[kind] = getattr(importlib.import_module(module), name)
    try:
        return _FACTORIES[kind]
    except KeyError:
        raise UsageError(f"no solver is registered for {kind!r}") from None


def build(spec: SolverSpec, context: SolverContext | None = None) -> Solver:
    with_context = _context_factory(spec.kind)
    if with_context is not None:
        return with_context(spec, context or SolverContext())
    return factory_for(spec.kind)(spec)
