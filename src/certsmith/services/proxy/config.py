"""What the proxy serves: sites (names -> upstream, options) and limits, from TOML or the CLI.

Pure apart from reading the TOML file. Everything is validated here, once, so the server can
trust it. A TOML file looks like::

    http_port = 80                  # optional, these are the defaults
    https_port = 443
    redirect = 308                  # or 301
    access_log = "/var/log/certsmith-proxy.log"   # or "-" for stdout; none by default
    log_format = "combined"         # or "json"
    server = "letsencrypt"          # the ACME CA for public names
    email = "ops@example.org"
    agree_tos = true
    challenge = "http-01"           # or "tls-alpn-01"

    [limits]                        # optional; seconds and bytes
    header_timeout = 10
    idle_timeout = 75
    upstream_timeout = 60

    [[site]]
    names = ["example.org", "www.example.org"]
    to = "127.0.0.1:8080"
    hsts = 31536000                 # optional
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from certsmith.base import policy
from certsmith.base.identifiers import Identifier, default_cert_name, parse_identifiers
from certsmith.base.nameconstraints import Constraints
from certsmith.errors import UsageError

REDIRECTS = (301, 308)
LOG_FORMATS = ("combined", "json")
CHALLENGES = ("http-01", "tls-alpn-01")
DEFAULT_HSTS = policy.HSTS_DEFAULT  # two years, as for install (Mozilla's value)
_LOCAL = Constraints.build()  # the local CA's built-in namespaces: localhost, .test, private IPs


def is_local(ident: Identifier) -> bool:
    """Names no public CA can certify: localhost, .test/.internal/.lan/..., private addresses."""
    return _LOCAL.permits(ident)


@dataclass(frozen=True)
class Upstream:
    """Where a site's requests go: TCP ``host:port`` or a Unix socket ``path``."""

    host: str = ""
    port: int = 0
    path: str = ""

    def __post_init__(self) -> None:
        if self.path:
            if not self.path.startswith("/"):
                raise UsageError(f"upstream socket {self.path!r} must be an absolute path")
        elif not self.host or not 0 < self.port < 65536:
            raise UsageError(f"invalid upstream {self}")

    def __str__(self) -> str:
        if self.path:
            return f"unix:{self.path}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Upstream:
        """``8080``, ``127.0.0.1:8080``, ``localhost:3000``, ``[::1]:8080``,
        ``http://host:port``, ``unix:/run/app.sock``."""
        value = text.strip()
        if value.startswith("unix:"):
            return cls(path=value[5:])
        if value.startswith("https://"):
            raise UsageError(f"--to {text}: the upstream must speak plain HTTP (http://...)")
        value = value.removeprefix("http://").rstrip("/")
        if "/" in value:
            raise UsageError(f"--to {text}: give host:port, without a path")
        if value.isdigit():
            host, port_text = "127.0.0.1", value
        elif value.startswith("["):
            host, _, rest = value[1:].partition("]")
            port_text = rest.removeprefix(":") or "80"
        elif value.count(":") == 1:
            host, port_text = value.split(":")
        elif value.count(":") > 1:
            raise UsageError(f"--to {text}: write IPv6 addresses as [addr]:port")
        else:
            host, port_text = value, "80"
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UsageError(f"--to {text}: invalid port {port_text!r}")
        if not host:
            raise UsageError(f"--to {text}: no host")
        with_port = cls(host=host, port=int(port_text))
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not all(c.isalnum() or c in "-." for c in host):
                raise UsageError(f"--to {text}: invalid host {host!r}") from None
        return with_port


