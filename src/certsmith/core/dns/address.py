"""HOST[:PORT] for DNS servers: ``127.0.0.1``, ``127.0.0.1:5353``, ``ns1.example.org:53``,
``::1``, ``[::1]:5353``. Pure."""

from __future__ import annotations

import ipaddress

from certsmith.errors import UsageError

DNS_PORT = 53


def parse_hostport(text: str, default_port: int = DNS_PORT) -> tuple[str, int]:
    """``(host, port)``; an IPv6 address with a port is written in brackets."""
    value = text.strip()
    if not value:
        raise UsageError("empty DNS server address")
    host, port = value, default_port
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise UsageError(f"invalid DNS server address {text!r}: missing ']'")
        host, rest = value[1:end], value[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise UsageError(f"invalid DNS server address {text!r}")
            port = _port(text, rest[1:])
        _ipv6(text, host)
    elif value.count(":") == 1:
        host, _, raw = value.partition(":")
        port = _port(text, raw)
    elif ":" in value:
        _ipv6(text, value)  # a bare IPv6 address, no port
    if not host:
        raise UsageError(f"invalid DNS server address {text!r}: no host")
    return host.lower().rstrip("."), port


def format_hostport(host: str, port: int) -> str:
    """The inverse: ``[::1]:53``, ``127.0.0.1:53``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _port(text: str, raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise UsageError(f"invalid DNS server address {text!r}: bad port {raw!r}")
    return int(raw)


def _ipv6(text: str, host: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise UsageError(
            f"invalid DNS server address {text!r}: not an IPv6 address (write [ADDRESS]:PORT)"
        ) from None
