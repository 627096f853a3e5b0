"""The test infrastructure itself, against the real Pebble, challtestsrv and lighttpd.

A certificate is obtained end to end with the ``acme`` library directly (not certsmith), the
http-01 answer served from a webroot by lighttpd on Pebble's validation port: this proves the
ports and DNS wiring every certsmith test relies on.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import josepy as jose
import pytest
import requests
from acme import challenges, client, crypto_util, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import LighttpdFactory, PebbleFactory, RunCertsmith, verify_chain
from tests.support.pebble import Pebble


def _acme_client(pebble: Pebble) -> client.ClientV2:
    key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = client.ClientNetwork(
        key, alg=jose.ES256, user_agent="certsmith-tests", verify_ssl=str(pebble.ca_bundle)
    )
    directory = client.ClientV2.get_directory(pebble.directory, net)
    return client.ClientV2(directory, net)


def _register(acme: client.ClientV2) -> None:
    acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))


def _issue_via_webroot(acme: client.ClientV2, names: list[str], webroot: Path) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    order = acme.new_order(crypto_util.make_csr(key_pem, names))
    written = []
    for authz in order.authorizations:
        if authz.body.status == messages.STATUS_VALID:
            continue
        chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
        response, validation = chall.response_and_validation(acme.net.key)
        target = webroot / chall.chall.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(validation)
        written.append(target)
        acme.answer_challenge(chall, response)
    deadline = dt.datetime.now() + dt.timedelta(seconds=60)
    order = acme.poll_and_finalize(order, deadline)
    for path in written:
        path.unlink()
    fullchain: str = order.fullchain_pem
    return fullchain


def test_directory_has_ari_and_tls_bundle_works(pebble: Pebble) -> None:
    directory = requests.get(pebble.directory, verify=str(pebble.ca_bundle), timeout=10).json()
    assert "renewalInfo" in directory
    assert directory["newOrder"].startswith(f"https://127.0.0.1:{pebble.port}/")
    # The bundle is the only thing trusted: the system store does not know Pebble's listener.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(pebble.directory, timeout=10)
    root = x509.load_pem_x509_certificate(pebble.root_pem().encode())
    inter = x509.load_pem_x509_certificate(pebble.intermediate_pem().encode())
    assert inter.issuer == root.subject
    assert "Pebble Root CA" in root.subject.rfc4514_string()


def test_certificate_end_to_end_via_lighttpd_webroot(
    pebble: Pebble, lighttpd_factory: LighttpdFactory, tmp_path: Path, served_path: Path
) -> None:
    webroot = served_path / "www"
    web = lighttpd_factory(webroot, port=pebble.http_port)
    (webroot / "hello.txt").write_text("hi")
    assert web.get("/hello.txt") == (200, b"hi")

    acme = _acme_client(pebble)
    _register(acme)
    before = pebble.count_orders()
    fullchain = _issue_via_webroot(acme, ["app.example.org", "www.app.example.org"], webroot)
    assert pebble.count_orders() == before + 1
    cert = x509.load_pem_x509_certificate(fullchain.encode())
    assert cert.serial_number in [int(s, 16) for s in pebble.issued_serials()]

    # Pebble really fetched the challenges from lighttpd (its access log is flushed on stop).
    web.stop()
    fetched = [line for line in web.access_log.read_text().splitlines() if "Pebble-VA" in line]
    assert any("app.example.org" in line and " 200 " in line for line in fetched)
    assert any("www.app.example.org" in line and " 200 " in line for line in fetched)

    (tmp_path / "fullchain.pem").write_text(fullchain)
    (tmp_path / "root.pem").write_text(pebble.root_pem())
    (tmp_path / "inter.pem").write_text(pebble.intermediate_pem())
    ok = verify_chain(tmp_path / "fullchain.pem", tmp_path / "root.pem", tmp_path / "inter.pem")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # Without the intermediate the chain does not verify: the check is real.
    bad = verify_chain(tmp_path / "fullchain.pem", tmp_path / "root.pem")
    assert bad.returncode != 0

    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime > dt.timedelta(days=4 * 365)  # Pebble's default: five years

    # ARI answers for it (acme's renewal_time uses the directory's renewalInfo).
    start, _next_check = acme.renewal_time(fullchain.encode())
    assert start is not None
    assert start > dt.datetime.now(dt.UTC)


def test_validity_and_tls_mode_lighttpd(
    pebble_factory: PebbleFactory,
    lighttpd_factory: LighttpdFactory,
    tmp_path: Path,
    served_path: Path,
) -> None:
    """A one-hour Pebble certificate, served by lighttpd from one combined PEM, then a reload
    picks up a second certificate."""
    ca = pebble_factory(validity=3600, authz_reuse=100)
    webroot = served_path / "www"
    lighttpd_factory(webroot, port=ca.http_port)
    acme = _acme_client(ca)
    _register(acme)

    def issue_combined() -> tuple[str, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        order = acme.new_order(crypto_util.make_csr(key_pem, ["localhost"]))
        for authz in order.authorizations:
            if authz.body.status == messages.STATUS_VALID:
                continue
            chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
            response, validation = chall.response_and_validation(acme.net.key)
            target = webroot / chall.chall.path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(validation)
            acme.answer_challenge(chall, response)
        deadline = dt.datetime.now() + dt.timedelta(seconds=60)
        fullchain: str = acme.poll_and_finalize(order, deadline).fullchain_pem
        combined = served_path / "combined.pem"  # re-read by www-data on the reload
        combined.write_text(fullchain + key_pem.decode())
        return fullchain, combined

    fullchain, combined = issue_combined()
    cert = x509.load_pem_x509_certificate(fullchain.encode())
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(hours=1, minutes=1)

    tls = lighttpd_factory(served_path / "tls-www", pemfile=combined)
    served = x509.load_pem_x509_certificate(tls.served_cert_pem().encode())
    assert served == cert

    fullchain2, _ = issue_combined()
    tls.reload()
    served2 = x509.load_pem_x509_certificate(tls.served_cert_pem().encode())
    assert served2 == x509.load_pem_x509_certificate(fullchain2.encode())
    assert served2 != cert


def test_nonce_rejection_is_applied(pebble_factory: PebbleFactory) -> None:
    """PEBBLE_WFE_NONCEREJECT reaches Pebble: at 100% a plain acme client (which retries a bad
    nonce once) fails with badNonce."""
    ca = pebble_factory(nonce_reject=100)
    assert "reject 100% of good nonces" in ca.log_text()
    acme = _acme_client(ca)
    with pytest.raises(messages.Error) as err:
        _register(acme)
    assert err.value.code == "badNonce"


def test_restart_is_a_new_ca_on_the_same_url(pebble_factory: PebbleFactory) -> None:
    ca = pebble_factory()
    url, root = ca.directory, ca.root_pem()
    ca.stop()
    assert not ca.running
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(ca.directory, verify=str(ca.ca_bundle), timeout=5)
    ca.start()
    assert ca.directory == url
    assert ca.root_pem() != root
    assert ca.log_text().count("Starting Pebble ACME server") == 2
    assert ca.log_text(all_runs=False).count("Starting Pebble ACME server") == 1


def test_run_certsmith_sets_home_and_bundle(
    run_certsmith: RunCertsmith, certsmith_env: dict[str, str], cs_home: Path, pebble: Pebble
) -> None:
    """The CLI runs as a process with the test's environment (``--help`` needs no CA)."""
    proc = run_certsmith("--help")
    assert proc.returncode == 0, proc.stderr
    assert "certsmith" in proc.stdout
    assert certsmith_env["CERTSMITH_HOME"] == str(cs_home)
    assert certsmith_env["REQUESTS_CA_BUNDLE"] == str(pebble.ca_bundle)
