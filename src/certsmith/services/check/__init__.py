"""``certsmith check``: inspect what a live TLS endpoint presents (any server)."""

from __future__ import annotations

import datetime as dt
import ssl
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryptography import x509

from certsmith.errors import UsageError
from certsmith.services.check.probe import observe
from certsmith.services.check.target import Target, parse_target
from certsmith.services.check.verdict import Report, Status, evaluate

__all__ = ["Report", "Status", "Target", "check", "load_roots", "parse_target"]


def load_roots(ca_file: str | None) -> list[x509.Certificate]:
    """Trust anchors: ``ca_file`` if given, else the system store (SSL_CERT_FILE honoured)."""
    if ca_file:
        path = Path(ca_file)
    else:
        paths = ssl.get_default_verify_paths()
        candidates = [paths.cafile, paths.openssl_cafile]
        path = next((Path(p) for p in candidates if p and Path(p).is_file()), Path(""))
        if not path.name:
            return []
    try:
        with warnings.catch_warnings():
            # Some system roots have non-positive serials; still usable as anchors.
            warnings.simplefilter("ignore")
            roots = x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise UsageError(f"{path} holds no PEM certificates ({exc})") from exc
    return roots


def check(
    targets: Sequence[Target],
    *,
    roots: Sequence[x509.Certificate],
    warn_days: float,
    crit_days: float,
    expected: Sequence[str | None] | None = None,
    timeout: float = 10.0,
) -> list[Report]:
    """Probe every target (concurrently) and judge each."""
    expect = list(expected) if expected is not None else [None] * len(targets)
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(targets)))) as pool:
        observations = list(pool.map(lambda t: observe(t, timeout), targets))
    now = dt.datetime.now(dt.UTC)
    return [
        evaluate(
            t, o, roots=roots, now=now, warn_days=warn_days, crit_days=crit_days, expected_serial=e
        )
        for t, o, e in zip(targets, observations, expect, strict=True)
    ]
