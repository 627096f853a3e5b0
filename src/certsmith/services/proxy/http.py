"""HTTP/1.1 framing decisions for the proxy, sans I/O: bytes and header lists in, decisions out.

httptools (llhttp) tokenises the messages and already refuses most malformed input; the rules
that keep a front-end and its upstream agreeing on where a request ends (RFC 9112 section 6 and
11.2, "request smuggling") are checked again here, independently of the parser:

- ``Content-Length`` together with ``Transfer-Encoding``: 400.
- more than one ``Content-Length`` (even equal ones), or one that is not plain digits: 400.
- two ``Transfer-Encoding`` headers: 400; one other than exactly ``chunked``: 501 (we never
  forward an encoding the upstream might read differently).
- obsolete line folding (a header line starting with white space): 400.
- HTTP/1.1 without exactly one ``Host``: 400.
- oversized heads: 431 (headers, checked by the server as bytes arrive) / 414 (request line).
- a ``Host`` that is not a host name, IPv4 or [IPv6] address with an optional numeric port:
  400, before it is used to route, redirect or forward (``localhost:@evil.example``,
  ``x/?.app.test``, non-ASCII bytes).

Absolute-form targets (``GET https://host/path``, RFC 9112 section 3.2.2) are accepted: the
upstream gets the origin form (``/path``) and the target's authority as ``Host``, which is
also what routes the request.

The request forwarded upstream is rebuilt from the parsed pieces, never copied byte for byte:
hop-by-hop headers (and those the client's ``Connection`` names, but never ``Host``) are removed,
and ``X-Forwarded-For``/``-Proto``/``-Host`` are set by us (the client's own are dropped, also
spelt with underscores, which some frameworks read as the same header: anyone can send them);
``X-Forwarded-Host`` is the Host value, port included, in lowercase.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

Headers = Sequence[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
FORWARDED = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded", b"x-real-ip"}
)
_MAX_LENGTH_DIGITS = 18  # < 2**63

REASONS = {
    100: "Continue",
    101: "Switching Protocols",
    200: "OK",
    301: "Moved Permanently",
    302: "Found",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    404: "Not Found",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    417: "Expectation Failed",
    421: "Misdirected Request",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}

# Body framing of a message.
NONE = 0  # no body
LENGTH = 1  # Content-Length bytes
CHUNKED = 2  # chunked transfer coding
UNTIL_CLOSE = 3  # a response delimited by the upstream closing the connection


class HttpError(Exception):
    """A request we refuse: ``status`` and a short reason for the page and the log."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Request(NamedTuple):
    """What the proxy needs to know about one request, and the head to send upstream."""

    host: str  # lowercase, without port
    body: int  # NONE | LENGTH | CHUNKED
    length: int
    keep_alive: bool
    upgrade: bytes | None  # the Upgrade header when the client asks for a protocol switch
    expect_continue: bool
    head: bytes  # the request line and headers for the upstream
    referer: bytes
    user_agent: bytes


class Response(NamedTuple):
    head: bytes  # for the client
    body: int  # NONE | LENGTH | CHUNKED | UNTIL_CLOSE, as the upstream frames it
    to_client: int  # how we frame it to the client: NONE | LENGTH | CHUNKED | UNTIL_CLOSE
    keep_alive: bool  # the client connection stays open after this response
    upstream_reusable: bool


def _connection_tokens(value: bytes) -> set[bytes]:
    return {t.strip().lower() for t in value.split(b",") if t.strip()}


def parse_host(value: bytes) -> str:
    """``Host`` header value -> lowercase host without port (``[::1]:443`` -> ``::1``)."""
    text = value.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    if text.count(":") == 1:
        text = text.partition(":")[0]
    return text.rstrip(".")


# A Host value (RFC 9110 section 7.2: uri-host [":" port]): a name of letters, digits, "-" and
# "_" in dot-separated labels (a trailing dot allowed), an IPv4 address, or an [IPv6] literal.
_HOST_VALUE = re.compile(
    rb"(?:[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?|\[[0-9a-f:.]+\])(?::[0-9]{0,5})?\Z", re.I
)


def valid_host(value: bytes) -> bool:
    """``value`` (a Host header or a target's authority) names a host, and nothing else."""
    return not value or _HOST_VALUE.match(value) is not None


