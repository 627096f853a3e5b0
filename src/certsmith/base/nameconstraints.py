"""X.509 name constraints for the local CA: which names its intermediate may certify.

Pure. RFC 5280 4.2.1.10 semantics for a DNS constraint ``test``: ``test`` itself and every name
formed by adding labels on the left (``a.test``, ``*.b.test``); an IP constraint is a network.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import NamedTuple

from certsmith.base import der
from certsmith.base.identifiers import Identifier, parse_identifier
from certsmith.errors import IdentifierError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Namespaces that can never belong to someone else on the public Internet.
DEFAULT_DNS = ("localhost", "test", "internal", "home.arpa", "lan", "local")
DEFAULT_IP: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    )
)


def parse_allowed(text: str) -> str | Network:
    """One ``--allow-domain`` value: a domain (no wildcard) or an IP network in CIDR form."""
    value = text.strip()
    if "/" in value or value.replace(".", "").isdigit() or ":" in value:
        try:
            return ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise IdentifierError(
                f"invalid --allow-domain {text!r}: not a domain or an IP network (CIDR)"
            ) from None
    if value.startswith("*.") or value.startswith("."):
        value = value.lstrip("*").lstrip(".")
    ident = parse_identifier(value)
    if "." not in ident.value and ident.value not in DEFAULT_DNS:
        raise IdentifierError(
            f"refusing --allow-domain {text!r}: a whole top-level domain is too broad; "
            "name the domain you control"
        )
    return ident.value


class Constraints(NamedTuple):
    """Permitted subtrees: DNS suffixes and IP networks (normalised, sorted, de-duplicated).

    Build with :meth:`build` or :meth:`from_der`, which normalise. (A NamedTuple, not a
    dataclass: it is defined on the start-up path of ``certsmith local``.)
    """

    dns: tuple[str, ...]
    ip: tuple[Network, ...]

    @classmethod
    def build(cls, extra: Iterable[str | Network] = ()) -> Constraints:
        dns = set(DEFAULT_DNS)
        ips: set[Network] = set(DEFAULT_IP)
        for item in extra:
            if isinstance(item, str):
                dns.add(item)
            else:
                ips.add(item)
        return cls(tuple(sorted(dns)), tuple(sorted(ips, key=lambda n: (n.version, n))))

    def permits(self, ident: Identifier) -> bool:
        if ident.is_ip:
            address = ipaddress.ip_address(ident.value)
            return any(address.version == net.version and address in net for net in self.ip)
        name = ident.value[2:] if ident.is_wildcard else ident.value
        return any(name == base or name.endswith("." + base) for base in self.dns)

    def to_der(self) -> bytes:
        """The NameConstraints extension value (permittedSubtrees only)."""
        subtrees = [der.seq(der.implicit(2, d.encode("ascii"))) for d in self.dns]
        subtrees += [
            der.seq(der.implicit(7, n.network_address.packed + n.netmask.packed)) for n in self.ip
        ]
        return der.seq(der.implicit(0, b"".join(subtrees), constructed=True))

    @classmethod
    def from_der(cls, value: bytes) -> Constraints:
        _, body, _ = der.read(value)
        dns: list[str] = []
        ips: list[Network] = []
        for t, subtrees, _raw in der.children(body):
            if t != 0xA0:  # excluded subtrees: we never write them
                continue
            for _t, subtree, _r in der.children(subtrees):
                gtag, gval, _ = der.read(subtree)
                if gtag == 0x82:
                    dns.append(gval.decode("ascii").lstrip("."))
                elif gtag == 0x87:
                    half = len(gval) // 2
                    addr = ipaddress.ip_address(gval[:half])
                    mask = ipaddress.ip_address(gval[half:])
                    prefix = bin(int(mask)).count("1")
                    ips.append(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))
        return cls(tuple(sorted(set(dns))), tuple(sorted(set(ips), key=lambda n: (n.version, n))))

    def extra(self) -> list[str]:
        """What this set permits beyond the defaults, as ``--allow-domain`` values."""
        out = [d for d in self.dns if d not in DEFAULT_DNS]
        out += [str(n) for n in self.ip if n not in DEFAULT_IP]
        return out

    def describe(self) -> str:
        return ", ".join([*self.dns, *(str(n) for n in self.ip)])
