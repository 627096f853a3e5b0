"""``certsmith local --csr`` with real requests made by ``openssl req``, through the real CLI.

The local CA signs only what certsmith would make itself: the key types ``--key-type`` offers
(ECDSA P-256/P-384, RSA 2048/3072/4096 with exponent 65537) and DNS / IP names, the only kinds
its name constraints cover. Anything else is refused with one line, a non-zero exit, and nothing
written: not the CA, not a certificate.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.test_localca import one_line_error, run_cs, tree

OFFERED = "ecdsa-p256, ecdsa-p384, rsa2048, rsa3072, rsa4096"


def openssl_csr(directory: Path, name: str, newkey: list[str], san: str = "DNS:svc.test") -> Path:
    """A CSR from ``openssl req -new -newkey ...`` (its key stays in ``directory``)."""
    csr = directory / f"{name}.csr"
    subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            *newkey,
            "-nodes",
            "-keyout",
            str(directory / f"{name}.key"),
            "-subj",
            "/CN=svc.test",
            "-addext",
            f"subjectAltName={san}",
            "-out",
            str(csr),
        ],
        check=True,
        capture_output=True,
    )
    return csr


class Place:
    """A state directory (with or without a CA) and a working directory holding the CSRs."""

    def __init__(self, tmp: Path, with_ca: bool) -> None:
        self.home = tmp / "cs-home"
        self.work = tmp / "work"
        self.work.mkdir()
        if with_ca:
            done = self.cs(
                "-q",
                "local",
                "--cert-file",
                str(tmp / "seed.pem"),
                "--key-file",
                str(tmp / "seed-key.pem"),
                "seed.test",
            )
            assert done.returncode == 0, done.stderr

    def cs(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cs(*args, home=self.home, cwd=self.work)

    def refused(self, csr: Path) -> str:
        """Run ``local --csr``; assert one line, non-zero, nothing written; return the line."""
        home_before, work_before = tree(self.home), tree(self.work)
        existed = self.home.exists()
        line = one_line_error(self.cs("local", "--csr", str(csr)))
        assert tree(self.home) == home_before and tree(self.work) == work_before
        assert self.home.exists() == existed  # no CA made for a refused request
        return line


@pytest.fixture(params=[False, True], ids=["no-ca-yet", "existing-ca"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    return Place(tmp_path, request.param)


@pytest.fixture(scope="module")
def csrs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("csrs")


UNOFFERED_KEYS = [
    ("rsa1024", ["-newkey", "rsa:1024"], "RSA 1024-bit"),
    ("ed25519", ["-newkey", "ed25519"], "Ed25519"),
    ("ed448", ["-newkey", "ed448"], "Ed448"),
    ("p521", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"], "ECDSA P-521"),
    ("secp256k1", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"], "ECDSA secp256k1"),
    (
        "rsa2048-e3",
        ["-newkey", "rsa:2048", "-pkeyopt", "rsa_keygen_pubexp:3"],
        "RSA 2048-bit with public exponent 3",
    ),
    ("rsa-pss", ["-newkey", "rsa-pss", "-pkeyopt", "rsa_keygen_bits:2048"], "RSA-PSS"),
]


@pytest.mark.parametrize(
    ("name", "newkey", "described"), UNOFFERED_KEYS, ids=[k[0] for k in UNOFFERED_KEYS]
)
def test_a_key_certsmith_would_not_make_is_refused(
    place: Place, csrs: Path, name: str, newkey: list[str], described: str
) -> None:
    csr = csrs / f"{name}.csr"
    if not csr.exists():
        openssl_csr(csrs, name, newkey)
    line = place.refused(csr)
    assert f"the key is {described};" in line, line
    assert f"CSR {csr}" in line and OFFERED in line, line


DROPPED_NAMES = [
    ("email", "DNS:svc.test,email:dev@svc.test", "e-mail dev@svc.test"),
    ("uri", "DNS:svc.test,URI:spiffe://svc.test/api", "URI spiffe://svc.test/api"),
    ("email-only", "email:dev@svc.test", "e-mail dev@svc.test"),
    (
        "upn",
        "DNS:svc.test,otherName:1.3.6.1.4.1.311.20.2.3;UTF8:dev@svc.test",
        "otherName 1.3.6.1.4.1.311.20.2.3",
    ),
    (
        "two",
        "URI:https://svc.test/,DNS:svc.test,email:a@svc.test",
        "URI https://svc.test/, e-mail a@svc.test",
    ),
]


@pytest.mark.parametrize(("name", "san", "named"), DROPPED_NAMES, ids=[d[0] for d in DROPPED_NAMES])
def test_names_the_ca_does_not_certify_are_refused_and_named(
    place: Place, csrs: Path, name: str, san: str, named: str
) -> None:
    csr = csrs / f"san-{name}.csr"
    if not csr.exists():
        openssl_csr(csrs, f"san-{name}", ["-newkey", "rsa:2048"], san)
    line = place.refused(csr)
    assert f"CSR {csr} asks for names the local CA does not certify: {named}" in line, line
    assert "DNS names and IP addresses" in line, line


def test_a_csr_with_a_bad_signature_is_refused(place: Place, csrs: Path) -> None:
    good = openssl_csr(
        csrs, "tampered", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "DNS:svc.test"
    )
    request = x509.load_pem_x509_csr(good.read_bytes())
    data = request.public_bytes(serialization.Encoding.DER)
    assert data.count(b"svc.test") == 2  # subject CN and SAN
    bad = csrs / "tampered-bad.csr"
    bad.write_bytes(data.replace(b"svc.test", b"svd.test"))  # still parses; signature breaks
    assert not x509.load_der_x509_csr(bad.read_bytes()).is_signature_valid
    line = place.refused(bad)
    assert line == f"certsmith: CSR {bad} has an invalid signature", line


def test_a_csr_whose_key_is_off_its_curve_is_refused(place: Place, csrs: Path) -> None:
    good = openssl_csr(csrs, "offcurve", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
    request = x509.load_pem_x509_csr(good.read_bytes())
    data = bytearray(request.public_bytes(serialization.Encoding.DER))
    spki = request.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    data[data.find(spki) + len(spki) - 1] ^= 1  # the point's last octet: now off the curve
    bad = csrs / "offcurve-bad.csr"
    bad.write_bytes(bytes(data))
    line = place.refused(bad)
    assert line == f"certsmith: CSR {bad} has an invalid public key", line


def test_many_refused_names_still_make_one_short_line(place: Place, csrs: Path) -> None:
    san = ",".join(["DNS:svc.test", *(f"email:u{i}@svc.test" for i in range(40))])
    csr = openssl_csr(csrs, "many", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], san)
    line = place.refused(csr)
    assert (
        "e-mail u0@svc.test, e-mail u1@svc.test, e-mail u2@svc.test, e-mail u3@svc.test, "
        "e-mail u4@svc.test and 35 more (it signs DNS names" in line
    ), line


OFFERED_KEYS = [
    ("p256", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], False),
    ("p384", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"], False),
    ("rsa2048", ["-newkey", "rsa:2048"], True),
    ("rsa3072", ["-newkey", "rsa:3072"], True),
]


@pytest.mark.parametrize(("name", "newkey", "rsa"), OFFERED_KEYS, ids=[k[0] for k in OFFERED_KEYS])
def test_keys_certsmith_makes_are_signed(
    tmp_path: Path, name: str, newkey: list[str], rsa: bool
) -> None:
    place = Place(tmp_path, with_ca=False)
    csr = openssl_csr(place.work, name, newkey, "DNS:svc.test,IP:127.0.0.1")
    done = place.cs("local", "--csr", csr.name)
    assert done.returncode == 0, done.stderr
    assert "Created a certificate for: svc.test, 127.0.0.1" in done.stdout
    cert = place.work / "svc.test.pem"
    verify = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(place.home / "ca/root.pem"),
            "-untrusted",
            str(cert),
            str(cert),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    leaf = x509.load_pem_x509_certificates(cert.read_bytes())[0]
    assert leaf.public_key() == x509.load_pem_x509_csr(csr.read_bytes()).public_key()
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment == rsa
