"""What the proxy serves: sites (names -> upstream, options) and limits, from TOML or the CLI.

Pure apart from reading the TOML file. Every value is validated here, once (types, finite
ranges, unknown keys; see :mod:`.values`), so the server can trust it and a bad value is one line
naming the setting before anything starts. A TOML file looks like::

    http_port = 80                  # optional, these are the defaults
    https_port = 443
    redirect = 308                  # or 301, 302, 307
    access_log = "/var/log/certsmith-proxy.log"   # or "-" for stdout; none by default
    log_format = "combined"         # or "json"
    server = "letsencrypt"          # the ACME CA for public names
    email = "ops@example.org"
    agree_tos = true
    challenge = "http-01"           # or "tls-alpn-01", or "dns-01" (the provider in [dns])

    [limits]                        # optional; seconds and bytes
    header_timeout = 10
    idle_timeout = 75
    upstream_timeout = 60

    [dns]                           # optional: DNS-01 defaults for the dns-01 sites
    provider = "rfc2136"            # or "lexicon:PROVIDER", "hook"
    tsig_key_file = "acme.key"      # relative paths: from this file's directory

    [[site]]
    names = ["example.org", "www.example.org"]
    to = "127.0.0.1:8080"
    hsts = 31536000                 # optional

    [[site]]                        # a wildcard: only with DNS-01
    names = ["*.apps.example.org", "apps.example.org"]
    to = "127.0.0.1:9000"
    challenge = "dns-01"
    [site.dns]                      # optional: overrides [dns] (see :mod:`.dnsconfig`)
    server = "ns1.example.org:53"

A top-level ``challenge = "dns-01"`` makes DNS-01 the default of every public site (a site may
still say ``challenge = "http-01"``); a wildcard is served for any name one label deeper.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from certsmith.base import policy
from certsmith.base.identifiers import Identifier, default_cert_name, parse_identifiers
from certsmith.base.nameconstraints import Constraints
from certsmith.base.solverspec import DnsSpec
from certsmith.errors import UsageError
from certsmith.services.proxy import dnsconfig, values
from certsmith.services.proxy.values import at, option

REDIRECTS = (301, 302, 307, 308)
ISSUERS = ("auto", "local", "acme")
MAX_WORKERS = 1024
MAX_SECONDS = 86400.0  # a day: the longest any of the proxy's timeouts may be
MAX_HSTS = 2**31 - 1  # RFC 6797 delta-seconds; browsers cap it far lower anyway
MAX_CONFIG_BYTES = 1 << 20  # a site file is text: never read /dev/zero to the end
LOG_FORMATS = ("combined", "json")
CHALLENGES = ("http-01", "tls-alpn-01", "dns-01")
DEFAULT_HSTS = policy.HSTS_DEFAULT  # two years, as for install (Mozilla's value)
_LOCAL = Constraints.build()  # the local CA's built-in namespaces: localhost, .test, private IPs


def is_local(ident: Identifier) -> bool:
    """Names no public CA can certify: localhost, .test/.internal/.lan/..., private addresses."""
    return _LOCAL.permits(ident)


def covering_wildcard(name: str) -> str | None:
    """The wildcard name that covers ``name`` (``*.example.org`` for ``a.example.org``), or
    None: a wildcard covers exactly one more label, never ``a.b.example.org``, never the apex.
    ``name`` is lowercase, without a trailing dot (as SNI and Host are looked up)."""
    label, dot, rest = name.partition(".")
    if not dot or not label or not rest or "*" in label:
        return None
    return "*." + rest


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
    def parse(cls, text: str, label: str | None = None) -> Upstream:
        """``8080``, ``127.0.0.1:8080``, ``localhost:3000``, ``[::1]:8080``,
        ``http://host:port``, ``unix:/run/app.sock``. ``label`` starts the error line
        (default ``--to TEXT``)."""
        label = label or option("--to", text)
        value = text.strip()
        if value.startswith("unix:"):
            if not value[5:].startswith("/") or not value.isprintable():
                raise UsageError(f"{label}: the socket must be an absolute path (unix:/path)")
            return cls(path=value[5:])
        if value.startswith("https://"):
            raise UsageError(f"{label}: the upstream must speak plain HTTP (http://...)")
        value = value.removeprefix("http://").rstrip("/")
        if "/" in value:
            raise UsageError(f"{label}: give host:port, without a path")
        if value.isdigit():
            host, port_text = "127.0.0.1", value
        elif value.startswith("["):
            host, _, rest = value[1:].partition("]")
            port_text = rest.removeprefix(":") or "80"
        elif value.count(":") == 1:
            host, port_text = value.split(":")
        elif value.count(":") > 1:
            raise UsageError(f"{label}: write IPv6 addresses as [addr]:port")
        else:
            host, port_text = value, "80"
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UsageError(f"{label}: invalid port {port_text!r} (expected 1-65535)")
        if not host:
            raise UsageError(f"{label}: no host")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not all(c.isascii() and (c.isalnum() or c in "-.") for c in host):
                raise UsageError(f"{label}: invalid host {host!r}") from None
        return cls(host=host, port=int(port_text))


def _uses_acme(names: tuple[Identifier, ...], issuer: str) -> bool:
    if issuer != "auto":
        return issuer == "acme"
    return not is_local(names[0])


@dataclass(frozen=True)
class Site:
    """One site: the names it answers (one certificate), its upstream, its options."""

    names: tuple[Identifier, ...]
    upstream: Upstream
    hsts: int | None = None  # max-age seconds
    redirect: int = 308
    issuer: str = "auto"  # auto | local | acme
    # How an ACME site proves control: "" (the proxy's top-level challenge), or its own:
    # http-01 / tls-alpn-01 (the proxy's listeners) or dns-01 (through ``dns``).
    challenge: str = ""
    dns: DnsSpec | None = None  # exactly when challenge = "dns-01"

    def __post_init__(self) -> None:
        if not self.names:
            raise UsageError("a site needs at least one name")
        values.choice(at("", "redirect", self.redirect), self.redirect, REDIRECTS)
        if self.hsts is not None:
            values.whole(at("", "hsts", self.hsts), self.hsts, 0, MAX_HSTS, "max-age seconds")
        values.choice(at("", "issuer", self.issuer), self.issuer, ISSUERS)
        kinds = {is_local(i) for i in self.names}
        if self.issuer == "auto" and len(kinds) > 1:
            local = ", ".join(i.value for i in self.names if is_local(i))
            raise UsageError(
                f"{local} can only have a local-CA "
                "certificate and the other names a public one; make two sites"
            )
        if self.challenge:
            values.choice(at("", "challenge", self.challenge), self.challenge, CHALLENGES)
            if not self.uses_acme:
                raise UsageError(
                    f"{self.names[0]} gets a local-CA certificate, which needs no "
                    f'challenge; remove challenge = "{self.challenge}"'
                )
        if self.challenge == "dns-01" and self.dns is None:
            raise UsageError(
                'challenge = "dns-01" needs a [site.dns] table with provider = '
                f"{dnsconfig.PROVIDERS}"
            )
        if self.dns is not None and self.challenge != "dns-01":
            raise UsageError(
                'a [site.dns] table is used only with challenge = "dns-01"; add '
                "that line to the site, or remove the table"
            )
        if self.uses_acme and self.challenge != "dns-01" and any(i.is_wildcard for i in self.names):
            raise UsageError(
                f"{self.names[0]}: public wildcard names need DNS-01: set "
                'challenge = "dns-01" with a [site.dns] table in the site (on the '
                "command line: --dns PROVIDER)"
            )

    @property
    def uses_acme(self) -> bool:
        return _uses_acme(self.names, self.issuer)

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
        extra = tuple(
            Identifier("ip", ip)
            for ip in ("127.0.0.1", "::1")
            if Identifier("ip", ip) not in self.names
        )
        return self.names + extra


# The sane range of each whole-number limit (the timeouts: above 0, at most MAX_SECONDS).
LIMIT_RANGES = {
    "max_head": (1024, 1 << 20),
    "max_request_line": (256, 1 << 20),
    "max_headers": (1, 10000),
    "max_connections": (1, 1_000_000),
}


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
            self.check(f.name, getattr(self, f.name), "limits.")

    @staticmethod
    def check(key: str, value: object, prefix: str) -> int | float:
        """One limit, typed and in range; the error line starts ``<prefix>key = value``."""
        label = at(prefix, key, value)
        if key in LIMIT_RANGES:
            low, high = LIMIT_RANGES[key]
            what = (
                "a number of bytes"
                if key.startswith("max_head") or key.endswith("line")
                else "a whole number"
            )
            return values.whole(label, value, low, high, what)
        return values.seconds(label, value, MAX_SECONDS)

    @classmethod
    def from_dict(cls, data: dict[str, Any], prefix: str = "[limits] ") -> Limits:
        known = [f.name for f in fields(cls)]
        values.refuse_unknown(prefix, data, known, {k: "the top level" for k in _TOP})
        checked: dict[str, Any] = {k: cls.check(k, v, prefix) for k, v in data.items()}
        return cls(**checked)


@dataclass(frozen=True)
class AcmeOptions:
    server: str | None = None  # alias or directory URL; None = the default CA
    email: str | None = None
    agree_tos: bool = False
    challenge: str = "http-01"

    def __post_init__(self) -> None:
        values.choice(at("", "challenge", self.challenge), self.challenge, CHALLENGES)
        values.flag(at("", "agree_tos", self.agree_tos), self.agree_tos)


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
        for key in ("http_port", "https_port", "workers", "address", "log_format"):
            _TOP_CHECKS[key](at("", key, getattr(self, key)), getattr(self, key))
        if self.access_log is not None:
            _TOP_CHECKS["access_log"](at("", "access_log", self.access_log), self.access_log)
        if self.http_port == self.https_port:
            raise UsageError(f"the HTTP and HTTPS ports must differ (both {self.http_port})")
        seen: dict[Identifier, int] = {}
        for index, site in enumerate(self.sites):
            for name in site.names:
                if name in seen:
                    raise UsageError(f"{name} is listed in two sites")
                seen[name] = index
        lineages = [s.cert_name for s in self.sites]
        if len(set(lineages)) != len(lineages):
            raise UsageError(
                "two sites would share a certificate name; give each site a different first name"
            )
        if self.acme.challenge == "dns-01":
            for site in self.sites:
                if site.uses_acme and not site.challenge:
                    raise UsageError(
                        f'{site.names[0]}: challenge = "dns-01" (the default) '
                        "needs the site's DNS provider: a [dns] table"
                    )

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1


def parse_hsts(value: str | int | bool | None, label: str | None = None) -> int | None:
    """``--hsts`` (two years), ``--hsts=SECONDS``, TOML ``hsts = true | false | SECONDS``."""
    what = "true, false or a max-age in seconds" if label else "a max-age in seconds"
    label = label or option("--hsts", value)
    if value is None or value is False:
        return None
    if value is True or value == "":
        return DEFAULT_HSTS
    return values.whole(label, values.from_text(value), 0, MAX_HSTS, what)


def _server(label: str, value: object) -> str:
    from certsmith.core.issuers.cas import resolve_server

    server = values.text(label, value, "a CA directory URL or alias such as letsencrypt")
    try:
        resolve_server(server)
    except UsageError as exc:
        raise UsageError(f"{label}: {exc}") from None
    return server


def _hsts(label: str, value: object) -> int | None:
    if not isinstance(value, bool | int):
        raise UsageError(f"{label}: expected true, false or a max-age in seconds 0-{MAX_HSTS}")
    return parse_hsts(value, label)


# Each top-level setting's check: (label, raw value) -> the typed value, or one UsageError.
_TOP_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "http_port": values.port,
    "https_port": values.port,
    "address": values.listen_address,
    "workers": lambda label, v: values.whole(
        label, v, 0, MAX_WORKERS, "a number of worker processes", " (0: one per CPU core)"
    ),
    "access_log": lambda label, v: values.text(label, v, 'a file path, or "-" for stdout'),
    "log_format": lambda label, v: values.choice(label, v, LOG_FORMATS),
    "redirect": lambda label, v: values.choice(label, v, REDIRECTS),
    "hsts": _hsts,
    "server": _server,
    "email": values.email,
    "agree_tos": values.flag,
    "challenge": lambda label, v: values.choice(label, v, CHALLENGES),
}
_TOP = set(_TOP_CHECKS) | {"limits", "site", "dns"}
_SITE = {"names", "to", "hsts", "redirect", "issuer", "challenge", "dns"}
_ACME = ("server", "email", "agree_tos", "challenge")

_NUMBERS = ("http_port", "https_port", "workers")  # given as text on the command line
# The command-line option of each setting a command line can override.
CLI_OPTIONS = {
    "http_port": "--http-port",
    "https_port": "--https-port",
    "address": "--address",
    "workers": "--workers",
    "access_log": "--access-log",
    "log_format": "--log-format",
    "server": "--server",
    "email": "--email",
    "agree_tos": "--agree-tos",
    "challenge": "--challenge",
}


def from_options(**raw: Any) -> dict[str, Any]:
    """The command line's settings (argv strings) checked and typed, each error naming its
    option; settings not given (None) are left out, so the file's values stay."""
    checked: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None:
            continue
        if key not in CLI_OPTIONS:
            raise UsageError(f"unknown setting {key!r}")
        typed = values.from_text(value) if key in _NUMBERS else value
        checked[key] = _TOP_CHECKS[key](option(CLI_OPTIONS[key], value), typed)
    return checked


