"""certbot's ``--staple-ocsp``, accepted by get and install: certsmith staples on its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HELP = (
    "accepted for certbot users: certsmith staples OCSP whenever the certificate names an "
    "OCSP responder, and never otherwise (Let's Encrypt's no longer do)"
)


def add_option(p: Any) -> None:
    p.add_argument("--staple-ocsp", action="store_true", help=HELP)


def note(home: Path, name: str) -> str:
    """What ``--staple-ocsp`` means for NAME's live certificate, in one line."""
    from certsmith.services.servers import staples_ocsp

    if staples_ocsp(home, name):
        return (
            f"{name}: --staple-ocsp: the certificate names an OCSP responder; 'certsmith "
            "install' staples its answers (it always does for such certificates)"
        )
    return (
        f"{name}: --staple-ocsp: nothing to staple, the certificate names no OCSP "
        "responder (Let's Encrypt's no longer do); certsmith staples only when one is named"
    )
