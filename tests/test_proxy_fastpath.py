"""The fast path agrees with the general one: generated requests and responses, both paths.

The general path is llhttp with a callback per header, then ``http.forward_request`` /
``http.forward_response``; the fast path (``fastpath``) must either decline (``None``) or give
what the general path gives: the same fields to the upstream, the same bytes to the client.
Nothing here needs a socket.
"""

from __future__ import annotations

from typing import Any

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certsmith.services.proxy import fastpath, http

LIMITS = fastpath.Limits(max_head=32768, max_line=8192, max_fields=100)
IP = "10.0.0.7"

WRK = b"GET / HTTP/1.1\r\nHost: localhost:8443\r\n\r\n"
CURL = (
    b"GET /api/items?page=2 HTTP/1.1\r\nHost: app.example\r\nUser-Agent: curl/7.88.1\r\n"
    b"Accept: */*\r\n\r\n"
)
BROWSER = (
    b"GET /static/app.js?v=3 HTTP/1.1\r\nHost: app.example\r\nConnection: keep-alive\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0\r\nAccept: */*\r\n"
    b"Referer: https://app.example/\r\nAccept-Encoding: gzip, deflate, br\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\nCookie: session=abc; theme=dark\r\n\r\n"
)
NGINX = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 01 Dec 2026 19:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\n"
    b"hello world\n"
)
NODE = (
    b"HTTP/1.1 404 Not Found\r\nX-Powered-By: Express\r\nContent-Type: application/json\r\n"
    b"Content-Length: 2\r\nDate: Tue, 01 Dec 2026 19:00:00 GMT\r\nConnection: keep-alive\r\n"
    b"Keep-Alive: timeout=5\r\n\r\n{}"
)


class _Sink:
    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.done = 0
        self.body: list[bytes] = []
        self.head_end = -1

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done += 1


def general_request(data: bytes) -> http.Request | None:
    """What the general path forwards for ``data`` (None: it refuses, or reads no request)."""
    sink = _Sink()
    parser = httptools.HttpRequestParser(sink)
    try:
        parser.feed_data(data)
        version = parser.get_http_version()
        method = parser.get_method()
        return http.forward_request(method, sink.url, version, sink.headers, IP)
    except (httptools.HttpParserError, http.HttpError):
        return None