def from_cli(names: list[str], to: str, **options: Any) -> ProxyConfig:
    """One site from ``certsmith proxy NAME[,NAME...] --to UPSTREAM`` and its options
    (``hsts`` and ``redirect`` as given on the command line; ``dns`` the DnsSpec of ``--dns``;
    the others typed, as :func:`from_options` returns them)."""
    redirect = options.pop("redirect", None)
    dns: DnsSpec | None = options.pop("dns", None)
    identifiers = parse_identifiers(names)
    challenge = options.get("challenge")
    if dns is not None:
        if challenge not in (None, "dns-01"):
            raise UsageError(f"--dns uses DNS-01: give --dns or --challenge {challenge}, not both")
        if not _uses_acme(identifiers, "auto"):
            raise UsageError(
                f"--dns: {identifiers[0]} gets a local-CA certificate, which needs no challenge"
            )
    elif challenge == "dns-01":
        raise UsageError(f"--challenge dns-01 needs --dns PROVIDER ({dnsconfig.PROVIDERS})")
    site = Site(
        names=identifiers,
        upstream=Upstream.parse(to),
        hsts=parse_hsts(options.pop("hsts", None)),
        redirect=308
        if redirect is None
        else values.choice(option("--redirect", redirect), values.from_text(redirect), REDIRECTS),
        challenge="dns-01" if dns is not None else "",
        dns=dns,
    )
    limits = Limits.from_dict(options.pop("limits", None) or {}, "limits: ")
    settings = {k: v for k, v in options.items() if v is not None}
    acme = AcmeOptions(**{k: settings.pop(k) for k in _ACME if k in settings})
    return ProxyConfig(sites=(site,), acme=acme, limits=limits, **settings)


