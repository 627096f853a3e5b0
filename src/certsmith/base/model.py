"""Value objects shared by every layer: what a site asks for, and where its files go.

Pure: no I/O. ``SiteSpec`` round-trips through ``sites/<name>.toml``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from certsmith.base.identifiers import Identifier, check_cert_name, parse_identifiers
from certsmith.base.keytypes import DEFAULT_KEY_TYPE, check_key_type
from certsmith.base.solverspec import (
    ServerSpec,
    SolverSpec,
    StandaloneSpec,
    TlsAlpnSpec,
    WebrootSpec,
)
from certsmith.errors import UsageError

__all__ = [
    "PARTS",
    "Bundle",
    "FileTarget",
    "ServerSpec",
    "SiteSpec",
    "SolverSpec",
    "StandaloneSpec",
    "TlsAlpnSpec",
    "WebrootSpec",
]

PARTS = ("fullchain", "cert", "chain", "key", "combined", "dir")
Part = Literal["fullchain", "cert", "chain", "key", "combined", "dir"]
_MODE = re.compile(r"^0?[0-7]{3}$")


@dataclass(frozen=True)
class FileTarget:
    """Copy one part of the bundle (or, with ``part="dir"``, all of them) to ``path``."""

    part: Part
    path: str
    owner: str | None = None
    group: str | None = None
    mode: int | None = None

    def __post_init__(self) -> None:
        if self.part not in PARTS:
            raise UsageError(f"unknown part {self.part!r}; choose one of {', '.join(PARTS)}")
        if not self.path.startswith("/"):
            raise UsageError(f"deploy path {self.path!r} must be absolute")

    @classmethod
    def parse(cls, spec: str) -> FileTarget:
        """Parse ``PART=PATH[,owner=U][,group=G][,mode=0640]`` (see ``certsmith get --help``)."""
        head, *opts = spec.split(",")
        if "=" not in head:
            raise UsageError(
                f"invalid --deploy-to {spec!r}: expected PART=PATH, e.g. combined=/etc/app/cert.pem"
            )
        part, path = head.split("=", 1)
        kw: dict[str, Any] = {}
        for opt in opts:
            key, sep, value = opt.partition("=")
            if not sep or key not in ("owner", "group", "mode") or not value:
                raise UsageError(f"invalid --deploy-to option {opt!r}: use owner=, group=, mode=")
            if key == "mode":
                if not _MODE.match(value):
                    raise UsageError(f"invalid mode {value!r}: use octal such as 0640")
                kw["mode"] = int(value, 8)
            else:
                kw[key] = value
        return cls(part=part.strip().lower(), path=path.strip(), **kw)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"part": self.part, "path": self.path}
        if self.owner:
            out["owner"] = self.owner
        if self.group:
            out["group"] = self.group
        if self.mode is not None:
            out["mode"] = f"0{self.mode:o}"
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileTarget:
        mode = data.get("mode")
        return cls(
            part=data["part"],
            path=data["path"],
            owner=data.get("owner"),
            group=data.get("group"),
            mode=int(mode, 8) if isinstance(mode, str) else mode,
        )


@dataclass(frozen=True)
class SiteSpec:
    """One certificate lineage: what to get, from where, how to prove it, where it goes.

    ``ca_bundle``: the CA certificates that verify a private ACME CA's HTTPS, recorded at
    ``get`` time (``--ca-bundle`` or ``REQUESTS_CA_BUNDLE``) because a timer's environment
    has no such variable and the renewal would otherwise fail TLS verification."""

    name: str
    identifiers: tuple[Identifier, ...]
    server: str
    solver: SolverSpec
    key_type: str = DEFAULT_KEY_TYPE
    reuse_key: bool = False
    profile: str | None = None
    preferred_chain: str | None = None
    account: str | None = None
    deploy_files: tuple[FileTarget, ...] = ()
    deploy_commands: tuple[str, ...] = ()
    ca_bundle: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        check_cert_name(self.name)
        check_key_type(self.key_type)
        if not self.identifiers:
            raise UsageError(f"{self.name}: no names")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "identifiers": [i.value for i in self.identifiers],
            "server": self.server,
            "key_type": self.key_type,
            "reuse_key": self.reuse_key,
            "solver": self.solver.to_dict(),
        }
        if self.profile:
            out["profile"] = self.profile
        if self.preferred_chain:
            out["preferred_chain"] = self.preferred_chain
        if self.account:
            out["account"] = self.account
        if self.ca_bundle:
            out["ca_bundle"] = self.ca_bundle
        if self.deploy_files or self.deploy_commands:
            out["deploy"] = {
                "files": [t.to_dict() for t in self.deploy_files],
                "commands": list(self.deploy_commands),
            }
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SiteSpec:
        known = {
            "name",
            "identifiers",
            "server",
            "key_type",
            "reuse_key",
            "solver",
            "profile",
            "preferred_chain",
            "account",
            "deploy",
            "ca_bundle",
        }
        try:
            deploy = data.get("deploy", {})
            return cls(
                name=data["name"],
                identifiers=parse_identifiers(data["identifiers"]),
                server=data["server"],
                solver=SolverSpec.from_dict(data["solver"]),
                key_type=data.get("key_type", DEFAULT_KEY_TYPE),
                reuse_key=bool(data.get("reuse_key", False)),
                profile=data.get("profile"),
                preferred_chain=data.get("preferred_chain"),
                account=data.get("account"),
                deploy_files=tuple(FileTarget.from_dict(t) for t in deploy.get("files", [])),
                deploy_commands=tuple(deploy.get("commands", [])),
                ca_bundle=data.get("ca_bundle"),
                extra={k: v for k, v in data.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"invalid site file for {data.get('name', '?')}: {exc}") from exc


@dataclass(frozen=True)
class Bundle:
    """A certificate and its key, PEM-encoded, as written to ``archive/<name>/<n>/``."""

    cert_pem: bytes
    chain_pem: bytes
    key_pem: bytes

    @property
    def fullchain_pem(self) -> bytes:
        return self.cert_pem + self.chain_pem

    @property
    def combined_pem(self) -> bytes:
        return self.cert_pem + self.chain_pem + self.key_pem

    def files(self) -> dict[str, bytes]:
        return {
            "cert.pem": self.cert_pem,
            "chain.pem": self.chain_pem,
            "fullchain.pem": self.fullchain_pem,
            "privkey.pem": self.key_pem,
        }
