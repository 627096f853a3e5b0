"""Command channel: run a command with the alert in its environment and as JSON on stdin."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess

from certsmith.errors import CertsmithError
from certsmith.services.alerts.model import Alert, Channel

TIMEOUT = 60.0


def send(channel: Channel, alert: Alert, now: dt.datetime) -> None:
    env = dict(os.environ)
    env.update(
        {
            "CERTSMITH_ALERT_EVENT": alert.kind,
            "CERTSMITH_ALERT_NAME": alert.name,
            "CERTSMITH_ALERT_SEVERITY": alert.severity,
            "CERTSMITH_ALERT_SUBJECT": alert.subject,
            "CERTSMITH_ALERT_TEXT": alert.text,
        }
    )
    try:
        proc = subprocess.run(
            channel.target,
            shell=True,
            env=env,
            capture_output=True,
            input=json.dumps(alert.payload(now)).encode(),
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CertsmithError(f"alert command timed out after {TIMEOUT:.0f}s") from None
    except OSError as exc:
        raise CertsmithError(f"cannot run alert command: {exc.strerror}") from None
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise CertsmithError(f"alert command exited {proc.returncode}: {tail[0]}")