@dataclass(frozen=True)
class Site:
    """One site: the names it answers (one certificate), its upstream, its options."""

    names: tuple[Identifier, ...]
    upstream: Upstream
    hsts: int | None = None  # max-age seconds
    redirect: int = 308
    issuer: str = "auto"  # auto | local | acme

    def __post_init__(self) -> None:
        if not self.names:
            raise UsageError("a site needs at least one name")
        if self.redirect not in REDIRECTS:
            raise UsageError(f"redirect {self.redirect}: use 301 or 308")
        if self.hsts is not None and self.hsts < 0:
            raise UsageError("hsts max-age must not be negative")
        if self.issuer not in ("auto", "local", "acme"):
            raise UsageError(f"issuer {self.issuer!r}: use auto, local or acme")
        kinds = {is_local(i) for i in self.names}
        if self.issuer == "auto" and len(kinds) > 1:
            local = ", ".join(i.value for i in self.names if is_local(i))
            raise UsageError(f"site {self.names[0]}: {local} can only have a local-CA "
                             "certificate and the other names a public one; make two sites")
        if self.uses_acme and any(i.is_wildcard for i in self.names):
            raise UsageError(f"{self.names[0]}: public wildcard names need DNS-01, which the "
                             "proxy cannot answer; list the names without '*'")

    @property
    def uses_acme(self) -> bool:
        if self.issuer != "auto":
            return self.issuer == "acme"
        return not is_local(self.names[0])

    @property
    def cert_name(self) -> str:
        """The certificate lineage in the store (``live/<cert_name>/``)."""
        base = default_cert_name(self.names[0])
        return base if self.uses_acme else f"local-{base}"

    @property
    def cert_identifiers(self) -> tuple[Identifier, ...]:
        """The names on the certificate. A local ``localhost`` site also covers the loopback
        addresses, so https://127.0.0.1 and https://[::1] work too."""
        if self.uses_acme or not any(i.value == "localhost" for i in self.names):
            return self.names
        extra = tuple(Identifier("ip", ip) for ip in ("127.0.0.1", "::1")
                      if Identifier("ip", ip) not in self.names)
        return self.names + extra


@dataclass(frozen=True)
class Limits:
    """Robustness limits; times in seconds, sizes in bytes."""

    max_head: int = 32 * 1024  # request line + headers (nginx: 4 x 8k buffers)
    max_request_line: int = 8 * 1024
    max_headers: int = 100
    header_timeout: float = 10.0  # first byte of a request to its last header
    idle_timeout: float = 75.0  # keep-alive between requests
    body_timeout: float = 60.0  # between two pieces of a request body
    connect_timeout: float = 5.0  # to the upstream
    upstream_timeout: float = 60.0  # waiting for the upstream's response (and between pieces)
    tunnel_timeout: float = 3600.0  # an idle WebSocket / Upgrade tunnel
    max_connections: int = 20000  # per worker
    drain_timeout: float = 30.0  # SIGTERM: how long in-flight requests may take

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) <= 0:
                raise UsageError(f"limits.{f.name} must be positive")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Limits:
        known = {f.name: f.type for f in fields(cls)}
        for key in data:
            if key not in known:
                raise UsageError(f"unknown limit {key!r}; known: {', '.join(known)}")
        try:
            values: dict[str, Any] = {k: (int(v) if known[k] == "int" else float(v))
                                      for k, v in data.items()}
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"invalid [limits]: {exc}") from None


@dataclass(frozen=True)
class AcmeOptions:
    server: str | None = None  # alias or directory URL; None = the default CA
    email: str | None = None
    agree_tos: bool = False
    challenge: str = "http-01"

    def __post_init__(self) -> None:
        if self.challenge not in CHALLENGES:
            raise UsageError(f"challenge {self.challenge!r}: use {' or '.join(CHALLENGES)}")


@dataclass(frozen=True)
class ProxyConfig:
    sites: tuple[Site, ...]
    http_port: int = 80
    https_port: int = 443
    address: str = ""  # listen address; "" = all (IPv4 and IPv6)
    workers: int = 0  # 0 = one per CPU core
    access_log: str | None = None  # file path, "-" for stdout, None for no log
    log_format: str = "combined"
    limits: Limits = field(default_factory=Limits)
    acme: AcmeOptions = field(default_factory=AcmeOptions)
    source: str | None = None  # the TOML file, for SIGHUP

    def __post_init__(self) -> None:
        if not self.sites:
            raise UsageError("no sites to serve")
        for port in (self.http_port, self.https_port):
            if not 0 < port < 65536:
                raise UsageError(f"invalid port {port}")
        if self.http_port == self.https_port:
            raise UsageError("the HTTP and HTTPS ports must differ")
        if self.workers < 0:
            raise UsageError("workers must be 0 (one per core) or more")
        if self.log_format not in LOG_FORMATS:
            raise UsageError(f"log format {self.log_format!r}: use combined or json")
        seen: dict[Identifier, int] = {}
        for index, site in enumerate(self.sites):
            for name in site.names:
                if name in seen:
                    raise UsageError(f"{name} is listed in two sites")
                seen[name] = index
        lineages = [s.cert_name for s in self.sites]
        if len(set(lineages)) != len(lineages):
            raise UsageError("two sites would share a certificate name; give each site a "
                             "different first name")

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1


