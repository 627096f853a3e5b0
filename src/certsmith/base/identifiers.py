"""Names and addresses a certificate can carry, validated and normalised once, at the edge.

Pure: no I/O. Everything past the CLI receives :class:`Identifier` values it can trust.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from certsmith.errors import IdentifierError, UsageError

MAX_IDENTIFIERS = 100
MAX_NAME = 253
MAX_LABEL = 63

_LDH = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
_CERT_NAME = re.compile(r"^[a-z0-9_][a-z0-9_.-]{0,199}$")


@dataclass(frozen=True, order=True)
class Identifier:
    """One subject alternative name: a DNS name (A-labels, lowercase) or an IP address."""

    kind: Literal["dns", "ip"]
    value: str

    def __str__(self) -> str:
        return self.value

    @property
    def is_wildcard(self) -> bool:
        return self.kind == "dns" and self.value.startswith("*.")

    @property
    def is_ip(self) -> bool:
        return self.kind == "ip"


def _to_alabel(name: str, original: str) -> str:
    if name.isascii():
        return name.lower()
    try:
        import idna

        return str(idna.encode(name, uts46=True).decode("ascii")).lower()
    except (idna.IDNAError, UnicodeError) as exc:
        raise IdentifierError(f"invalid name {original!r}: not a valid IDN") from exc


def _check_dns(name: str, original: str) -> None:
    if len(name) > MAX_NAME:
        raise IdentifierError(f"invalid name {original!r}: longer than {MAX_NAME} characters")
    labels = name.split(".")
    for label in labels:
        if not label:
            raise IdentifierError(f"invalid name {original!r}: empty label")
        if label == "*":
            raise IdentifierError(
                f"invalid name {original!r}: a wildcard is allowed only as the whole leftmost label"
            )
        if len(label) > MAX_LABEL:
            raise IdentifierError(
                f"invalid name {original!r}: label {label[:20]!r}... is longer than {MAX_LABEL}"
            )
        if not _LDH.match(label):
            raise IdentifierError(
                f"invalid name {original!r}: {label!r} may hold only letters, digits, inner '-'"
            )
    if labels[-1].isdigit():
        raise IdentifierError(f"invalid name {original!r}: the last label cannot be all digits")


def parse_identifier(text: str) -> Identifier:
    """Validate and normalise one name or IP address; raise :class:`IdentifierError` if invalid."""
    original = text
    if not text or not text.strip():
        raise IdentifierError("invalid name '': empty")
    if text != text.strip() or any(c.isspace() for c in text):
        raise IdentifierError(f"invalid name {original!r}: contains white space")
    candidate = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        pass
    else:
        return Identifier("ip", address.compressed)
    if any(c in text for c in "/\\:@?#%"):
        raise IdentifierError(f"invalid name {original!r}: not a host name or IP address")
    name = text[:-1] if text.endswith(".") and not text.endswith("..") else text
    wildcard = name.startswith("*.")
    base = name[2:] if wildcard else name
    base = _to_alabel(base, original)
    _check_dns(base, original)
    if wildcard and "." not in base and base != "localhost":
        raise IdentifierError(f"invalid name {original!r}: a wildcard needs at least two labels")
    value = f"*.{base}" if wildcard else base
    if len(value) > MAX_NAME:
        raise IdentifierError(f"invalid name {original!r}: longer than {MAX_NAME} characters")
    return Identifier("dns", value)


def parse_identifiers(
    texts: Iterable[str], *, one_certificate: bool = True
) -> tuple[Identifier, ...]:
    """Parse several names (comma-separated items allowed), drop duplicates, keep order.

    The 100-name limit is a certificate's (the CAs'), so it applies only when the names go
    into one certificate; ``get --separate`` passes ``one_certificate=False``."""
    seen: dict[Identifier, None] = {}
    for text in texts:
        parts = text.split(",") if "," in text else [text]
        for part in parts:
            seen.setdefault(parse_identifier(part), None)
    if not seen:
        raise IdentifierError("no names given")
    if one_certificate and len(seen) > MAX_IDENTIFIERS:
        raise IdentifierError(
            f"{len(seen)} names given; a certificate can carry at most {MAX_IDENTIFIERS}"
        )
    return tuple(seen)


def default_cert_name(identifier: Identifier) -> str:
    """The lineage name certsmith picks for a certificate whose first name is ``identifier``."""
    value = identifier.value
    if identifier.is_wildcard:
        value = "_." + value[2:]
    if identifier.is_ip:
        value = value.replace(":", "-")
    return value


def check_cert_name(name: str) -> str:
    """Validate a lineage name given by the user (it becomes a file and directory name)."""
    if not _CERT_NAME.match(name) or ".." in name:
        raise UsageError(
            f"invalid certificate name {name!r}: use lowercase letters, digits, '.', '-' and '_'"
        )
    return name