def load(path: Path | str, **overrides: Any) -> ProxyConfig:
    """Read a TOML site file; ``overrides`` (from the command line, typed) win over its top
    level. Every error names the file and the setting."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise UsageError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB; not a site file")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: {exc}") from None
    return from_dict(data, source=str(path.absolute()), prefix=f"{path}: ", **overrides)


def _site_prefix(prefix: str, number: int, raw: object) -> str:
    """``proxy.toml: site 2 (app.test): `` -- the site's first name when it has one."""
    first = raw.get("names") if isinstance(raw, dict) else None
    if isinstance(first, list) and first:
        first = first[0]
    name = f" ({first})" if isinstance(first, str) and first.isprintable() and first else ""
    return f"{prefix}site {number}{name}: "


@dataclass(frozen=True)
class _Defaults:
    """What a [[site]] table inherits from the top level."""

    redirect: int = 308
    hsts: int | None = None
    challenge: str = "http-01"
    dns: dnsconfig.Table = dnsconfig.EMPTY
    base: Path = Path("/")  # the TOML file's directory: relative paths start there


def _site(where: str, raw: object, defaults: _Defaults) -> Site:
    if not isinstance(raw, dict):
        raise UsageError(f"{where}expected a [[site]] table")
    elsewhere = {k: "the top level" for k in _TOP - _SITE - {"site", "limits"}}
    elsewhere.update({f.name: "[limits]" for f in fields(Limits)})
    elsewhere.update({k: "[site.dns]" for k in dnsconfig.KEYS if k not in elsewhere})
    values.refuse_unknown(where, raw, _SITE, elsewhere)
    if "names" not in raw or "to" not in raw:
        raise UsageError(f'{where}needs names = [...] and to = "host:port"')
    label = at(where, "names", raw["names"])
    try:
        identifiers = parse_identifiers(values.names(label, raw["names"]))
    except UsageError as exc:
        message = str(exc)
        raise UsageError(message if message.startswith(label) else f"{label}: {message}") from None
    label = at(where, "to", raw["to"])
    upstream = Upstream.parse(
        values.text(
            label, raw["to"], 'an upstream such as "127.0.0.1:8080" or "unix:/run/app.sock"'
        ),
        label,
    )
    hsts = _hsts(at(where, "hsts", raw["hsts"]), raw["hsts"]) if "hsts" in raw else defaults.hsts
    redirect = (
        _TOP_CHECKS["redirect"](at(where, "redirect", raw["redirect"]), raw["redirect"])
        if "redirect" in raw
        else defaults.redirect
    )
    issuer = (
        values.choice(at(where, "issuer", raw["issuer"]), raw["issuer"], ISSUERS)
        if "issuer" in raw
        else "auto"
    )
    challenge, dns = _site_challenge(where, raw, identifiers, issuer, defaults)
    try:
        return Site(
            names=identifiers,
            upstream=upstream,
            hsts=hsts,
            redirect=redirect,
            issuer=issuer,
            challenge=challenge,
            dns=dns,
        )
    except UsageError as exc:
        raise UsageError(f"{where}{exc}") from None


