"""The plain-HTTP listener's connections (:class:`RedirectConnection`): ACME HTTP-01 answers
from the webroot the solver writes, and redirects of everything else to HTTPS."""

from __future__ import annotations

import httptools

from certsmith.base.policy import ACME_CHALLENGE_PREFIX as PREFIX
from certsmith.services.proxy import http
from certsmith.services.proxy.connection import ClientConnection, Refuse
from certsmith.services.proxy.states import CLOSED, HEAD, IDLE

CHALLENGE_PREFIX = PREFIX.encode()


class RedirectConnection(ClientConnection):
    """A connection on the HTTP port: ACME HTTP-01 answers, and redirects to HTTPS."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        try:
            if self.state in (HEAD, IDLE):
                self._count_head(data)
            parser = self.parser
            if parser is None:
                parser = self.parser = httptools.HttpRequestParser(self)
            parser.feed_data(data)
        except Refuse as exc:
            self.refuse(exc.status, exc.reason)
        except httptools.HttpParserCallbackError as exc:
            self.refuse_callback_error(exc)
        except httptools.HttpParserUpgrade:
            pass  # answered in on_headers_complete; the connection closes
        except httptools.HttpParserError as exc:
            self.refuse(http.parser_error_status(str(exc)), str(exc) or "malformed request")

    def on_headers_complete(self) -> None:
        self.head_bytes = 0
        self._check_head()
        worker = self.worker
        assert self.parser is not None
        version = self.parser.get_http_version()
        method = self.parser.get_method()
        req = http.forward_request(method, self.url, version, self.headers, self.client_ip, b"http")
        close = req.body != http.NONE or not req.keep_alive or req.upgrade is not None
        target = self.url if self.url[:1] in (b"/", b"*") else http.origin_form(self.url)[1]
        path = target.split(b"?", 1)[0]
        if path.startswith(CHALLENGE_PREFIX):
            answer = worker.challenge_answer(path[len(CHALLENGE_PREFIX) :])
            if answer is None:
                response = http.simple_response(404, b"no such challenge\n", close=close)
                status = 404
            else:
                response = http.simple_response(
                    200, answer, close=close, content_type=b"text/plain"
                )
                status = 200
        else:
            site = worker.route(req.host, None)
            if site is None:
                status = 404
                response = http.error_page(
                    404, f"no site named {req.host or '(no Host)'}", close=close
                )
            else:
                status = site.redirect
                response = http.redirect(status, req.host, worker.config.https_port, target)
                if close:
                    response = response.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
        self.transport.write(response)
        worker.log_plain(self, method, self.url, version, status, req)
        if close:
            self.transport.close()
            self._enter(CLOSED)
        else:
            self._enter(IDLE)

    def on_message_complete(self) -> None:
        pass
