"""The proxy's TLS policy (certsmith.base.policy) as clients see it: sslyze's Mozilla
"intermediate" check, the key exchange groups openssl s_client can get, and the client's
cipher order. A real ``certsmith proxy`` process with a local-CA certificate."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator

import pytest

from certsmith.base import policy
from certsmith.base.tlsgroups import TLSGroupsError, set_groups
from tests.support.proxy import Proxy, UpstreamApp
from tests.support.sslyze import mozilla_intermediate
from tests.support.tlsprobe import handshake

ACCEPTED = {"X25519": "X25519", "P-256": "prime256v1", "P-384": "secp384r1"}
REFUSED = ("X448", "P-521", "ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144", "ffdhe8192")


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    work = tmp_path_factory.mktemp("tls-policy")
    with (
        UpstreamApp(work) as app,
        Proxy(work / "home", ["localhost", "--to", app.address, "--hsts"]) as server,
    ):
        yield server


def test_proxy_hsts_default_is_the_policy_two_years(proxy: Proxy) -> None:
    got = subprocess.run(
        [
            "curl",
            "-sS",
            "-i",
            "--max-time",
            "30",
            "--cacert",
            str(proxy.root),
            proxy.url("localhost", "/hello"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert got.returncode == 0, got.stderr
    assert "strict-transport-security: max-age=63072000\n" in got.stdout.lower(), got.stdout


def test_sslyze_finds_the_proxy_mozilla_intermediate_compliant(proxy: Proxy) -> None:
    verdict = mozilla_intermediate("localhost", proxy.https_port, proxy.root)
    assert verdict.issues == {}, verdict
    assert verdict.compliant, verdict


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_proxy_key_exchange_groups_are_exactly_the_policy(proxy: Proxy, version: str) -> None:
    # In TLS 1.2 the client's group list also names the curves it accepts for the ECDSA
    # certificate (P-256), so each group is offered first with P-256 as the fallback.
    fallback = ":P-256" if version == "-tls1_2" else ""
    for group, openssl_name in ACCEPTED.items():
        offer = group if group == "P-256" else group + fallback
        got = handshake(
            proxy.https_port, "localhost", version, "-groups", offer, ca_file=proxy.root
        )
        assert got.ok and got.temp_key.startswith((f"{openssl_name},", f"ECDH, {openssl_name},")), (
            got
        )
    for group in REFUSED:
        if version == "-tls1_2" and group.startswith("ffdhe"):
            continue  # (finite-field groups are TLS 1.3 key shares only; no DHE suites here)
        got = handshake(
            proxy.https_port, "localhost", version, "-groups", group + fallback, ca_file=proxy.root
        )
        if fallback:
            assert got.ok and "prime256v1" in got.temp_key, got
        else:
            assert not got.ok, f"{group} accepted: {got.temp_key}"


@pytest.mark.parametrize(
    ("version", "option", "first", "second"),
    [
        ("-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES256-GCM-SHA384"),
        ("-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"),
    ],
)
def test_proxy_follows_the_clients_cipher_order(
    proxy: Proxy, version: str, option: str, first: str, second: str
) -> None:
    for order in ((first, second), (second, first)):
        got = handshake(
            proxy.https_port, "localhost", version, option, ":".join(order), ca_file=proxy.root
        )
        assert got.ok and got.cipher == order[0], got


def test_set_groups_fails_loudly() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.raises(TLSGroupsError, match="refused the TLS groups 'X25519:nonsense'"):
        set_groups(ctx, "X25519:nonsense")
    with pytest.raises(TLSGroupsError, match="empty"):
        set_groups(ctx, "")
    set_groups(ctx, policy.GROUPS_LIST)  # the ssl module sees no stale OpenSSL error
    ctx.set_ciphers(policy.INTERMEDIATE_CIPHERS)


def test_set_groups_takes_subclasses_and_refuses_other_objects() -> None:
    class Sub(ssl.SSLContext):
        pass

    set_groups(Sub(ssl.PROTOCOL_TLS_SERVER), policy.GROUPS_LIST)
    with pytest.raises(TLSGroupsError, match=r"not an ssl\.SSLContext: bytes"):
        set_groups(b"\x01" * 64, policy.GROUPS_LIST)  # type: ignore[arg-type]