_ABSOLUTE = re.compile(rb"https?://([^/?#]*)([^#]*)\Z", re.I)


def origin_form(target: bytes) -> tuple[bytes | None, bytes]:
    """A request target -> (the authority of an absolute-form one, else None; the target in
    origin form, ``/path?query``). Raises :class:`HttpError` for any other form."""
    if target[:1] == b"/":
        return None, target
    found = _ABSOLUTE.match(target)
    if found is None or not found.group(1) or not valid_host(found.group(1)):
        raise HttpError(400, "request target must be a path or an http(s) URL")
    path = found.group(2)
    return found.group(1), path if path[:1] == b"/" else b"/" + path


def check_length(value: bytes) -> int:
    if not value or not value.isdigit() or len(value) > _MAX_LENGTH_DIGITS:
        raise HttpError(400, "invalid Content-Length")
    return int(value)


_HOST, _LENGTH, _CODING, _CONNECTION, _UPGRADE, _EXPECT, _REFERER, _AGENT = range(8)
_SPECIAL = {
    b"host": _HOST,
    b"content-length": _LENGTH,
    b"transfer-encoding": _CODING,
    b"connection": _CONNECTION,
    b"upgrade": _UPGRADE,
    b"expect": _EXPECT,
    b"referer": _REFERER,
    b"user-agent": _AGENT,
}
_DROP_REQUEST = HOP_BY_HOP | FORWARDED


def forward_request(
    method: bytes,
    target: bytes,
    version: str,
    headers: Headers,
    client_ip: str,
    proto: bytes = b"https",
) -> Request:
    """Check a parsed request and build the head for the upstream, or raise :class:`HttpError`.

    ``headers`` are (name, value) pairs as received (names in any case)."""
    if version != "1.1" and version != "1.0":
        raise HttpError(505 if version.startswith("2") else 400, f"HTTP/{version} request")
    authority = None
    if target[:1] != b"/" and not (method == b"OPTIONS" and target == b"*"):
        authority, target = origin_form(target)
    host: bytes | None = None
    content_length: bytes | None = None
    transfer_encoding: bytes | None = None
    connection = upgrade = None
    expect_continue = False
    referer = user_agent = b""
    out = [method, b" ", target, b" HTTP/1.1\r\n"]
    special = _SPECIAL.get
    for name, value in headers:
        lname = name.lower()
        kind = special(lname)
        if kind is None:
            if lname not in _DROP_REQUEST and not (
                b"_" in lname and lname.replace(b"_", b"-") in FORWARDED
            ):
                out += (name, b": ", value, b"\r\n")
            continue
        if kind == _HOST:
            if host is not None:
                raise HttpError(400, "more than one Host header")
            if authority is not None:
                value = authority  # (RFC 9112 section 3.2.2: the target's authority wins)
            elif not valid_host(value):
                raise HttpError(400, "invalid Host header")
            host = value
            out += (name, b": ", value, b"\r\n")
        elif kind == _LENGTH:
            if content_length is not None:
                raise HttpError(400, "more than one Content-Length header")
            content_length = value
        elif kind == _CODING:
            if transfer_encoding is not None:
                raise HttpError(400, "more than one Transfer-Encoding header")
            transfer_encoding = value
        elif kind == _CONNECTION:
            connection = value if connection is None else connection + b"," + value
        elif kind == _UPGRADE:
            upgrade = value
        elif kind == _EXPECT:
            if value.strip().lower() != b"100-continue":
                raise HttpError(417, "unsupported Expect")
            expect_continue = True
        else:
            if kind == _REFERER:
                referer = value
            else:
                user_agent = value
            out += (name, b": ", value, b"\r\n")
    if host is None and version == "1.1":
        raise HttpError(400, "no Host header")
    if connection is None:
        keep_alive = version == "1.1"
    else:
        tokens = _connection_tokens(connection)
        keep_alive = b"close" not in tokens if version == "1.1" else b"keep-alive" in tokens
        if upgrade is not None and b"upgrade" not in tokens:
            upgrade = None  # an Upgrade header that Connection does not name is not a request
        named = tokens - {b"close", b"keep-alive", b"upgrade", b"host"}
        if named:  # the client declared more hop-by-hop headers: drop them too
            out = _without(out, named)
    body, length = NONE, 0
    if transfer_encoding is not None:
        if content_length is not None:
            raise HttpError(400, "both Content-Length and Transfer-Encoding")
        if transfer_encoding.strip().lower() != b"chunked":
            raise HttpError(501, "unsupported Transfer-Encoding (only chunked)")
        body = CHUNKED
        out.append(b"Transfer-Encoding: chunked\r\n")
    elif content_length is not None:
        length = check_length(content_length.strip())
        if length:
            body = LENGTH
            out += (b"Content-Length: ", content_length.strip(), b"\r\n")
    if upgrade is not None:
        if connection is None:
            upgrade = None
        else:
            out += (b"Connection: upgrade\r\nUpgrade: ", upgrade, b"\r\n")
    out += (b"X-Forwarded-For: ", client_ip.encode(), b"\r\nX-Forwarded-Proto: ", proto, b"\r\n")
    if host is not None:
        out += (b"X-Forwarded-Host: ", host.lower(), b"\r\n\r\n")  # (lowercase, as nginx's $host)
    else:
        out.append(b"\r\n")
    head = b"".join(out)
    if (
        head.count(b"\n") != head.count(b"\r\n")
        or b"\r\n " in head
        or b"\r\n\t" in head
        or head.count(b"\r") != head.count(b"\r\n")
    ):
        # Obsolete line folding (a lenient parser keeps the line break in the value) or a
        # stray CR or LF: the upstream could see another header there.
        raise HttpError(400, "obsolete line folding or a line break in a header")
    return Request(
        parse_host(host) if host is not None else "",
        body,
        length,
        keep_alive,
        upgrade,
        expect_continue and body != NONE,
        head,
        referer,
        user_agent,
    )


