"""Webhook channel: POST the alert as JSON (``text`` is the plain-text summary)."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import socket
import urllib.error
import urllib.request
from typing import Any

from certsmith.base.deadline import Deadline, watch
from certsmith.errors import CertsmithError
from certsmith.services.alerts.model import Alert, Channel

TIMEOUT = 10.0  # per read; the whole delivery is bounded by base.deadline


def _watched(cls: type[http.client.HTTPConnection]) -> type[http.client.HTTPConnection]:
    """``cls`` with its socket under the current deadline from the moment it connects."""

    class Watched(cls):  # type: ignore[valid-type,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            create = self._create_connection  # type: ignore[has-type]

            def connect(*a: Any, **k: Any) -> socket.socket:
                sock: socket.socket = create(*a, **k)
                watch(sock)
                return sock

            self._create_connection = connect

    return Watched


class _Http(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_watched(http.client.HTTPConnection), req)


class _Https(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_watched(http.client.HTTPSConnection), req, context=self._context)  # type: ignore[attr-defined]


def send(channel: Channel, alert: Alert, now: dt.datetime) -> None:
    body = json.dumps(alert.payload(now)).encode()
    request = urllib.request.Request(
        channel.target,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "certsmith-alerts"},
    )
    opener = urllib.request.build_opener(_Http, _Https)
    with Deadline() as deadline:
        try:
            with opener.open(request, timeout=TIMEOUT) as response:
                response.read(65536)
        except urllib.error.HTTPError as exc:
            raise CertsmithError(f"webhook answered {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            if deadline.expired:
                raise CertsmithError(
                    f"webhook sent no complete answer within {deadline.seconds:g} s"
                ) from None
            reason = getattr(exc, "reason", exc)
            raise CertsmithError(f"webhook unreachable: {reason}") from None
