"""The proxy's pure parts, without sockets: HTTP framing decisions, config, ClientHello ALPN."""

from __future__ import annotations

import ssl

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certsmith.base.identifiers import parse_identifier
from certsmith.errors import UsageError
from certsmith.services.proxy import config, http
from certsmith.services.proxy.certs import client_hello_alpn


def forward(
    headers: list[tuple[bytes, bytes]], method: bytes = b"GET", version: str = "1.1"
) -> http.Request:
    return http.forward_request(method, b"/p?q=1", version, headers, "10.0.0.7")


def parse_head(head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """Parse a request head with httptools, as the upstream would."""

    class Sink:
        def __init__(self) -> None:
            self.headers: list[tuple[bytes, bytes]] = []
            self.url = b""

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name, value))

    sink = Sink()
    httptools.HttpRequestParser(sink).feed_data(head)
    return sink.url, sink.headers


# -- requests --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([(b"Host", b"a"), (b"Content-Length", b"3"), (b"Transfer-Encoding", b"chunked")], 400),
        ([(b"Host", b"a"), (b"Content-Length", b"3"), (b"Content-Length", b"3")], 400),
        ([(b"Host", b"a"), (b"Content-Length", b"-3")], 400),
        ([(b"Host", b"a"), (b"Content-Length", b"3, 3")], 400),
        ([(b"Host", b"a"), (b"Content-Length", b"9" * 40)], 400),
        ([(b"Host", b"a"), (b"Transfer-Encoding", b"gzip, chunked")], 501),
        ([(b"Host", b"a"), (b"Transfer-Encoding", b"chunked"), (b"Transfer-Encoding", b"x")], 400),
        ([(b"Host", b"a"), (b"X-Folded", b"one\r\n two")], 400),
        ([(b"Host", b"a"), (b"X-Bare", b"one\ntwo")], 400),
        ([(b"Host", b"a"), (b"Host", b"b")], 400),
        ([(b"Accept", b"*/*")], 400),
        ([(b"Host", b"a"), (b"Expect", b"magic")], 417),
    ],
)
def test_smuggling_and_malformed_requests_are_refused(
    headers: list[tuple[bytes, bytes]], status: int
) -> None:
    with pytest.raises(http.HttpError) as caught:
        forward(headers, b"POST")
    assert caught.value.status == status


def test_versions_and_targets() -> None:
    with pytest.raises(http.HttpError) as caught:
        http.forward_request(b"GET", b"/", "2.0", [(b"Host", b"a")], "1.2.3.4")
    assert caught.value.status == 505
    # Absolute form (RFC 9112 section 3.2.2, accepted since issue 11): the target's authority
    # replaces Host, the upstream gets the origin form.
    req = http.forward_request(b"GET", b"http://other/", "1.1", [(b"Host", b"a")], "1.2.3.4")
    assert req.host == "other" and req.head.startswith(b"GET / HTTP/1.1\r\nHost: other\r\n")
    with pytest.raises(http.HttpError):
        http.forward_request(b"GET", b"ftp://evil/", "1.1", [(b"Host", b"a")], "1.2.3.4")
    req = http.forward_request(b"GET", b"/", "1.0", [], "1.2.3.4")
    assert not req.keep_alive and req.host == ""


def test_upstream_head_is_rebuilt() -> None:
    req = forward(
        [
            (b"Host", b"App.Example:8443"),
            (b"Connection", b"keep-alive, X-Private"),
            (b"X-Private", b"secret"),
            (b"Keep-Alive", b"timeout=5"),
            (b"TE", b"trailers"),
            (b"X-Forwarded-For", b"6.6.6.6"),
            (b"Forwarded", b"for=6.6.6.6"),
            (b"Proxy-Authorization", b"x"),
            (b"Cookie", b"a=b"),
            (b"Content-Length", b"5"),
            (b"User-Agent", b"ua"),
            (b"Referer", b"https://r/"),
            (b"Expect", b"100-continue"),
        ],
        b"POST",
    )
    url, headers = parse_head(req.head)
    names = [n.lower() for n, _ in headers]
    assert url == b"/p?q=1"
    assert req.head.startswith(b"POST /p?q=1 HTTP/1.1\r\n")
    for dropped in (
        b"connection",
        b"x-private",
        b"keep-alive",
        b"te",
        b"forwarded",
        b"proxy-authorization",
        b"expect",
    ):
        assert dropped not in names
    assert dict(headers)[b"X-Forwarded-For"] == b"10.0.0.7"
    assert dict(headers)[b"X-Forwarded-Proto"] == b"https"
    assert dict(headers)[b"X-Forwarded-Host"] == b"app.example:8443"  # (as nginx's $host)
    assert names.count(b"x-forwarded-for") == 1
    assert dict(headers)[b"Content-Length"] == b"5" and dict(headers)[b"Cookie"] == b"a=b"
    assert req.host == "app.example" and req.body == http.LENGTH and req.length == 5
    assert req.expect_continue and req.keep_alive
    assert (req.referer, req.user_agent) == (b"https://r/", b"ua")


