"""``certsmith proxy`` with public names against a real Pebble: the proxy is the only listener on
Pebble's validation ports, answers HTTP-01 itself, serves the certificate, and serves a renewed
one at once while clients keep going."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

from cryptography import x509

from tests.support.net import LOOPBACK, wait_until
from tests.support.pebble import Pebble
from tests.support.proxy import Proxy, UpstreamApp, served_certificate

NAME = "proxy.example.com"


def _serial(der: bytes) -> int:
    return x509.load_der_x509_certificate(der).serial_number


def test_http01_issue_then_forced_renewal_under_load(pebble: Pebble, tmp_path: Path) -> None:
    root = pebble.write_root(tmp_path / "pebble-root.pem")
    env = {"REQUESTS_CA_BUNDLE": str(pebble.ca_bundle)}
    home = tmp_path / "home"
    with (
        UpstreamApp(tmp_path).start() as app,
        Proxy(
            home,
            [
                f"{NAME},www.{NAME}",
                "--to",
                app.address,
                "--server",
                pebble.directory,
                "--agree-tos",
                "--email",
                "ops@example.com",
                "--workers",
                "2",
            ],
            http_port=pebble.http_port,
            https_port=pebble.tls_port,
            env=env,
        ) as proxy,
    ):

        def issued() -> bytes | None:
            try:
                return served_certificate(proxy.https_port, NAME, root)
            except (OSError, ssl.SSLError):
                return None

        first = wait_until(
            issued, what="certificate from Pebble", timeout=60, proc=proxy.proc, log=proxy.logs
        )
        cert = x509.load_der_x509_certificate(first)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sorted(names.get_values_for_type(x509.DNSName)) == [NAME, f"www.{NAME}"]
        got = subprocess.run(
            [
                "curl",
                "-sS",
                "--cacert",
                str(root),
                "--resolve",
                f"www.{NAME}:{proxy.https_port}:127.0.0.1",
                f"https://www.{NAME}:{proxy.https_port}/hello",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert got.stdout == "hello", got.stderr
        assert "issued" in proxy.stderr()

        # A forced renewal (the same command a timer runs) while clients keep connecting.
        results: list[tuple[bool, int]] = []
        stop = threading.Event()

        def loop() -> None:
            ctx = ssl.create_default_context(cafile=str(root))
            while not stop.is_set():
                try:
                    with (
                        socket.create_connection((LOOPBACK, proxy.https_port)) as sock,
                        ctx.wrap_socket(sock, server_hostname=NAME) as tls,
                    ):
                        der = tls.getpeercert(binary_form=True) or b""
                        tls.sendall(
                            f"GET /hello HTTP/1.1\r\nHost: {NAME}\r\n"
                            "Connection: close\r\n\r\n".encode()
                        )
                        reply = b""
                        while chunk := tls.recv(4096):
                            reply += chunk
                    results.append((reply.endswith(b"hello"), _serial(der)))
                except (OSError, ssl.SSLError):
                    results.append((False, 0))

        threads = [threading.Thread(target=loop) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            renew = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "certsmith",
                    "--home",
                    str(home),
                    "renew",
                    "--force",
                    "--json",
                    NAME,
                ],
                capture_output=True,
                text=True,
                timeout=120,
                env={**os.environ, **env, "PYTHONPATH": str(Path(__file__).parents[1] / "src")},
            )
            assert renew.returncode == 0, renew.stderr
            assert json.loads(renew.stdout)[0]["action"] == "renewed"
            wait_until(
                lambda: any(s not in (0, _serial(first)) for _ok, s in results[-6:]),
                what="the renewed certificate served",
                timeout=15,
            )
            time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join()
        failed = [r for r in results if not r[0]]
        assert not failed, f"{len(failed)} of {len(results)} requests failed"
        assert results[0][1] == _serial(first) and results[-1][1] != _serial(first)


def test_tls_alpn01_answered_on_the_https_port(pebble: Pebble, tmp_path: Path) -> None:
    """TLS-ALPN-01 only: the proxy's HTTP listener is on another port than Pebble's http-01
    port, so the certificate can only come through the HTTPS port's acme-tls/1 answer."""
    root = pebble.write_root(tmp_path / "pebble-root.pem")
    name = "alpn.example.com"
    with (
        UpstreamApp(tmp_path).start() as app,
        Proxy(
            tmp_path / "home",
            [
                name,
                "--to",
                app.address,
                "--server",
                pebble.directory,
                "--agree-tos",
                "--challenge",
                "tls-alpn-01",
                "--workers",
                "2",
            ],
            https_port=pebble.tls_port,
            env={"REQUESTS_CA_BUNDLE": str(pebble.ca_bundle)},
        ) as proxy,
    ):

        def issued() -> bytes | None:
            try:
                return served_certificate(proxy.https_port, name, root)
            except (OSError, ssl.SSLError):
                return None

        der = wait_until(
            issued, what="certificate via TLS-ALPN-01", timeout=60, proc=proxy.proc, log=proxy.logs
        )
        cert = x509.load_der_x509_certificate(der)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert names.get_values_for_type(x509.DNSName) == [name]
        spec = (tmp_path / "home" / "sites" / f"{name}.toml").read_text()
        assert 'kind = "tls-alpn"' in spec
