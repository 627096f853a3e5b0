"""certsmith import certbot, on state made by a real certbot (PyPI) against Pebble: a
standalone RSA lineage with a deploy hook, a webroot ECDSA P-384 lineage (lighttpd serving the
webroot), and a manual-authenticator lineage certsmith cannot take over. After the import,
'certsmith renew --force' renews each the same way and runs the hook; a corrupt or partial
certbot directory is reported and nothing is imported."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.conftest import RunCertsmith
from tests.support.lighttpd import Lighttpd
from tests.support.pebble import Pebble

CERTBOT = str(Path(sys.executable).with_name("certbot"))
STD, WEB, MANUAL = (
    "std.certbot.example.org",
    "web.certbot.example.org",
    "manual.certbot.example.org",
)


@dataclass
class CertbotState:
    config: Path
    hook_out: Path
    docroot: Path
    lighttpd: Lighttpd


@pytest.fixture(scope="module")
def certbot_state(
    tmp_path_factory: pytest.TempPathFactory, pebble: Pebble
) -> Iterator[CertbotState]:
    base = tmp_path_factory.mktemp("certbot")
    served = Path(tempfile.mkdtemp(prefix="certsmith-served-"))  # lighttpd runs as www-data
    os.chmod(served, 0o755)
    config, docroot, hook_out = base / "letsencrypt", served / "www", base / "hook-ran"
    docroot.mkdir()
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(pebble.ca_bundle)}
    common = [
        CERTBOT,
        "certonly",
        "--non-interactive",
        "--agree-tos",
        "--register-unsafely-without-email",
        "--server",
        pebble.directory,
        "--config-dir",
        str(config),
        "--work-dir",
        str(base / "work"),
        "--logs-dir",
        str(base / "logs"),
    ]

    def certbot(*args: str) -> None:
        proc = subprocess.run(
            [*common, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr

    certbot(
        "--standalone",
        "--http-01-port",
        str(pebble.http_port),
        "--http-01-address",
        "127.0.0.1",
        "--key-type",
        "rsa",
        "--rsa-key-size",
        "2048",
        "-d",
        STD,
        "--deploy-hook",
        f'printf %s "$RENEWED_DOMAINS" > {hook_out}',
    )
    server = Lighttpd(docroot, port=pebble.http_port).start()
    try:
        certbot(
            "--webroot",
            "-w",
            str(docroot),
            "--key-type",
            "ecdsa",
            "--elliptic-curve",
            "secp384r1",
            "-d",
            WEB,
        )
        challenge = docroot / ".well-known" / "acme-challenge"
        certbot(
            "--manual",
            "--preferred-challenges",
            "http",
            "-d",
            MANUAL,
            "--manual-auth-hook",
            f'mkdir -p {challenge} && printf %s "$CERTBOT_VALIDATION"'
            f' > {challenge}/"$CERTBOT_TOKEN"',
        )
        hook_out.unlink()  # certbot ran the deploy hook at issuance
        yield CertbotState(config, hook_out, docroot, server)
    finally:
        server.close()
        shutil.rmtree(served, ignore_errors=True)


def serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def test_import_then_renew_the_same_way(
    run_certsmith: RunCertsmith, cs_home: Path, certbot_state: CertbotState, tmp_path: Path
) -> None:
    le = tmp_path / "letsencrypt"
    shutil.copytree(certbot_state.config, le, symlinks=True)
    old_serials = {n: serial(le / "live" / n / "cert.pem") for n in (STD, WEB)}

    dry = run_certsmith("import", "certbot", le, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would import {STD}: {STD} (standalone on port " in dry.stdout
    assert ", rsa2048, 1 deploy command; expires " in dry.stdout
    assert f"would import {WEB}: {WEB} (webroot {certbot_state.docroot}, ecdsa-p384; " in dry.stdout
    assert dry.stderr == (
        f"certsmith: cannot import {MANUAL}: manual authenticator: certsmith "
        "cannot repeat hand-made or hook-script challenges yet; get it anew "
        "with 'certsmith get'\n"
    )
    assert not cs_home.exists()
    assert sorted(p.name for p in (le / "renewal").iterdir()) == sorted(
        f"{n}.conf" for n in (MANUAL, STD, WEB)
    )

    done = run_certsmith("import", "certbot", le)
    assert done.returncode == 0, done.stderr
    assert (
        f"{STD}: imported -> {cs_home}/live/{STD}/fullchain.pem; {le}/live/{STD}/*.pem "
        "now link there" in done.stdout
    )
    for name in (STD, WEB):
        assert os.readlink(cs_home / "live" / name) == f"../archive/{name}/1"
        assert os.readlink(le / "live" / name / "fullchain.pem") == str(
            cs_home / "live" / name / "fullchain.pem"
        )
        assert serial(le / "live" / name / "cert.pem") == old_serials[name]
        assert stat.S_IMODE((cs_home / "live" / name / "privkey.pem").stat().st_mode) == 0o600
        assert (le / "renewal" / f"{name}.conf.imported-by-certsmith").exists()
    assert (le / "renewal" / f"{MANUAL}.conf").exists()  # left to certbot
    [account_key] = (cs_home / "accounts").rglob("key.pem")
    assert stat.S_IMODE(account_key.stat().st_mode) == 0o600
    listing = {r["name"]: r for r in json.loads(run_certsmith("list", "--json", check=True).stdout)}
    assert set(listing) == {STD, WEB} and listing[STD]["last_result"] == "imported"

    # Webroot renewal through the running lighttpd, as certbot did it.
    web = run_certsmith("renew", "--force", WEB)
    assert web.returncode == 0, web.stderr
    assert f"{WEB}: renewed" in web.stdout
    # Standalone renewal on certbot's port (lighttpd out of the way); the hook runs.
    certbot_state.lighttpd.stop()
    std = run_certsmith("renew", "--force", STD)
    assert std.returncode == 0, std.stderr
    assert certbot_state.hook_out.read_text() == STD
    assert list((cs_home / "accounts").rglob("key.pem")) == [account_key]  # certbot's account
    for name, key_class in ((STD, rsa.RSAPublicKey), (WEB, ec.EllipticCurvePublicKey)):
        cert = x509.load_pem_x509_certificate((le / "live" / name / "cert.pem").read_bytes())
        assert cert.serial_number != old_serials[name]  # the old path shows the renewal
        assert cert.serial_number == serial(cs_home / "live" / name / "cert.pem")
        assert isinstance(cert.public_key(), key_class)
    web_key = x509.load_pem_x509_certificate(
        (cs_home / "live" / WEB / "cert.pem").read_bytes()
    ).public_key()
    assert isinstance(web_key, ec.EllipticCurvePublicKey) and web_key.curve.name == "secp384r1"
    rsa_key = x509.load_pem_x509_certificate(
        (cs_home / "live" / STD / "cert.pem").read_bytes()
    ).public_key()
    assert isinstance(rsa_key, rsa.RSAPublicKey) and rsa_key.key_size == 2048


def test_corrupt_or_partial_directory_imports_nothing(
    run_certsmith: RunCertsmith, cs_home: Path, tmp_path: Path, certbot_state: CertbotState
) -> None:
    corrupt = tmp_path / "corrupt"
    shutil.copytree(certbot_state.config, corrupt, symlinks=True)
    key = corrupt / "live" / WEB / "privkey.pem"
    key.resolve().write_text("-----BEGIN PRIVATE KEY-----\ngarbage\n")
    proc = run_certsmith("import", "certbot", corrupt)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"certsmith: broken: {WEB}: live/{WEB}: ")
    assert lines[-1] == (
        f"certsmith: {corrupt} is corrupt or incomplete (1 lineage(s) above); nothing was imported"
    )
    assert not cs_home.exists()
    assert (corrupt / "renewal" / f"{STD}.conf").exists()
    assert os.readlink(corrupt / "live" / STD / "cert.pem").startswith("../../archive/")

    partial = tmp_path / "partial"
    shutil.copytree(certbot_state.config, partial, symlinks=True)
    shutil.rmtree(partial / "accounts")
    proc = run_certsmith("import", "certbot", partial, "--dry-run")
    assert proc.returncode == 2
    assert f"certsmith: broken: {STD}: account " in proc.stderr
    assert "is missing from accounts/" in proc.stderr
    assert not cs_home.exists()

    missing = run_certsmith("import", "certbot", tmp_path / "nowhere")
    assert missing.returncode == 2
    assert missing.stderr == (
        f"certsmith: {tmp_path / 'nowhere'} is not a certbot directory (no renewal/ in it)\n"
    )