def _without(out: list[bytes], names: set[bytes]) -> list[bytes]:
    """``out`` (name, ": ", value, CRLF runs after the request line) minus headers in
    ``names``."""
    kept = out[:4]
    for i in range(4, len(out), 4):
        if out[i].lower() not in names:
            kept += out[i : i + 4]
    return kept


_HOP_LINE = re.compile(
    rb"\r\n(?:connection|keep-alive|proxy-connection|te|trailer|transfer-encoding|upgrade"
    rb"|proxy-authenticate|proxy-authorization)[ \t]*:[^\r]*",
    re.I,
)
_STS_LINE = re.compile(rb"\r\nstrict-transport-security[ \t]*:[^\r]*", re.I)


# The headers forward_response must look at, found in one scan (name, value).
_NOTABLE = re.compile(
    rb"\r\n(content-length|transfer-encoding|connection|keep-alive|proxy-connection|te|trailer"
    rb"|upgrade|proxy-authenticate|proxy-authorization|strict-transport-security)[ \t]*:"
    rb"[ \t]*([^\r]*)",
    re.I,
)


def forward_response(
    head: bytes,
    status: int,
    *,
    head_request: bool,
    request_keep_alive: bool,
    client_version: str,
    upstream_keep_alive: bool,
    hsts: bytes | None,
    upgrade: bool = False,
) -> Response:
    """The head to send the client for an upstream response head (raw bytes, ending with the
    empty line, as llhttp validated them), and how to frame the body.

    Works on the bytes with one C-level scan instead of a Python loop over every header: this
    is the per-request hot path. Headers pass through in order; hop-by-hop ones (and those the
    upstream's ``Connection`` names) are dropped."""
    core = head[:-4]  # without the blank line; every header now starts with CRLF
    if not core.startswith(b"HTTP/1.1 "):
        core = b"HTTP/1.1" + core[8:]
    chunked = False
    length = None
    tokens: set[bytes] = set()
    hop = sts = False
    upgrade_to = []
    for name, value in _NOTABLE.findall(core):
        lname = name.lower()
        if lname == b"content-length":
            value = value.strip()
            if length is not None and value != length:
                raise HttpError(502, "upstream sent conflicting Content-Length headers")
            length = value
        elif lname == b"strict-transport-security":
            sts = True
        else:
            hop = True
            if lname == b"transfer-encoding":
                chunked = value.strip().lower().endswith(b"chunked")
            elif lname == b"connection":
                tokens |= _connection_tokens(value)
            elif lname == b"upgrade":
                upgrade_to.append(value.strip())
    if hop:
        core = _HOP_LINE.sub(b"", core)
        for token in tokens - {b"close", b"keep-alive", b"upgrade"}:
            if token.replace(b"-", b"").isalnum():
                core = re.sub(
                    rb"\r\n" + re.escape(token) + rb"[ \t]*:[^\r]*", b"", core, flags=re.I
                )
    extra = []
    if upgrade and status == 101:
        extra.append(b"Connection: upgrade\r\n")
        extra += [b"Upgrade: " + v + b"\r\n" for v in upgrade_to]
        return Response(core + b"\r\n" + b"".join(extra) + b"\r\n", NONE, NONE, False, False)
    if hsts is not None:
        if sts:
            core = _STS_LINE.sub(b"", core)
        extra.append(b"Strict-Transport-Security: " + hsts + b"\r\n")
    no_body = head_request or status in (204, 304) or 100 <= status < 200
    if chunked:
        body = CHUNKED
    elif length is not None:
        body = LENGTH
    elif no_body:
        body = NONE
    else:
        body = UNTIL_CLOSE
    keep_alive = request_keep_alive
    upstream_reusable = upstream_keep_alive and body != UNTIL_CLOSE and b"close" not in tokens
    if no_body:
        to_client = NONE
        if head_request and chunked:
            extra.append(b"Transfer-Encoding: chunked\r\n")
    elif length is not None and not chunked:
        to_client = LENGTH
    elif client_version == "1.1":
        to_client = CHUNKED
        extra.append(b"Transfer-Encoding: chunked\r\n")
    else:  # an HTTP/1.0 client cannot read chunks: the end of the body is the end of the line
        to_client = UNTIL_CLOSE
        keep_alive = False
    if not keep_alive:
        extra.append(b"Connection: close\r\n")
    elif client_version == "1.0":
        extra.append(b"Connection: keep-alive\r\n")
    if extra:
        return Response(
            core + b"\r\n" + b"".join(extra) + b"\r\n",
            body,
            to_client,
            keep_alive,
            upstream_reusable,
        )
    return Response(core + b"\r\n\r\n", body, to_client, keep_alive, upstream_reusable)