def _site_challenge(
    where: str,
    raw: dict[str, Any],
    identifiers: tuple[Identifier, ...],
    issuer: str,
    defaults: _Defaults,
) -> tuple[str, DnsSpec | None]:
    """The site's own challenge ("" for the proxy's listener default) and its DNS-01 spec:
    its ``[site.dns]`` over the top-level ``[dns]``."""
    challenge = (
        _TOP_CHECKS["challenge"](at(where, "challenge", raw["challenge"]), raw["challenge"])
        if "challenge" in raw
        else ""
    )
    own = (
        dnsconfig.table(
            where, "[site.dns]", raw["dns"], defaults.base, {k: "the [[site]] table" for k in _SITE}
        )
        if "dns" in raw
        else None
    )
    if not _uses_acme(identifiers, issuer):
        if own is not None:
            raise UsageError(
                f"{where}{identifiers[0]} gets a local-CA certificate, which "
                "needs no challenge; remove [site.dns]"
            )
        return challenge, None  # (a challenge given is refused by Site, in one line)
    if not challenge and defaults.challenge == "dns-01":
        challenge = "dns-01"
    if challenge != "dns-01":
        if own is not None:
            raise UsageError(
                f"{where}a [site.dns] table is used only with challenge = "
                f'"dns-01" (this site\'s is {challenge or defaults.challenge}); '
                "add that line to the site, or remove the table"
            )
        return challenge, None
    return challenge, dnsconfig.spec(where, defaults.dns, own)


