"""Checked, typed setting values for the proxy: every value of the config file and of the
command line goes through one of these before anything starts.

Why a module of its own: TOML gives typed values (``redirect = "abc"``, ``names = 5``,
``header_timeout = nan``) and argv gives strings, and both must end in the same one line that
names the setting and says what is expected, never a ``TypeError`` deep inside the server or a
NaN that silently disables a timeout. Each function takes the *label* the message starts with
(``proxy.toml: site 2 (app.test): redirect = "abc"``, or ``--redirect abc``), built with
:func:`at` or :func:`option`.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import re
from collections.abc import Collection, Iterable
from typing import Any

from certsmith.errors import UsageError

_INTEGER = re.compile(r"[+-]?[0-9]+")


def shown(value: object) -> str:
    """A value as the TOML file spells it (strings quoted, ``true``, ``nan``, ``[...]``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{...}"
    if isinstance(value, list):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    return str(value)


def at(prefix: str, key: str, value: object) -> str:
    """The label of a config-file value: ``<prefix>key = value``."""
    return f"{prefix}{key} = {shown(value)}"


def option(name: str, value: object) -> str:
    """The label of a command-line value: ``--name value``."""
    return f"{name} {value}"


def _fail(label: str, expected: str) -> UsageError:
    return UsageError(f"{label}: expected {expected}")


def from_text(value: object) -> object:
    """A command-line string that spells a number, as that number (others unchanged, for the
    check to refuse): argv has only strings, TOML has types and ``"80"`` is not a port there."""
    if isinstance(value, str):
        stripped = value.strip()
        if _INTEGER.fullmatch(stripped):
            return int(stripped)
        try:
            return float(stripped)
        except ValueError:
            return value
    return value


def whole(
    label: str, value: object, low: int, high: int, what: str = "a whole number", note: str = ""
) -> int:
    """An integer in ``[low, high]``; strings, booleans and floats refused."""
    expected = f"{what} {low}-{high}{note}"
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(label, expected)
    return value


def seconds(label: str, value: object, high: float) -> float:
    """A duration: a finite number above 0, at most ``high`` (NaN and infinity would disable
    the deadline it sets, e.g. the slow-loris cut-off)."""
    expected = f"a number of seconds above 0 and at most {high:g}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(label, expected)
    number = float(value)
    if not math.isfinite(number) or not 0 < number <= high:
        raise _fail(label, expected)
    return number


def port(label: str, value: object) -> int:
    return whole(label, value, 1, 65535, "a port number")


def choice(label: str, value: object, options: Collection[Any]) -> Any:
    """One of ``options``, of the same type (``true`` is not 1, ``"308"`` is not 308)."""
    for known in options:
        if value == known and type(value) is type(known):
            return known
    names = [str(o) for o in options]
    listed = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
    raise _fail(label, listed)


def flag(label: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _fail(label, "true or false")
    return value


def text(label: str, value: object, what: str = "a string") -> str:
    """A non-empty string without control characters."""
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        raise _fail(label, what)
    return value


def email(label: str, value: object) -> str:
    address = text(label, value, "an e-mail address")
    local, at_sign, domain = address.partition("@")
    if not at_sign or not local or "." not in domain or any(c in address for c in " <>,;"):
        raise _fail(label, "an e-mail address")
    return address


def listen_address(label: str, value: object) -> str:
    """``""`` (all addresses) or one IP address, brackets allowed around IPv6. A host name is
    refused: it could resolve to another address (or family) than the one meant."""
    expected = 'an IP address such as 127.0.0.1 or ::1 (or "" for all addresses)'
    if not isinstance(value, str):
        raise _fail(label, expected)
    stripped = value.strip()
    if not stripped:
        return ""
    bare = stripped[1:-1] if stripped.startswith("[") and stripped.endswith("]") else stripped
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        raise _fail(label, expected) from None


def names(label: str, value: object) -> list[str]:
    """A site's names: a list of strings (one string is a list of one)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _fail(label, 'a list of names, e.g. ["example.org", "www.example.org"]')
    return list(value)


def refuse_unknown(
    where: str, keys: Iterable[str], known: Collection[str], elsewhere: dict[str, str] | None = None
) -> None:
    """One line for the first unknown key: where it belongs, or the closest known key."""
    for key in keys:
        if key in known:
            continue
        hint = ""
        if elsewhere and key in elsewhere:
            hint = f"; it belongs in {elsewhere[key]}"
        else:
            close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
            hint = (
                f"; did you mean {close[0]}?" if close else f"; known: {', '.join(sorted(known))}"
            )
        raise UsageError(f"{where}unknown setting {shown(key)}{hint}")
