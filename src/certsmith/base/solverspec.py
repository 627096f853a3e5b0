"""Solver specs: how a lineage proves control of its names, as recorded in its site file.

A tagged union that stays open: each kind is a frozen dataclass subclass of :class:`SolverSpec`
with a ``kind`` tag, registered with :func:`register_spec` so that a site file naming it can be
read back. The solver that a spec builds is registered beside it in
:mod:`certsmith.core.solvers.registry`; adding a solver is one module that registers both (and
its CLI flag), nothing else.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

from certsmith.errors import UsageError

_SPECS: dict[str, type[SolverSpec]] = {}
S = TypeVar("S", bound="type[SolverSpec]")


@dataclass(frozen=True)
class SolverSpec:
    """The base of every solver spec; ``kind`` tags it in the site file."""

    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """``kind`` first, then the fields that differ from their defaults."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.init and (f.name in self.always or value != f.default):
                out[f.name] = value
        return out

    # fields written even when they hold their default
    always: ClassVar[frozenset[str]] = frozenset()

    def describe(self) -> str:
        """A few words for a person (``certsmith list``): the kind, then what tells two
        specs of that kind apart."""
        return self.kind

    def exclusive(self) -> str | None:
        """A lease that no two certsmith processes may hold while using this solver (our own
        listener on a port), or None."""
        return None

    @classmethod
    def parse(cls, data: dict[str, Any]) -> SolverSpec:
        names = {f.name for f in fields(cls) if f.init}
        return cls(**{k: v for k, v in data.items() if k in names})

    @staticmethod
    def from_dict(data: dict[str, Any]) -> SolverSpec:
        """The spec a site file records (its ``kind`` picks the class)."""
        kind = data.get("kind")
        spec = _SPECS.get(kind) if isinstance(kind, str) else None
        if spec is None:
            raise UsageError(f"unknown solver {kind!r} (known: {', '.join(sorted(_SPECS))})")
        return spec.parse(data)


def register_spec(cls: S) -> S:
    """Class decorator: make ``cls.kind`` readable from site files."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} has no kind")
    _SPECS[cls.kind] = cls
    return cls


def spec_kinds() -> tuple[str, ...]:
    return tuple(sorted(_SPECS))


def _port(value: int) -> None:
    if not 0 < value < 65536:
        raise UsageError(f"invalid port {value}")


def _dir(value: str | None) -> None:
    if not value:
        raise UsageError("--webroot needs a directory")


@register_spec
@dataclass(frozen=True)
class WebrootSpec(SolverSpec):
    """HTTP-01 answers written under a running web server's document root."""

    kind: ClassVar[str] = "webroot"
    webroot: str = ""
    always: ClassVar[frozenset[str]] = frozenset({"webroot"})

    def __post_init__(self) -> None:
        _dir(self.webroot)

    def describe(self) -> str:
        return f"webroot {self.webroot}"


@register_spec
@dataclass(frozen=True)
class StandaloneSpec(SolverSpec):
    """HTTP-01 answered by certsmith's own listener."""

    kind: ClassVar[str] = "standalone"
    http_port: int = 80
    address: str = ""
    always: ClassVar[frozenset[str]] = frozenset({"http_port"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "http_port", int(self.http_port))
        _port(self.http_port)

    @classmethod
    def parse(cls, data: dict[str, Any]) -> SolverSpec:
        return cls(http_port=int(data.get("http_port", 80)), address=data.get("address", ""))

    def describe(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"standalone {host}:{self.http_port}"

    def exclusive(self) -> str | None:
        from certsmith.base.store.keys import standalone_lease

        return standalone_lease(self.http_port)


@register_spec
@dataclass(frozen=True)
class ServerSpec(SolverSpec):
    """HTTP-01 through a running nginx, Apache or lighttpd (``server`` names it) whose
    certsmith include maps the challenge path to ``webroot``, certsmith's challenge
    directory."""

    kind: ClassVar[str] = "server"
    server: str = ""
    webroot: str = ""
    always: ClassVar[frozenset[str]] = frozenset({"server", "webroot"})

    def __post_init__(self) -> None:
        _dir(self.webroot)
        if self.server not in ("nginx", "apache", "lighttpd"):
            raise UsageError(f"unknown web server {self.server!r}")

    def describe(self) -> str:
        return self.server


@register_spec
@dataclass(frozen=True)
class TlsAlpnSpec(SolverSpec):
    """TLS-ALPN-01 answered by a running ``certsmith proxy`` from the challenge certificates
    written to ``webroot``."""

    kind: ClassVar[str] = "tls-alpn"
    webroot: str = ""
    always: ClassVar[frozenset[str]] = frozenset({"webroot"})

    def __post_init__(self) -> None:
        _dir(self.webroot)


@register_spec
@dataclass(frozen=True)
class DnsSpec(SolverSpec):
    """DNS-01: TXT records at ``_acme-challenge.NAME`` (or where its CNAME / ``alias`` points)
    written through a provider, then seen on every authoritative server before the CA is asked.

    ``provider`` is ``rfc2136`` (``server`` HOST[:PORT], empty: the zone's primary from its SOA;
    ``tsig_key_file`` as ``tsig-keygen`` writes it), ``lexicon:NAME`` (a dns-lexicon provider;
    ``credentials`` a 0600 file of ``KEY=VALUE`` lines, empty: the environment) or ``hook``
    (``hook``, a command run with the action, record name, value and zone in its environment).
    ``resolvers`` (HOST[:PORT]) find the zones and their servers' addresses instead of the
    system resolver; ``timeout`` is how long to wait for propagation, in seconds."""

    kind: ClassVar[str] = "dns-01"
    provider: str = ""
    server: str = ""
    tsig_key_file: str = ""
    credentials: str = ""
    hook: str = ""
    alias: str = ""
    resolvers: tuple[str, ...] = ()
    timeout: int = 600
    ttl: int = 60
    always: ClassVar[frozenset[str]] = frozenset({"provider"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "resolvers", tuple(self.resolvers))
        object.__setattr__(self, "timeout", int(self.timeout))
        object.__setattr__(self, "ttl", int(self.ttl))
        kind, _, name = self.provider.partition(":")
        if kind == "rfc2136":
            if not self.tsig_key_file:
                raise UsageError("--dns rfc2136 needs --tsig-key-file FILE")
        elif kind == "lexicon":
            if not name:
                raise UsageError(
                    "--dns lexicon:PROVIDER needs a provider name, e.g. lexicon:cloudflare"
                )
        elif kind == "hook":
            if not self.hook:
                raise UsageError("--dns hook needs --dns-hook COMMAND")
        else:
            raise UsageError(
                f"unknown DNS provider {self.provider!r} (known: rfc2136, lexicon:PROVIDER, hook)"
            )
        if self.timeout <= 0:
            raise UsageError(f"invalid DNS propagation timeout {self.timeout}")
        if not 0 < self.ttl < 86400:
            raise UsageError(f"invalid TXT record TTL {self.ttl}")

    def describe(self) -> str:
        return f"{self.kind} {self.provider}"

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if "resolvers" in out:
            out["resolvers"] = list(self.resolvers)
        return out
