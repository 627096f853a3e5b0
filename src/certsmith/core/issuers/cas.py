"""Well-known ACME directory URLs, by alias."""

from __future__ import annotations

import re
from urllib.parse import urlparse

from certsmith.errors import UsageError

ALIASES = {
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
    "zerossl": "https://acme.zerossl.com/v2/DV90",
    "google": "https://dv.acme-v02.api.pki.goog/directory",
    "google-staging": "https://dv.acme-v02.test-api.pki.goog/directory",
}
DEFAULT_CA = "letsencrypt"
NEEDS_EAB = {"zerossl", "google", "google-staging"}


def resolve_server(value: str | None) -> str:
    """An alias or an https directory URL -> the directory URL."""
    value = (value or DEFAULT_CA).strip()
    if value.lower() in ALIASES:
        return ALIASES[value.lower()]
    parsed = urlparse(value)
    if parsed.scheme in ("https", "http") and parsed.netloc:
        return value
    raise UsageError(
        f"unknown CA {value!r}: use a directory URL or one of {', '.join(sorted(ALIASES))}"
    )


def alias_of(url: str) -> str | None:
    for alias, known in ALIASES.items():
        if known == url:
            return alias
    return None


def server_id(url: str) -> str:
    """A directory-name-safe id for a CA directory URL (accounts/<id>/...)."""
    parsed = urlparse(url)
    raw = f"{parsed.netloc}{parsed.path}".strip("/")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw) or "ca"
