"""Real receivers for alerts: an SMTP server (aiosmtpd) and an HTTP webhook endpoint
(http.server), both in threads on 127.0.0.1."""

from __future__ import annotations

import email
import email.message
import email.policy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.net import LOOPBACK, free_port


class _Collector:
    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, email.message.EmailMessage]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = (
            envelope.content
            if isinstance(envelope.content, bytes)
            else str(envelope.content).encode()
        )
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        with self.lock:
            self.messages.append((envelope, msg))  # type: ignore[arg-type]
        return "250 OK"


class SmtpReceiver:
    def __init__(self) -> None:
        self.port = free_port()
        self._collector = _Collector()
        self._controller = Controller(self._collector, hostname=LOOPBACK, port=self.port)

    def start(self) -> Self:
        self._controller.start()  # returns once the server answers
        return self

    @property
    def messages(self) -> list[email.message.EmailMessage]:
        with self._collector.lock:
            return [m for _e, m in self._collector.messages]

    def recipients(self) -> list[list[str]]:
        with self._collector.lock:
            return [list(e.rcpt_tos) for e, _m in self._collector.messages]

    def close(self) -> None:
        self._controller.stop()


class WebhookReceiver:
    """Collects JSON POST bodies; answers ``status``."""

    def __init__(self, port: int | None = None, status: int = 200) -> None:
        self.port = port or free_port()
        self.payloads: list[dict[str, Any]] = []
        received = self.payloads
        answer = status

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                received.append(
                    {"content_type": self.headers.get("Content-Type"), **json.loads(body)}
                )
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/hook"

    def start(self) -> Self:
        self._thread.start()  # the socket already listens (bound in the constructor)
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