def from_dict(
    data: dict[str, Any], source: str | None = None, prefix: str = "", **overrides: Any
) -> ProxyConfig:
    """A parsed TOML document -> the configuration; ``prefix`` starts every error line."""
    elsewhere = {k: "a [[site]] table" for k in ("names", "to", "issuer")}
    elsewhere.update({f.name: "[limits]" for f in fields(Limits)})
    elsewhere.update({k: "[dns] (or a site's [site.dns])" for k in dnsconfig.KEYS if k not in _TOP})
    values.refuse_unknown(prefix, data, _TOP, elsewhere)
    settings = {k: _TOP_CHECKS[k](at(prefix, k, v), v) for k, v in data.items() if k in _TOP_CHECKS}
    limits = data.get("limits", {})
    if not isinstance(limits, dict):
        raise UsageError(f"{at(prefix, 'limits', limits)}: expected a [limits] table")
    raw_sites = data.get("site")
    if raw_sites is None:
        raise UsageError(
            f'{prefix}no [[site]] tables: each needs names = [...] and to = "host:port"'
        )
    if not isinstance(raw_sites, list) or not raw_sites:
        raise UsageError(
            f'{prefix}site: expected [[site]] tables, each with names = [...] and to = "host:port"'
        )
    settings.update({k: v for k, v in overrides.items() if v is not None})
    base = Path(source).parent if source else Path(os.path.abspath("."))
    dns = (
        dnsconfig.table(prefix, "[dns]", data["dns"], base, {k: "the top level" for k in _TOP})
        if "dns" in data
        else dnsconfig.EMPTY
    )
    defaults = _Defaults(
        redirect=settings.pop("redirect", 308),
        hsts=settings.pop("hsts", None),
        challenge=settings.get("challenge", "http-01"),
        dns=dns,
        base=base,
    )
    sites = tuple(
        _site(_site_prefix(prefix, number, raw), raw, defaults)
        for number, raw in enumerate(raw_sites, 1)
    )
    acme = AcmeOptions(**{k: settings.pop(k) for k in _ACME if k in settings})
    try:
        return ProxyConfig(
            sites=sites,
            acme=acme,
            limits=Limits.from_dict(limits, f"{prefix}[limits] "),
            source=source,
            **settings,
        )
    except UsageError as exc:
        message = str(exc)
        raise UsageError(message if message.startswith(prefix) else f"{prefix}{message}") from None
