"""Build the :class:`DnsProvider` a :class:`DnsSpec` names."""

from __future__ import annotations

from collections.abc import Callable

from certsmith.base.solverspec import DnsSpec
from certsmith.core.dns.provider import DnsProvider
from certsmith.errors import UsageError


def from_spec(
    spec: DnsSpec, *, server: str | None = None, primary_for: Callable[[str], str] | None = None
) -> DnsProvider:
    """``rfc2136`` / ``lexicon:NAME`` / ``hook``. For rfc2136, ``server`` (HOST[:PORT])
    overrides ``spec.server``; with neither, each zone's server is ``primary_for(zone)``."""
    kind, _, name = spec.provider.partition(":")
    if kind == "rfc2136":
        from certsmith.core.dns.rfc2136 import Rfc2136Provider

        return Rfc2136Provider(
            spec.tsig_key_file, server=server or spec.server or None, primary_for=primary_for
        )
    if kind == "lexicon":
        from certsmith.core.dns.lexicon import LexiconProvider

        return LexiconProvider(name, credentials=spec.credentials)
    if kind == "hook":
        from certsmith.core.dns.hook import HookProvider

        return HookProvider(spec.hook)
    raise UsageError(
        f"unknown DNS provider {spec.provider!r} (known: rfc2136, lexicon:PROVIDER, hook)"
    )
