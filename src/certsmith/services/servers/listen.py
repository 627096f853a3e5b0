"""Listen addresses: the hosts a user's site answers on, kept for certsmith's own site.

A site carried over from ``127.0.0.1:80`` and ``[::1]:80`` must keep exactly those addresses
(and families), on the HTTP port and on the new HTTPS listener; a site on every interface keeps
every interface. certsmith never widens what a user exposed, so each installer reads the
addresses from the user's configuration and writes them back in its own syntax; only
``--listen-address`` replaces them.

A listen address is kept as ``(host, port)``: ``host`` is ``""`` where the user's configuration
names no address (``listen 80;``, ``Listen 80``, no ``server.bind``: the server's own default),
an IPv6 address without brackets, an IPv4 address, ``*`` or a host name, as the user wrote it.
The same installer reads and writes it, so each server's meaning of ``""`` is preserved.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from certsmith.errors import UsageError


def is_ipv6(host: str) -> bool:
    return ":" in host


def hostport(host: str, port: int) -> str:
    """``80``, ``127.0.0.1:80``, ``[::1]:80``: the form all three servers accept."""
    if not host:
        return str(port)
    return f"[{host}]:{port}" if is_ipv6(host) else f"{host}:{port}"


def bracketed(host: str) -> str:
    return f"[{host}]" if is_ipv6(host) else host


def parse_hostport(text: str, default_port: int) -> tuple[str, int] | None:
    """The inverse of :func:`hostport` (also ``[::1]`` and ``127.0.0.1`` without a port);
    None for what is not a TCP address (a unix socket, a malformed port)."""
    text = text.strip()
    if not text or text.startswith(("unix:", "/")):
        return None
    if text.isdigit():
        return "", int(text)
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if not rest:
            return host, default_port
        port = rest.removeprefix(":")
        return (host, int(port)) if rest.startswith(":") and port.isdigit() else None
    if text.count(":") > 1:  # a bare IPv6 address
        return text, default_port
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    return (host, int(port)) if port.isdigit() else None


def covered(host: str, existing: Iterable[str]) -> bool:
    """Whether a socket on one of ``existing`` (hosts, one port) already accepts ``host``:
    a second, more specific socket beside a wildcard one cannot be bound."""
    for other in existing:
        if other in (host, "", "*"):
            return True
        if other == "0.0.0.0" and not is_ipv6(host):
            return True
        if other == "::" and is_ipv6(host):
            return True
    return False


def conflicts(host: str, existing: Iterable[str]) -> bool:
    """Whether a socket on the wildcard ``host`` could not be bound beside ``existing``."""
    for other in existing:
        if host in ("", "*"):
            return True
        if host == "0.0.0.0" and not is_ipv6(other):
            return True
        if host == "::" and is_ipv6(other):
            return True
    return False


def unique(hosts: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(hosts))


def parse_addresses(values: Sequence[str], option: str = "--listen-address") -> tuple[str, ...]:
    """``--listen-address`` values (repeated, or comma separated) as hosts; IP addresses only,
    so the server binds exactly what the user typed (``0.0.0.0`` and ``::`` mean every
    interface of that family)."""
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            text = part.strip()
            raw = text[1:-1] if text.startswith("[") and text.endswith("]") else text
            try:
                out.append(str(ipaddress.ip_address(raw)))
            except ValueError:
                raise UsageError(
                    f"{option} {text!r}: expected an IP address such as "
                    "127.0.0.1 or ::1 (repeat the option, or separate addresses "
                    "with commas)"
                ) from None
    return unique(out)