def simple_response(
    status: int,
    body: bytes = b"",
    *,
    close: bool = False,
    headers: Sequence[tuple[bytes, bytes]] = (),
    content_type: bytes = b"text/plain; charset=utf-8",
) -> bytes:
    """A complete small response the proxy writes itself (errors, redirects, challenges)."""
    out = [
        b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, "").encode()),
        b"Server: certsmith\r\n",
    ]
    for name, value in headers:
        out += (name, b": ", value, b"\r\n")
    if body:
        out += (b"Content-Type: ", content_type, b"\r\n")
    out.append(b"Content-Length: %d\r\n" % len(body))
    if close:
        out.append(b"Connection: close\r\n")
    out += (b"\r\n", body)
    return b"".join(out)


def error_page(
    status: int, detail: str = "", *, close: bool = False, extra: Sequence[tuple[bytes, bytes]] = ()
) -> bytes:
    """A short HTML page for an error the proxy itself answers (502, 504, 400, ...)."""
    title = f"{status} {REASONS.get(status, '')}".strip()
    text = detail.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    body = (
        f"<!doctype html><title>{title}</title><h1>{title}</h1>"
        f"<p>{text}</p><hr><p>certsmith proxy</p>\n"
    ).encode()
    return simple_response(
        status, body, close=close, headers=extra, content_type=b"text/html; charset=utf-8"
    )


def redirect(status: int, host: str, port: int, target: bytes) -> bytes:
    """The HTTP -> HTTPS redirect (``Location`` keeps the path and query)."""
    shown = f"[{host}]" if ":" in host else host
    if port != 443:
        shown += f":{port}"
    location = b"https://" + shown.encode("idna" if not shown.isascii() else "ascii") + target
    return simple_response(status, b"", headers=[(b"Location", location)])


def hsts_value(seconds: int | None) -> bytes | None:
    return None if seconds is None else b"max-age=%d" % seconds


def parser_error_status(message: str) -> int:
    """Map an httptools/llhttp error to the status we answer with."""
    text = message.lower()
    if "header overflow" in text or "too large" in text:
        return 431
    if "version" in text and "invalid" in text:
        return 505 if "http/2" in text else 400
    return 400