def parse_hsts(value: str | int | bool | None) -> int | None:
    """``--hsts`` (two years), ``--hsts=SECONDS``, TOML ``hsts = true | 0 | SECONDS``."""
    if value is None or value is False:
        return None
    if value is True or value == "":
        return DEFAULT_HSTS
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"hsts {value!r}: give a number of seconds") from None
    if seconds < 0:
        raise UsageError("hsts max-age must not be negative")
    return seconds


def from_cli(names: list[str], to: str, **options: Any) -> ProxyConfig:
    """One site from ``certsmith proxy NAME[,NAME...] --to UPSTREAM`` and its options."""
    site = Site(names=parse_identifiers(names), upstream=Upstream.parse(to),
                hsts=parse_hsts(options.pop("hsts", None)),
                redirect=int(options.pop("redirect", 308) or 308))
    acme = AcmeOptions(server=options.pop("server", None), email=options.pop("email", None),
                       agree_tos=bool(options.pop("agree_tos", False)),
                       challenge=options.pop("challenge", None) or "http-01")
    limits = Limits.from_dict(options.pop("limits", None) or {})
    return ProxyConfig(sites=(site,), acme=acme, limits=limits,
                       **{k: v for k, v in options.items() if v is not None})


_TOP = {"http_port", "https_port", "address", "workers", "access_log", "log_format", "redirect",
        "hsts", "server", "email", "agree_tos", "challenge", "limits", "site"}
_SITE = {"names", "to", "hsts", "redirect", "issuer"}


def load(path: Path | str, **overrides: Any) -> ProxyConfig:
    """Read a TOML site file; ``overrides`` (from the command line) win over its top level."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: {exc}") from None
    return from_dict(data, source=str(path.absolute()), **overrides)


def from_dict(data: dict[str, Any], source: str | None = None, **overrides: Any) -> ProxyConfig:
    unknown = set(data) - _TOP
    if unknown:
        raise UsageError(f"unknown setting(s) {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(sorted(_TOP))}")
    raw_sites = data.get("site")
    if not isinstance(raw_sites, list) or not raw_sites:
        raise UsageError("no [[site]] tables: each needs names = [...] and to = \"host:port\"")
    default_redirect = int(data.get("redirect", 308))
    default_hsts = data.get("hsts")
    sites = []
    for number, raw in enumerate(raw_sites, 1):
        if not isinstance(raw, dict):
            raise UsageError(f"site {number}: expected a table")
        bad = set(raw) - _SITE
        if bad:
            raise UsageError(f"site {number}: unknown setting(s) {', '.join(sorted(bad))}")
        names = raw.get("names")
        if isinstance(names, str):
            names = [names]
        if not names or "to" not in raw:
            raise UsageError(f"site {number}: needs names = [...] and to = \"host:port\"")
        sites.append(Site(names=parse_identifiers(names), upstream=Upstream.parse(str(raw["to"])),
                          hsts=parse_hsts(raw.get("hsts", default_hsts)),
                          redirect=int(raw.get("redirect", default_redirect)),
                          issuer=str(raw.get("issuer", "auto"))))
    acme = AcmeOptions(server=data.get("server"), email=data.get("email"),
                       agree_tos=bool(data.get("agree_tos", False)),
                       challenge=str(data.get("challenge", "http-01")))
    limits = data.get("limits", {})
    if not isinstance(limits, dict):
        raise UsageError("[limits] must be a table")
    settings: dict[str, Any] = {k: data[k] for k in ("http_port", "https_port", "address",
                                                     "workers", "access_log", "log_format")
                                if k in data}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    acme_keys = ("server", "email", "agree_tos", "challenge")
    acme_over: dict[str, Any] = {k: settings.pop(k) for k in acme_keys if k in settings}
    if acme_over:
        acme = AcmeOptions(**{**acme.__dict__, **acme_over})
    for key in ("http_port", "https_port", "workers"):
        if key in settings and not isinstance(settings[key], int):
            raise UsageError(f"{key} must be a number")
    return ProxyConfig(sites=tuple(sites), acme=acme, limits=Limits.from_dict(limits),
                       source=source, **settings)
