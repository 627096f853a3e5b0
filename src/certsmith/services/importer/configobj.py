"""The subset of the configobj format certbot writes in ``renewal/<name>.conf`` (pure).

``key = value`` lines, ``[section]`` and ``[[subsection]]`` headers, ``#`` comments, values
optionally quoted, and comma lists (``a, b,``: a trailing comma makes a one-item list).
"""

from __future__ import annotations

from typing import Any

from certsmith.errors import UsageError

Value = str | list[str]


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _value(raw: str) -> Value:
    raw = raw.strip()
    if raw and raw[0] in "'\"" and raw.count(raw[0]) == 2 and raw.endswith(raw[0]):
        return raw[1:-1]
    if "," in raw:
        return [_unquote(p) for p in raw.split(",") if p.strip()]
    return raw


def parse(text: str, where: str = "config") -> dict[str, Any]:
    """Nested dicts: top-level keys, then one dict per section (and subsection)."""
    root: dict[str, Any] = {}
    section: dict[str, Any] = root
    parent: dict[str, Any] = root
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("[[") and stripped.endswith("]]"):
            name = stripped[2:-2].strip()
            section = parent.setdefault(name, {})
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            name = stripped[1:-1].strip()
            parent = section = root.setdefault(name, {})
            continue
        key, sep, raw = stripped.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{where}, line {number}: cannot parse {stripped[:60]!r}")
        section[_unquote(key)] = _value(raw)
    return root


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def as_bool(value: Any, default: bool = False) -> bool:
    if value is None:
        return default
    return str(value).strip().lower() in ("true", "yes", "on", "1")
