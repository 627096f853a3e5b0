"""Webhook channel: POST the alert as JSON (``text`` is the plain-text summary)."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request

from certsmith.errors import CertsmithError
from certsmith.services.alerts.model import Alert, Channel

TIMEOUT = 10.0


def send(channel: Channel, alert: Alert, now: dt.datetime) -> None:
    body = json.dumps(alert.payload(now)).encode()
    request = urllib.request.Request(channel.target, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "certsmith-alerts"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            response.read(65536)
    except urllib.error.HTTPError as exc:
        raise CertsmithError(f"webhook answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CertsmithError(f"webhook unreachable: {reason}") from None
