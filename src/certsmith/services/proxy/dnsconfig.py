"""The DNS-01 settings of the proxy's sites: a site's ``[site.dns]`` table over the top-level
``[dns]`` defaults, checked into a :class:`~certsmith.base.solverspec.DnsSpec`.

Why a module of its own: the tables have their own keys (the spec's fields), their own rules (a
provider's required keys, keys another provider does not use) and relative paths that mean the
TOML file's directory, and every error is still one line naming the table and the key::

    [dns]                                   # defaults for every dns-01 site
    provider = "rfc2136"
    tsig_key_file = "keys/acme.key"         # relative: next to the TOML file

    [[site]]
    names = ["*.example.org", "example.org"]
    to = "127.0.0.1:8080"
    challenge = "dns-01"
    [site.dns]                              # optional: its keys override [dns]
    server = "ns1.example.org:53"

A site that names another ``provider`` than ``[dns]`` inherits none of the defaults'
provider-specific keys (``server``, ``tsig_key_file``, ``credentials``, ``hook``), only the
common ones (``alias``, ``resolvers``, ``timeout``, ``ttl``). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from certsmith.base.solverspec import DnsSpec
from certsmith.errors import UsageError
from certsmith.services.proxy import values
from certsmith.services.proxy.values import at

PROVIDERS = 'rfc2136, lexicon:PROVIDER (e.g. "lexicon:cloudflare") or hook'
MAX_TIMEOUT = 86400  # seconds: a day, as the proxy's other timeouts
MAX_TTL = 86399
# The keys each kind of provider uses (the others are refused, not silently ignored).
OWN_KEYS = {"rfc2136": ("server", "tsig_key_file"), "lexicon": ("credentials",), "hook": ("hook",)}
PROVIDER_KEYS = frozenset(k for keys in OWN_KEYS.values() for k in keys)
PATHS = ("tsig_key_file", "credentials")


def _provider(label: str, value: object) -> str:
    provider = values.text(label, value, PROVIDERS)
    kind, colon, name = provider.partition(":")
    if (
        kind not in OWN_KEYS
        or (kind == "lexicon") != bool(colon and name)
        or (kind == "lexicon" and not all(c.isalnum() or c in "_-" for c in name))
    ):
        raise UsageError(f"{label}: expected {PROVIDERS}")
    return provider


def _alias(label: str, value: object) -> str:
    alias = values.text(label, value, 'a DNS zone, e.g. "acme.example.net"')
    alias = alias.strip().strip(".").lower()
    if not alias or not all(c.isascii() and (c.isalnum() or c in "-._") for c in alias):
        raise UsageError(f'{label}: expected a DNS zone, e.g. "acme.example.net"')
    return alias


def _resolvers(label: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    expected = 'a list of resolvers, e.g. ["127.0.0.1:5353"]'
    if not isinstance(value, list) or not value:
        raise UsageError(f"{label}: expected {expected}")
    return tuple(values.text(label, v, expected) for v in value)


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "provider": _provider,
    "server": lambda label, v: values.text(
        label, v, "HOST[:PORT] of the server taking RFC 2136 updates"
    ),
    "tsig_key_file": lambda label, v: values.text(
        label, v, "a file (the TSIG key, as tsig-keygen writes it)"
    ),
    "credentials": lambda label, v: values.text(label, v, "a file of KEY=VALUE lines"),
    "hook": lambda label, v: values.text(label, v, "a command"),
    "alias": _alias,
    "resolvers": _resolvers,
    "timeout": lambda label, v: values.whole(label, v, 1, MAX_TIMEOUT, "a number of seconds"),
    "ttl": lambda label, v: values.whole(label, v, 1, MAX_TTL, "a TTL in seconds"),
}
KEYS = tuple(_CHECKS)


class Table:
    """One checked ``[dns]`` or ``[site.dns]`` table: typed values and where each came from."""

    def __init__(self, prefix: str, raw: dict[str, Any], checked: dict[str, Any]) -> None:
        self.prefix = prefix  # "proxy.toml: [dns] " -- starts the line of a key from here
        self.raw = raw
        self.values = checked


def table(
    where: str, name: str, raw: object, base: Path, elsewhere: dict[str, str] | None = None
) -> Table:
    """The table ``name`` (``[dns]``, ``[site.dns]``) at ``where``: each key checked, relative
    paths made absolute against ``base`` (the TOML file's directory)."""
    if not isinstance(raw, dict):
        raise UsageError(f"{at(where, 'dns', raw)}: expected a {name} table with provider = ...")
    prefix = f"{where}{name} "
    values.refuse_unknown(prefix, raw, KEYS, elsewhere)
    checked = {key: _CHECKS[key](at(prefix, key, value), value) for key, value in raw.items()}
    for key in PATHS:
        if key in checked:
            checked[key] = str(base / Path(checked[key]).expanduser())
    return Table(prefix, raw, checked)


EMPTY = Table("", {}, {})


def spec(where: str, defaults: Table, own: Table | None) -> DnsSpec:
    """The site's DNS-01 spec: its own table's keys over the defaults (see the module
    docstring); one line naming what is missing or not used."""
    own = own if own is not None else Table(f"{where}[site.dns] ", {}, {})
    inherited = dict(defaults.values)
    if "provider" in own.values and own.values["provider"] != inherited.get("provider"):
        inherited = {k: v for k, v in inherited.items() if k not in PROVIDER_KEYS}
    merged = {**inherited, **own.values}

    def origin(key: str) -> Table:
        return own if key in own.values else defaults

    if "provider" not in merged:
        raise UsageError(
            f'{where}challenge = "dns-01" needs a DNS provider: provider = '
            f"{PROVIDERS}, in [site.dns] or in a top-level [dns] table"
        )
    provider = merged["provider"]
    kind = provider.partition(":")[0]
    label = at(origin("provider").prefix, "provider", provider)
    for key in sorted(PROVIDER_KEYS - set(OWN_KEYS[kind]), key=KEYS.index):
        if key in merged:
            from_table = origin(key)
            users = [k for k, keys in OWN_KEYS.items() if key in keys]
            raise UsageError(
                f"{at(from_table.prefix, key, from_table.raw[key])}: not used by "
                f'provider = "{provider}" (only by {", ".join(users)})'
            )
    if kind == "rfc2136" and "tsig_key_file" not in merged:
        raise UsageError(
            f'{label} needs tsig_key_file = "FILE" (the TSIG key, as tsig-keygen writes it)'
        )
    if kind == "hook" and "hook" not in merged:
        raise UsageError(f'{label} needs hook = "COMMAND"')
    try:
        return DnsSpec(**merged)
    except UsageError as exc:  # (what the checks above let through)
        raise UsageError(f"{where}{exc}") from None