def test_upgrade_and_chunked() -> None:
    req = forward([(b"Host", b"a"), (b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")])
    assert req.upgrade == b"websocket"
    assert b"Connection: upgrade\r\nUpgrade: websocket\r\n" in req.head
    not_asked = forward([(b"Host", b"a"), (b"Upgrade", b"websocket")])
    assert not_asked.upgrade is None and b"Upgrade" not in not_asked.head
    chunked = forward([(b"Host", b"a"), (b"Transfer-Encoding", b"Chunked")], b"POST")
    assert chunked.body == http.CHUNKED and b"Transfer-Encoding: chunked\r\n" in chunked.head


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).filter(
    lambda t: t.strip("-") == t
)
_value = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)
_names = (
    st.sampled_from(
        [
            "content-length",
            "transfer-encoding",
            "connection",
            "host",
            "upgrade",
            "keep-alive",
            "te",
            "x-forwarded-for",
            "expect",
        ]
    )
    | _token
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_names, _value), max_size=8))
def test_any_accepted_request_reaches_the_upstream_as_one_well_framed_request(
    pairs: list[tuple[str, str]],
) -> None:
    headers = [(n.encode(), v.encode()) for n, v in pairs]
    try:
        req = forward([(b"Host", b"a"), *headers], b"POST")
    except http.HttpError as exc:
        assert exc.status in (400, 417, 501)
        return
    _url, parsed = parse_head(req.head)  # httptools accepts what we send upstream
    lower = [n.lower() for n, _ in parsed]
    assert lower.count(b"content-length") + lower.count(b"transfer-encoding") <= 1
    assert lower.count(b"host") == 1
    for hop in (b"connection", b"keep-alive", b"te", b"transfer-encoding"):
        if hop == b"transfer-encoding" and req.body == http.CHUNKED:
            continue
        if hop == b"connection" and req.upgrade is not None:
            continue
        assert hop not in lower
    assert lower.count(b"x-forwarded-for") == 1


# -- responses -------------------------------------------------------------------------------------


def respond(head: bytes, status: int = 200, **kw: object) -> http.Response:
    options: dict[str, object] = {
        "head_request": False,
        "request_keep_alive": True,
        "client_version": "1.1",
        "upstream_keep_alive": True,
        "hsts": None,
    }
    options.update(kw)
    return http.forward_response(head, status, **options)  # type: ignore[arg-type]


def test_response_hop_by_hop_removed_and_framing_kept() -> None:
    resp = respond(
        b"HTTP/1.1 200 OK\r\nServer: app\r\nConnection: keep-alive, X-Hop\r\n"
        b"X-Hop: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 5\r\n"
        b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n"
    )
    assert resp.head == (
        b"HTTP/1.1 200 OK\r\nServer: app\r\nContent-Length: 5\r\n"
        b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n"
    )
    assert (resp.body, resp.to_client, resp.keep_alive, resp.upstream_reusable) == (
        http.LENGTH,
        http.LENGTH,
        True,
        True,
    )


