"""What ``certsmith check`` was asked to look at: URL, host or host:port (pure)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from certsmith.errors import UsageError


@dataclass(frozen=True)
class Target:
    """A TLS endpoint: the name to verify (and send as SNI), where to connect, which HTTP port."""

    host: str
    port: int = 443
    path: str = "/"
    connect: str | None = None  # address to dial instead of resolving ``host``
    http_port: int | None = None  # plain-HTTP port to test the redirect on; None: skip

    @property
    def address(self) -> str:
        return self.connect or self.host

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    def label(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _port(text: str, what: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UsageError(f"invalid port {text!r} in {what}")
    return int(text)


def split_host_port(text: str, default_port: int, what: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address -> (host, port)."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise UsageError(f"invalid address {what!r}")
        return host, _port(rest[1:], what) if rest else default_port
    if text.count(":") > 1:  # a bare IPv6 address
        return text, default_port
    host, sep, port = text.partition(":")
    return host, _port(port, what) if sep else default_port


def parse_target(
    text: str, *, connect: str | None = None, http_port: int | bool | None = True
) -> Target:
    """Parse a command-line target. ``http_port=True`` picks 80 when the TLS port is 443."""
    raw = text.strip()
    if not raw:
        raise UsageError("empty target")
    path = "/"
    if "://" in raw:
        parts = urlsplit(raw)
        if parts.scheme not in ("https", "http"):
            raise UsageError(f"invalid target {text!r}: only https:// (or http://) URLs")
        if not parts.hostname:
            raise UsageError(f"invalid target {text!r}: no host")
        try:
            port = parts.port or 443
        except ValueError as exc:
            raise UsageError(f"invalid target {text!r}: {exc}") from None
        if parts.scheme == "http" and parts.port is None:
            port = 443
        host = parts.hostname
        path = parts.path or "/"
    else:
        host, port = split_host_port(raw, 443, raw)
    host = host.rstrip(".").lower()
    if not host or any(c in host for c in "/ \t@?#"):
        raise UsageError(f"invalid target {text!r}")
    chosen: int | None
    if http_port is True:
        chosen = 80 if port == 443 else None
    elif http_port is False:
        chosen = None
    else:
        chosen = http_port
    conn = None
    if connect:
        conn_host, conn_port = split_host_port(connect, port, connect)
        conn, port = conn_host, conn_port
    return Target(host=host, port=port, path=path, connect=conn, http_port=chosen)