def fields(head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The request line's target and the fields, as the upstream's parser reads them."""
    sink = _Sink()
    parser = httptools.HttpRequestParser(sink)
    parser.feed_data(head)
    assert sink.done == 1
    return sink.url, sink.headers


def fast_request(data: bytes) -> fastpath.FastRequest | None:
    validator = fastpath.Validator(httptools.HttpRequestParser)
    return fastpath.request(data, IP.encode(), validator, LIMITS, True)


def assert_same_request(data: bytes) -> fastpath.FastRequest | None:
    fast = fast_request(data)
    if fast is None:
        return None
    general = general_request(data)
    assert general is not None, data  # the fast path never takes what the general one refuses
    method, target, req = fast
    assert fields(req.head) == fields(general.head), data
    assert req.head.split(b"\r\n", 1)[0] == general.head.split(b"\r\n", 1)[0]
    assert req._replace(head=b"") == general._replace(head=b"")
    url, _ = fields(data)
    assert target == url and data.startswith(method + b" ")
    return fast


@pytest.mark.parametrize("data", [WRK, CURL, BROWSER])
def test_common_requests_take_the_fast_path(data: bytes) -> None:
    assert assert_same_request(data) is not None


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",  # body framing
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",  # replaced by us
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Private\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",  # pipelined
        b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
        b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n",  # obsolete line folding
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n",
    ],
)
def test_unusual_requests_go_the_general_way(data: bytes) -> None:
    assert fast_request(data) is None


def test_closing_request_and_a_refused_one_leave_the_validator_usable() -> None:
    validator = fastpath.Validator(httptools.HttpRequestParser)
    close = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    for data in (close, b"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n", WRK, close, WRK):
        fastpath.request(data, b"1.2.3.4", validator, LIMITS, False)
    assert fastpath.request(WRK, b"1.2.3.4", validator, LIMITS, False) is not None


# Mostly acceptable material (so that the fast path is taken often and compared), with the
# unusual mixed in: framing and hop-by-hop fields, odd white space, control bytes, bad lines.
_benign_names = [
    "Cookie",
    "Accept",
    "X-Custom",
    "Hostx",
    "X-Host",
    "Connectionx",
    "Referer",
    "User-Agent",
    "Accept-Encoding",
    "Connection",
    "connection",
]
_names = st.sampled_from(
    _benign_names * 4
    + [
        "Host",
        "Content-Length",
        "Transfer-Encoding",
        "Upgrade",
        "Expect",
        "Keep-Alive",
        "TE",
        "X-Forwarded-For",
        "Forwarded",
        "Host ",
        " X",
    ]
)
_values = st.sampled_from(
    ["a", "b=c; d=e", "*/*", "keep-alive", "close", "x y"] * 3
    + [
        "Keep-Alive",
        "CLOSE",
        "keep-alive ",
        "",
        " a ",
        "a\tb",
        "\xe9",
        "upgrade",
        "keep-alive, x-private",
        "5",
        "chunked",
        "a\x01",
    ]
)
_hosts = st.sampled_from(["a", "App.Example:8443", "[::1]:443", "app.example.", "a ", "\xe9"])
_separators = st.sampled_from([": ", ": ", ": ", ":", ":\t", ":  ", " : "])
_lines = st.sampled_from(
    [
        "GET / HTTP/1.1",
        "GET / HTTP/1.1",
        "GET /p?q=1&r=%20 HTTP/1.1",
        "HEAD /x HTTP/1.1",
        "POST /f HTTP/1.1",
        "DELETE /a/b HTTP/1.1",
        "PATCH /p HTTP/1.1",
        "OPTIONS * HTTP/1.1",
        "GET  / HTTP/1.1",
        "GET / HTTP/1.0",
        "FOO / HTTP/1.1",
        "get / HTTP/1.1",
        'GET /a"b HTTP/1.1',
        "GET /#f HTTP/1.1",
        "CONNECT a:1 HTTP/1.1",
        "GET http://a/ HTTP/1.1",
    ]
)


@pytest.mark.slow  # 3000 generated examples
@settings(max_examples=3000, deadline=None)
@given(
    _lines,
    st.lists(st.tuples(_names, _separators, _values), max_size=5),
    st.sampled_from(["Host", "host", "HOST", None]),
    _separators,
    _hosts,
    st.integers(min_value=0, max_value=5),
    st.sampled_from([b"\r\n", b"\r\n", b"\r\n\r\n", b"\n"]),
)
def test_generated_requests_fast_equals_general(
    line: str,
    header_list: list[tuple[str, str, str]],
    host_name: str | None,
    host_separator: str,
    host: str,
    at: int,
    tail: bytes,
) -> None:
    if host_name is not None:
        header_list.insert(min(at, len(header_list)), (host_name, host_separator, host))
    data = (line + "\r\n" + "".join(n + s + v + "\r\n" for n, s, v in header_list)).encode(
        "latin-1"
    ) + tail
    if not data.endswith(b"\r\n\r\n"):
        assert fast_request(data) is None
        return
    assert_same_request(data)


# -- responses -------------------------------------------------------------------------------------


def general_response(data: bytes, keep_alive: bool, hsts: bytes | None) -> Any:
    """(status, bytes for the client, body size, reusable) from the general path, or None if
    that path would not answer with exactly this one Content-Length response."""
    keep: list[bool] = []  # should_keep_alive, read when the head is complete (as upstream.py)

    class Head(_Sink):
        def on_headers_complete(self) -> None:
            keep.append(parser.should_keep_alive())

    sink = Head()
    parser = httptools.HttpResponseParser(sink)
    try:
        parser.feed_data(data)
    except httptools.HttpParserError:
        return None
    if sink.done != 1 or len(keep) != 1:
        return None
    end = data.find(b"\r\n\r\n") + 4
    status = parser.get_status_code()
    try:
        resp = http.forward_response(
            data[:end],
            status,
            head_request=False,
            request_keep_alive=keep_alive,
            client_version="1.1",
            upstream_keep_alive=keep[0],
            hsts=hsts,
        )
    except http.HttpError:
        return None
    if resp.to_client != http.LENGTH:
        return None
    body = b"".join(sink.body)
    return status, resp.head + body, len(body), resp.upstream_reusable


def fast_response(
    data: bytes, keep_alive: bool = True, hsts: bytes | None = None
) -> fastpath.FastResponse | None:
    return fastpath.response(
        data, fastpath.Validator(httptools.HttpResponseParser), fastpath.tail(hsts, keep_alive)
    )


@pytest.mark.parametrize("data", [NGINX, NODE])
@pytest.mark.parametrize("keep_alive", [True, False])
@pytest.mark.parametrize("hsts", [None, b"max-age=31536000"])
def test_common_responses_take_the_fast_path(
    data: bytes, keep_alive: bool, hsts: bytes | None
) -> None:
    fast = fast_response(data, keep_alive, hsts)
    assert fast is not None
    assert fast == general_response(data, keep_alive, hsts)
    assert b"Keep-Alive" not in fast[1] and (b"Connection: close" in fast[1]) != keep_alive


@pytest.mark.parametrize(
    "data",
    [
        NGINX[:-3],  # the body is not all here yet
        NGINX + b"HTTP/1.1 200 OK\r\n",  # more than one response
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: x-hop\r\nX-Hop: 1\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nStrict-Transport-Security: max-age=1\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: a\x01\r\n\r\nhi",
    ],
)
def test_unusual_responses_go_the_general_way(data: bytes) -> None:
    assert fast_response(data) is None


_response_names = st.sampled_from(
    [
        "Set-Cookie",
        "X-Custom",
        "Content-Type",
        "Date",
        "Connection",
        "Keep-Alive",
        "Content-Lengthx",
    ]
    * 4
    + [
        "content-length",
        "Content-Length",
        "Transfer-Encoding",
        "Strict-Transport-Security",
        "Upgrade",
        "Trailer",
        "Content-Length ",
    ]
)
_response_values = st.sampled_from(
    ["text/plain", "a=1", "x", "close", "keep-alive", "timeout=5"] * 3
    + [
        "Keep-Alive",
        "keep-alive ",
        "Close",
        "0",
        "2",
        "chunked",
        "max-age=1",
        "",
        " 5 ",
        "-1",
        "2, 2",
        "a\x01",
    ]
)
_status_lines = st.sampled_from(
    [
        "HTTP/1.1 200 OK",
        "HTTP/1.1 200 OK",
        "HTTP/1.1 404 Not Found",
        "HTTP/1.1 503 ",
        "HTTP/1.1 302 Found",
        "HTTP/1.1 204 No Content",
        "HTTP/1.1 304 Not Modified",
        "HTTP/1.1 100 Continue",
        "HTTP/1.0 200 OK",
        "HTTP/1.1 999 X",
        "HTTP/1.1 20 X",
    ]
)


@pytest.mark.slow  # 3000 generated examples
@settings(max_examples=3000, deadline=None)
@given(
    _status_lines,
    st.lists(st.tuples(_response_names, _separators, _response_values), max_size=5),
    st.sampled_from([b"", b"hi", b"hello", b"hello world\n", b"\r\n\r\n"]),
    st.sampled_from(["right", "right", "right", "wrong", "none"]),
    st.sampled_from([": ", ": ", ":", ":\t "]),
    st.integers(min_value=0, max_value=5),
    st.booleans(),
    st.sampled_from([None, b"max-age=600"]),
)
def test_generated_responses_fast_equals_general(
    line: str,
    header_list: list[tuple[str, str, str]],
    body: bytes,
    length: str,
    length_separator: str,
    at: int,
    keep_alive: bool,
    hsts: bytes | None,
) -> None:
    if length != "none":
        size = str(len(body) if length == "right" else len(body) + 1)
        header_list.insert(min(at, len(header_list)), ("Content-Length", length_separator, size))
    data = (line + "\r\n" + "".join(n + s + v + "\r\n" for n, s, v in header_list) + "\r\n").encode(
        "latin-1"
    ) + body
    fast = fast_response(data, keep_alive, hsts)
    if fast is not None:
        assert fast == general_response(data, keep_alive, hsts), data