def test_chunked_response_to_http10_client_and_until_close() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert respond(head).to_client == http.CHUNKED
    old = respond(head, client_version="1.0")
    assert old.to_client == http.UNTIL_CLOSE and not old.keep_alive
    assert b"Transfer-Encoding" not in old.head and b"Connection: close" in old.head
    closing = respond(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n")
    assert closing.body == http.UNTIL_CLOSE and not closing.upstream_reusable
    assert closing.head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert closing.to_client == http.CHUNKED


def test_head_204_hsts_and_conflicts() -> None:
    head = respond(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", head_request=True)
    assert head.to_client == http.NONE and b"Content-Length: 99" in head.head
    assert respond(b"HTTP/1.1 204 No Content\r\n\r\n", 204).to_client == http.NONE
    hsts = respond(
        b"HTTP/1.1 200 OK\r\nStrict-Transport-Security: max-age=1\r\nContent-Length: 0\r\n\r\n",
        hsts=b"max-age=600",
    )
    assert hsts.head.count(b"Strict-Transport-Security") == 1
    assert b"Strict-Transport-Security: max-age=600\r\n" in hsts.head
    with pytest.raises(http.HttpError) as caught:
        respond(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    assert caught.value.status == 502
    upgraded = respond(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n",
        101,
        upgrade=True,
    )
    assert b"Connection: upgrade\r\nUpgrade: websocket\r\n" in upgraded.head
    assert b"Sec-WebSocket-Accept: x\r\n" in upgraded.head


def test_redirect_and_error_page() -> None:
    assert http.redirect(308, "example.org", 443, b"/a?b").startswith(
        b"HTTP/1.1 308 Permanent Redirect\r\n"
    )
    assert b"Location: https://example.org/a?b\r\n" in http.redirect(
        308, "example.org", 443, b"/a?b"
    )
    assert b"Location: https://[::1]:8443/\r\n" in http.redirect(301, "::1", 8443, b"/")
    page = http.error_page(502, "the upstream <x> is down", close=True)
    assert page.startswith(b"HTTP/1.1 502 Bad Gateway\r\n") and b"&lt;x&gt;" in page


# -- config ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8080", config.Upstream("127.0.0.1", 8080)),
        ("127.0.0.1:3000", config.Upstream("127.0.0.1", 3000)),
        ("http://app.internal:80/", config.Upstream("app.internal", 80)),
        ("[::1]:9000", config.Upstream("::1", 9000)),
        ("unix:/run/app.sock", config.Upstream(path="/run/app.sock")),
    ],
)
def test_upstream_parse(text: str, expected: config.Upstream) -> None:
    assert config.Upstream.parse(text) == expected


@pytest.mark.parametrize("text", ["https://a:1", "a:b", "a:99999", "::1:80", "a/b:1", ""])
def test_upstream_parse_refuses(text: str) -> None:
    with pytest.raises(UsageError):
        config.Upstream.parse(text)


def test_local_names_and_sites() -> None:
    for name in (
        "localhost",
        "app.test",
        "x.internal",
        "a.localhost",
        "nas.home.arpa",
        "printer.lan",
        "box.local",
        "127.0.0.1",
        "::1",
        "192.168.1.5",
    ):
        assert config.is_local(parse_identifier(name)), name
    for name in ("example.org", "8.8.8.8", "test.example.com"):
        assert not config.is_local(parse_identifier(name)), name
    with pytest.raises(UsageError, match="make two sites"):
        config.from_cli(["localhost,example.org"], "8080")
    local = config.from_cli(["localhost"], "8080").sites[0]
    assert not local.uses_acme and local.cert_name == "local-localhost"
    assert [i.value for i in local.cert_identifiers] == ["localhost", "127.0.0.1", "::1"]
    public = config.from_cli(["example.org,www.example.org"], "8080", hsts="").sites[0]
    assert public.uses_acme and public.cert_name == "example.org" and public.hsts == 63072000


def test_toml(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "p.toml"
    path.write_text(
        "redirect = 301\nhsts = 60\n[limits]\nheader_timeout = 3\n"
        '[[site]]\nnames = ["a.test"]\nto = "8080"\n'
        '[[site]]\nnames = "b.test"\nto = "unix:/s"\nredirect = 308\n'
    )
    cfg = config.load(path, workers=3)
    assert [s.redirect for s in cfg.sites] == [301, 308]
    assert cfg.sites[0].hsts == 60 and cfg.limits.header_timeout == 3 and cfg.workers == 3
    path.write_text('[[site]]\nnames = ["a.test"]\nto = "8080"\nbogus = 1\n')
    with pytest.raises(UsageError, match="bogus"):
        config.load(path)
    path.write_text(
        '[[site]]\nnames = ["a.test"]\nto = "1"\n[[site]]\nnames = ["a.test"]\nto = "2"\n'
    )
    with pytest.raises(UsageError, match="two sites"):
        config.load(path)


# -- TLS-ALPN ClientHello --------------------------------------------------------------------------


def _client_hello(alpn: list[str] | None) -> bytes:
    ctx = ssl.create_default_context()
    if alpn:
        ctx.set_alpn_protocols(alpn)
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO(), server_hostname="a.example")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    record = out.read()
    assert record[0] == 22  # a handshake record; the message follows its 5-byte header
    return record[5:]


def test_client_hello_alpn() -> None:
    assert client_hello_alpn(_client_hello(["acme-tls/1"])) == [b"acme-tls/1"]
    assert client_hello_alpn(_client_hello(["h2", "http/1.1"])) == [b"h2", b"http/1.1"]
    assert client_hello_alpn(_client_hello(None)) == []
    assert client_hello_alpn(b"\x01\x00") == []


def test_privileged_port_refusal_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run as root here, so the kernel's refusal of ports below 1024 is simulated."""
    import errno

    from certsmith.services.proxy import supervisor

    def refuse(_address: str, _port: int) -> list[object]:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(supervisor, "_bind_one", refuse)
    with pytest.raises(UsageError) as caught:
        supervisor.bind(config.from_cli(["localhost"], "8080"), 1)
    message = str(caught.value)
    assert "\n" not in message and "port 80" in message
    assert "--http-port 8080 --https-port 8443" in message
