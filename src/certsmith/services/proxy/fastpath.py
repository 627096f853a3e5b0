"""The common exchange without a parser callback per header: bytes in, bytes out.

Most requests are a head with no body, read whole in one piece; most responses to them are a
head and a ``Content-Length`` body, read whole in one piece. For those, what the general path
(llhttp with a Python callback per header, then :func:`.http.forward_request` /
:func:`.http.forward_response`) sends on is the received bytes with a line or two cut out and a
few appended. Here that takes a handful of C-level calls instead (on this hot path the cost is
the number of Python operations, not the bytes scanned).

Safety rests on three rules:

- llhttp still validates every byte, with the same settings as the general path, in a parser
  with no callbacks (:class:`Validator`), after this module has checked that the bytes are one
  message that ends where they end.
- Only a strict subset is taken: HTTP/1.1, an origin-form target, no body framing, upgrade,
  expectation or forwarding field on requests; one ``Content-Length`` (the body whole in the
  same piece), no ``Transfer-Encoding`` and a final status on responses; no hop-by-hop field
  but ``Connection`` (``keep-alive`` or ``close``) and, on responses, ``Keep-Alive``. Anything
  else returns ``None`` and goes the general way, which decides (and refuses) as before.
- On that subset the result carries the same fields, in the same order, as the general path's
  (``tests/test_proxy_http.py`` checks it against :mod:`.http` with generated messages), so an
  upstream cannot tell which path a request took.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import httptools

from certsmith.services.proxy.http import NONE, Request, parse_host, valid_host

# Methods llhttp knows that carry no body without framing fields, and an origin-form target.
_REQUEST_LINE = re.compile(rb"(GET|HEAD|POST|PUT|DELETE|OPTIONS|PATCH) (/[^ \r\n]*) HTTP/1\.1\r\n")
# The fields that matter, found by one scan of the lowercased head (llhttp refuses white space
# before the colon, so ``\r\nname:`` is how each of them starts).
_REQUEST_FIELDS = re.compile(
    rb"\r\n(host|connection|content-length|transfer-encoding|upgrade|expect|keep-alive|te"
    rb"|trailer|proxy-connection|proxy-authenticate|proxy-authorization"
    rb"|x[-_]forwarded[-_](?:for|proto|host)|forwarded|x[-_]real[-_]ip):[ \t]*([^\r]*)"
)
_RESPONSE_FIELDS = re.compile(
    rb"\r\n(content-length|connection|keep-alive|transfer-encoding|upgrade|te|trailer"
    rb"|proxy-connection|proxy-authenticate|proxy-authorization"
    rb"|strict-transport-security):[ \t]*([^\r]*)"
)
# Final statuses whose responses have a body (llhttp checks the rest of the status line).
_STATUS = {b"%d" % code: code for code in range(200, 600) if code not in (204, 304)}
_FOLD = b" \t"

_HOSTS: dict[bytes, str] = {}  # lowercased valid Host value -> parse_host(value)


class Validator:
    """llhttp without callbacks (one per worker and direction). Only whole messages without a
    body still to come are fed, so it is always at a message boundary; after a refusal or a
    closing message it is replaced."""

    __slots__ = ("kind", "parser")

    def __init__(
        self, kind: type[httptools.HttpRequestParser | httptools.HttpResponseParser]
    ) -> None:
        self.kind = kind
        self.parser = kind(self)

    def valid(self, data: bytes) -> bool:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.parser = self.kind(self)
            return False
        return True

    def reset(self) -> None:
        self.parser = self.kind(self)


# (method, target, request)
FastRequest = tuple[bytes, bytes, Request]


class Limits(NamedTuple):
    max_head: int  # bytes
    max_line: int  # bytes in the request line
    max_fields: int


def request(
    data: bytes, client_ip: bytes, validator: Validator, limits: Limits, want_agent: bool
) -> FastRequest | None:
    """``data``, ending with an empty line, is the start of a request; if it is exactly one
    request head this path takes, within ``limits``, the request to forward, else ``None``
    (the general path, which also answers 414 and 431).

    ``client_ip`` goes into ``X-Forwarded-For``; ``want_agent`` fills in Referer and User-Agent
    (for the access log)."""
    line = _REQUEST_LINE.match(data)
    if line is None:
        return None
    line_end = line.end()
    size = len(data)
    if (
        line_end > limits.max_line
        or size > limits.max_head
        or data.find(b"\r\n\r\n") != size - 4
        or (size > 4 * limits.max_fields and data.count(b"\r\n") - 2 > limits.max_fields)
    ):
        return None  # (a field line takes 4 bytes at least: no need to count a short head)
    lower = data.lower()
    fields = _REQUEST_FIELDS.findall(lower, line_end - 2)
    if len(fields) == 1:
        name, host = fields[0]
        if name != b"host":
            return None
        keep_alive = True
        head = data[:-2]
    elif len(fields) == 2:
        found = dict(fields)
        host = found.get(b"host")
        value = found.get(b"connection")
        if host is None or value is None:
            return None
        kept = _keeps_alive(value)
        if kept is None:
            return None
        keep_alive = kept
        head = _without_lines(data[:-2], lower, (b"\r\nconnection:",))
    else:
        return None
    if not validator.valid(data):
        return None
    if not keep_alive:
        validator.reset()  # llhttp refuses anything after a closing message
    name = _HOSTS.get(host)
    if name is None:
        if not valid_host(host):
            return None  # (the general path refuses it)
        if len(_HOSTS) > 1024:
            _HOSTS.clear()
        name = _HOSTS[host] = parse_host(host)
    referer = agent = b""
    if want_agent:
        referer = _field(data, lower, b"\r\nreferer:")
        agent = _field(data, lower, b"\r\nuser-agent:")
    method, target = line.groups()
    return (
        method,
        target,
        tuple.__new__(
            Request,
            (  # (Request.__new__ is Python code)
                name,
                NONE,
                0,
                keep_alive,
                None,
                False,
                b"".join(
                    (
                        head,
                        b"X-Forwarded-For: ",
                        client_ip,
                        b"\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: ",
                        host,
                        b"\r\n\r\n",
                    )
                ),  # (lowercased, as in http)
                referer,
                agent,
            ),
        ),
    )


def _keeps_alive(connection: bytes) -> bool | None:
    """A lowercased ``Connection`` value: ``keep-alive`` True, ``close`` False; anything else
    (a list, named fields) None, for the general path."""
    value = connection.rstrip(_FOLD)
    if value == b"keep-alive":
        return True
    return False if value == b"close" else None


def _without_lines(data: bytes, lower: bytes, markers: tuple[bytes, ...]) -> bytes:
    """``data`` without the field lines ``markers`` start (``\r\nname:``, at most two, each
    once); ``lower`` is ``data``, or more of it, lowercased (same offsets)."""
    first = lower.find(markers[0])
    second = lower.find(markers[1]) if len(markers) > 1 else -1
    if first > second:
        first, second = second, first
    # The later line first, so the earlier one's offsets still hold.
    if second >= 0:
        data = data[:second] + data[lower.find(b"\r\n", second + 2) :]
    if first >= 0:
        data = data[:first] + data[lower.find(b"\r\n", first + 2) :]
    return data


def _field(data: bytes, lower: bytes, marker: bytes) -> bytes:
    at = lower.rfind(marker)  # (the last one, as the general path keeps)
    if at < 0:
        return b""
    start = at + len(marker)
    return data[start : data.find(b"\r\n", start)].lstrip(_FOLD)  # (llhttp keeps the tail)


# (status, bytes for the client, body size, upstream connection reusable)
FastResponse = tuple[int, bytes, int, bool]


def tail(hsts: bytes | None, keep_alive: bool) -> bytes:
    """What ends the head sent to the client (``response``'s ``tail``; precomputed per site)."""
    return b"".join(
        (
            b"\r\nStrict-Transport-Security: " + hsts if hsts is not None else b"",
            b"\r\n\r\n" if keep_alive else b"\r\nConnection: close\r\n\r\n",
        )
    )


def response(data: bytes, validator: Validator, tail: bytes) -> FastResponse | None:
    """``data`` starts a response to a request that was neither HEAD nor an upgrade, from an
    HTTP/1.1 client. If it is one whole response with a ``Content-Length`` body: what to send
    the client, its head ending with ``tail`` (see :func:`tail`); else ``None``."""
    status = _STATUS.get(data[9:12])
    end = data.find(b"\r\n\r\n")
    if status is None or end < 0 or data[:9] != b"HTTP/1.1 ":
        return None
    lower = data[: end + 2].lower()
    fields = _RESPONSE_FIELDS.findall(lower)
    found = dict(fields)
    length = found.get(b"content-length")
    if length is None or len(found) != len(fields):
        return None  # no Content-Length, or some field twice
    reusable = True
    head = data[:end]
    if len(found) > 1:
        value = found.get(b"connection")
        if value is not None:
            kept = _keeps_alive(value)
            if kept is None:
                return None
            reusable = kept
        if len(found) != 1 + (value is not None) + (b"keep-alive" in found):
            return None
        head = _without_lines(head, lower, (b"\r\nconnection:", b"\r\nkeep-alive:"))
    size = len(data) - end - 4
    # (the length in plain decimal, as the body has it; "012" or "+12" go the general way)
    if length.rstrip(_FOLD) != b"%d" % size or not validator.valid(data):
        return None
    if not reusable:
        validator.reset()
    return status, b"".join((head, tail, data[end + 4 :])), size, reusable
