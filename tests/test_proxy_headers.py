"""What the proxy makes of Host, Connection and forwarding headers and of the request target,
as the upstream and the client see it: a real proxy in front of the test upstream, whose
``/headers`` echoes the request it got."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator

import pytest

from tests.support.net import LOOPBACK
from tests.support.proxy import Proxy, UpstreamApp, served_certificate, tls_request


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamApp]:
    with UpstreamApp(tmp_path_factory.mktemp("upstream")) as app:
        yield app


@pytest.fixture(scope="module")
def proxy(upstream: UpstreamApp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    work = tmp_path_factory.mktemp("proxy")
    config = work / "proxy.toml"
    config.write_text(f"""
workers = 1

[[site]]
names = ["localhost"]
to = "{upstream.address}"

[[site]]
names = ["*.app.test"]
to = "{upstream.address}"
""")
    with Proxy(work / "home", ["--config", str(config)]) as server:
        yield server


def https(proxy: Proxy, head: bytes, sni: str = "localhost") -> bytes:
    return tls_request(proxy.https_port, sni, head, timeout=30)


def plain(proxy: Proxy, head: bytes) -> bytes:
    with socket.create_connection((LOOPBACK, proxy.http_port), timeout=30) as sock:
        sock.sendall(head)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def echoed(got: bytes) -> tuple[str, list[tuple[str, str]]]:
    """(target, headers) the upstream received, from its /headers answer."""
    assert got.startswith(b"HTTP/1.1 200 "), got[:300]
    seen = json.loads(got.partition(b"\r\n\r\n")[2])
    return seen["target"], [(n.lower(), v) for n, v in seen["headers"]]


def test_connection_naming_host_never_strips_host(proxy: Proxy) -> None:
    _, headers = echoed(
        https(
            proxy,
            b"GET /headers HTTP/1.1\r\nHost: localhost\r\n"
            b"Connection: keep-alive, Host\r\nConnection: close\r\n\r\n",
        )
    )
    assert ("host", "localhost") in headers


@pytest.mark.parametrize("extra", [b"", b"Accept: */*\r\n"], ids=["fast path", "general path"])
def test_underscore_spellings_of_forwarding_headers_are_dropped(proxy: Proxy, extra: bytes) -> None:
    _, headers = echoed(
        https(
            proxy,
            b"GET /headers HTTP/1.1\r\nHost: localhost\r\nX_Forwarded_For: 6.6.6.6\r\n"
            b"x_forwarded_host: evil.example\r\nX_Real_IP: 6.6.6.6\r\n"
            + extra
            + b"Connection: close\r\n\r\n",
        )
    )
    names = [name for name, _ in headers]
    assert not [n for n in names if "_" in n], headers
    assert ("x-forwarded-for", "127.0.0.1") in headers
    assert names.count("x-forwarded-for") == 1 and "6.6.6.6" not in str(headers)


BAD_HOSTS = [
    b"localhost:@evil.example",
    b"localhost:80@evil.example",
    b"x/?.app.test",
    b"\x80.app.test",
    b"a.app.test/evil",
    b"localhost:abc",
]


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_a_host_that_is_not_a_host_name_is_400_on_both_ports(proxy: Proxy, host: bytes) -> None:
    head = b"GET /headers HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
    for got in (https(proxy, head), https(proxy, head, sni="a.app.test"), plain(proxy, head)):
        assert got.startswith(b"HTTP/1.1 400 "), got[:300]
        assert b"Location" not in got and b"evil" not in got
    assert "Traceback" not in proxy.logs()


def test_wildcard_site_redirects_and_serves_a_valid_name(proxy: Proxy) -> None:
    got = plain(proxy, b"GET /x?y HTTP/1.1\r\nHost: a.app.test\r\nConnection: close\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 308 ")
    assert f"Location: https://a.app.test:{proxy.https_port}/x?y".encode() in got
    _, headers = echoed(
        https(
            proxy,
            b"GET /headers HTTP/1.1\r\nHost: a.app.test\r\nConnection: close\r\n\r\n",
            sni="a.app.test",
        )
    )
    assert ("x-forwarded-host", "a.app.test") in headers


@pytest.mark.parametrize("name", ["a.b.app.test", "app.test"])
def test_wildcard_site_covers_one_label_only(proxy: Proxy, name: str) -> None:
    """``*.app.test`` is neither ``a.b.app.test`` nor the apex: no certificate by SNI, no site
    by Host (on the HTTPS port through a certificate another name chose, nor on HTTP)."""
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        served_certificate(proxy.https_port, name)
    head = f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode()
    assert plain(proxy, head).startswith(b"HTTP/1.1 404 ")
    assert https(proxy, head, sni="a.app.test").startswith(b"HTTP/1.1 421 ")


def test_absolute_form_target_is_accepted(proxy: Proxy) -> None:
    """RFC 9112 section 3.2.2: the upstream gets the origin form, and the target's authority
    as Host (the received Host is ignored)."""
    target, headers = echoed(
        https(
            proxy,
            b"GET https://localhost/headers?q=1 HTTP/1.1\r\nHost: elsewhere.example\r\n"
            b"Connection: close\r\n\r\n",
        )
    )
    assert target == "/headers?q=1"
    assert ("host", "localhost") in headers and ("x-forwarded-host", "localhost") in headers
    assert "elsewhere" not in str(headers)
    target, headers = echoed(
        https(
            proxy,
            b"GET HTTPS://LOCALHOST:443/headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
    )
    assert target == "/headers" and ("x-forwarded-host", "localhost:443") in headers
    got = plain(
        proxy,
        b"GET http://localhost/a/b?c HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    assert got.startswith(b"HTTP/1.1 308 ")
    assert f"Location: https://localhost:{proxy.https_port}/a/b?c\r\n".encode() in got


@pytest.mark.parametrize(
    "target", [b"ftp://localhost/x", b"https:///x", b"localhost/x", b"https://user@localhost/x"]
)
def test_other_target_forms_are_400(proxy: Proxy, target: bytes) -> None:
    got = https(
        proxy, b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    assert got.startswith(b"HTTP/1.1 400 "), got[:300]


def test_host_with_a_trailing_dot_is_the_same_site(proxy: Proxy) -> None:
    _, headers = echoed(
        https(proxy, b"GET /headers HTTP/1.1\r\nHost: localhost.\r\nConnection: close\r\n\r\n")
    )
    assert ("host", "localhost.") in headers


def test_sni_with_a_trailing_dot_is_the_same_site(proxy: Proxy) -> None:
    # "localhost." and "localhost" are one DNS name; a client that keeps the dot in SNI must
    # get the site's certificate, not an unrecognized_name alert.
    assert served_certificate(proxy.https_port, "localhost.") == served_certificate(
        proxy.https_port, "localhost"
    )
    _, headers = echoed(
        https(
            proxy,
            b"GET /headers HTTP/1.1\r\nHost: localhost.\r\nConnection: close\r\n\r\n",
            sni="localhost.",
        )
    )
    assert ("host", "localhost.") in headers
