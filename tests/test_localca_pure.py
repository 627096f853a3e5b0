"""The local CA's pure parts: DER encoding, name constraints, certificate templates.

Property tests check our hand-written DER against ``cryptography``'s parser and X.509 path
validator (an independent implementation), so an encoding slip cannot hide.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x25519
from cryptography.x509 import verification
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from certsmith.base import certder, der
from certsmith.base.identifiers import Identifier, parse_identifier
from certsmith.base.keytypes import KEY_TYPES, public_key_kind
from certsmith.base.nameconstraints import DEFAULT_DNS, Constraints, parse_allowed
from certsmith.core.issuers.localca import LocalCA, generate_key, key_pem, spki_of
from certsmith.errors import IdentifierError, UsageError

label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
local_suffix = st.sampled_from(DEFAULT_DNS)
public_tld = st.sampled_from(["com", "org", "net", "dev", "io", "de", "app"])


# Octet boundaries on both sides of zero; -128 was found by Hypothesis (it was ``ff 80``).
INTEGER_EDGES = [
    -128,
    -129,
    -256,
    -257,
    -32768,
    -32769,
    -(2**63),
    -(2**200),
    -1,
    0,
    1,
    127,
    128,
    255,
    256,
    32767,
    32768,
    2**63 - 1,
    2**63,
    2**200,
]


@given(st.integers(min_value=-(2**200), max_value=2**200))
@example(-128)
@example(-129)
@example(-256)
@example(-32768)
@example(-(2**200))
@example(127)
@example(128)
@example(255)
@example(256)
@example(0)
@example(2**200)
def test_integer_is_minimal_twos_complement(n: int) -> None:
    tag, value, _ = der.read(der.integer(n))
    assert tag == der.INTEGER
    assert int.from_bytes(value, "big", signed=True) == n
    # DER: no redundant leading 0x00 / 0xff octet
    if len(value) > 1:
        assert not (value[0] == 0 and value[1] < 0x80)
        assert not (value[0] == 0xFF and value[1] >= 0x80)


@pytest.mark.parametrize("n", INTEGER_EDGES)
def test_integer_matches_openssl(tmp_path: Path, n: int) -> None:
    """OpenSSL's own encoder (``asn1parse -genstr``) is the reference for every edge."""
    out = tmp_path / "int.der"
    subprocess.run(
        ["openssl", "asn1parse", "-genstr", f"INTEGER:{n}", "-out", str(out)],
        check=True,
        capture_output=True,
    )
    assert der.integer(n) == out.read_bytes()


@given(st.binary(max_size=70000))
def test_tlv_length_round_trip(data: bytes) -> None:
    encoded = der.octet_string(data)
    tag, value, end = der.read(encoded)
    assert (tag, value, end) == (der.OCTET_STRING, data, len(encoded))


@given(st.lists(st.integers(min_value=0, max_value=2**40), min_size=1, max_size=8))
def test_oid_matches_cryptography(arcs: list[int]) -> None:
    dotted = ".".join(["1", "3", *map(str, arcs)])
    oid = x509.ObjectIdentifier(dotted)
    name = x509.Name([x509.NameAttribute(oid, "x")])
    assert der.oid(dotted) in name.public_bytes()


@given(
    st.lists(st.integers(min_value=0, max_value=2**70), min_size=1, max_size=8),
    st.sampled_from(["0", "1", "2"]),
    st.integers(min_value=0, max_value=2**20),
)
def test_read_oid_inverts_oid(arcs: list[int], first: str, second: int) -> None:
    second = second if first == "2" else second % 40
    dotted = ".".join([first, str(second), *map(str, arcs)])
    _, value, _ = der.read(der.oid(dotted))
    assert der.read_oid(value) == dotted  # (oid() itself is checked against cryptography above)


@pytest.mark.parametrize("bad", [b"", b"\x81", b"\x80\x01", b"\x2a\x80\x01"])
def test_read_oid_refuses_truncated_or_padded_arcs(bad: bytes) -> None:
    with pytest.raises(der.DerError):
        der.read_oid(bad)


@given(st.sets(st.integers(min_value=0, max_value=8), min_size=1))
def test_named_bits_are_der(bits: set[int]) -> None:
    _, value, _ = der.read(der.named_bits(bits))
    unused = value[0]
    number = int.from_bytes(value[1:], "big")
    assert number & ((1 << unused) - 1) == 0 and number >> unused & 1  # last bit is set


@given(label, local_suffix)
def test_default_constraints_permit_local_names(sub: str, suffix: str) -> None:
    c = Constraints.build()
    assert c.permits(parse_identifier(f"{sub}.{suffix}"))
    assert c.permits(parse_identifier(f"*.{sub}.{suffix}"))


@given(st.lists(label, min_size=1, max_size=3), public_tld)
def test_default_constraints_refuse_public_names(labels: list[str], tld: str) -> None:
    assert not Constraints.build().permits(parse_identifier(".".join([*labels, tld])))


@given(st.ip_addresses())
@example(ipaddress.ip_address("8.8.8.8"))
@example(ipaddress.ip_address("127.0.0.1"))
@example(ipaddress.ip_address("::1"))
@example(ipaddress.ip_address("::ffff:8.8.8.8"))
@example(ipaddress.ip_address("::ffff:127.0.0.1"))
def test_default_constraints_refuse_global_addresses(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    ident = Identifier("ip", address.compressed)
    if address.is_global:
        assert not Constraints.build().permits(ident)
    # An IPv4-mapped IPv6 address is 16 octets, which no 4-octet constraint matches (RFC 5280
    # 4.2.1.10), though newer Pythons (gh-117566) call ::ffff:127.0.0.1 a loopback address.
    mapped = isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None
    if address.is_loopback and not mapped:
        assert Constraints.build().permits(ident)
    if mapped:
        assert not Constraints.build().permits(ident)


extra_item = st.one_of(
    st.builds(lambda a, b, t: f"{a}.{b}.{t}", label, label, public_tld),
    st.builds(
        lambda n, p: ipaddress.ip_network(f"{n}/{p}", strict=False),
        st.ip_addresses(v=4),
        st.integers(min_value=8, max_value=32),
    ),
)


@given(st.lists(extra_item, max_size=6))
def test_constraints_der_round_trip_and_cryptography_agrees(extra: list[object]) -> None:
    c = Constraints.build(extra)  # type: ignore[arg-type]
    assert Constraints.from_der(c.to_der()) == c
    ext = x509.load_der_x509_certificate(_cert_with(c.to_der())).extensions
    parsed = ext.get_extension_for_class(x509.NameConstraints).value
    permitted = parsed.permitted_subtrees or []
    assert sorted(str(g.value) for g in permitted if isinstance(g, x509.DNSName)) == list(c.dns)
    assert {g.value for g in permitted if isinstance(g, x509.IPAddress)} == set(c.ip)


def _cert_with(name_constraints: bytes) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    spki = spki_of(key)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    subject = certder.name(cn="t")
    return certder.sign(
        certder.Template(
            1,
            subject,
            subject,
            now,
            now + dt.timedelta(days=1),
            spki,
            (certder.Extension(certder.EXT_NAME_CONSTRAINTS, name_constraints, True),),
        ),
        key,
    )


def test_parse_allowed() -> None:
    assert parse_allowed("Example.DEV") == "example.dev"
    assert parse_allowed("*.example.dev") == "example.dev"
    assert parse_allowed("10.1.0.0/16") == ipaddress.ip_network("10.1.0.0/16")
    for bad in ("com", "exa mple.dev", "10.0.0.0/99", "a..b"):
        with pytest.raises(IdentifierError):
            parse_allowed(bad)


@pytest.mark.parametrize("key_type", ["ecdsa-p256", "ecdsa-p384"])
def test_pkcs8_matches_openssl(key_type: str) -> None:
    key = generate_key(key_type)
    expected = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert key_pem(key) == expected


# One CA for the validator property test (its root key is the expensive part).
@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    ca = LocalCA(Path(tmp_path_factory.mktemp("ca")))
    ca.ensure(Constraints.build(["example.dev"]))
    return ca


names = st.one_of(
    st.builds(lambda a, s: f"{a}.{s}", label, local_suffix),
    st.builds(lambda a, t: f"{a}.{t}", label, public_tld),
    st.builds(lambda a: f"{a}.example.dev", label),
    st.just("localhost"),
    st.just("example.dev"),
    st.just("notexample.dev"),
)


@settings(
    max_examples=60,
    deadline=None,  # (its own list replaces the profile's: keep too_slow)
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(names)
def test_our_check_agrees_with_cryptography_path_validation(ca: LocalCA, name: str) -> None:
    """A leaf forged for ``name`` with the intermediate key validates iff we permit ``name``."""
    inter = ca.intermediate()
    assert inter is not None and inter.constraints is not None
    ident = parse_identifier(name)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = certder.sign(
        certder.Template(
            certder.new_serial(),
            inter.cert.subject,
            certder.name(o="forged"),
            now - dt.timedelta(minutes=1),
            now + dt.timedelta(days=1),
            spki_of(key),
            (
                certder.basic_constraints(False),
                certder.key_usage({certder.DIGITAL_SIGNATURE}),
                certder.extended_key_usage(certder.EKU_SERVER),
                certder.subject_alt_names([ident]),
                certder.authority_key_id(inter.key_id),
            ),
        ),
        inter.key,
    )
    store = verification.Store([x509.load_der_x509_certificate(ca.root_der())])
    verifier = verification.PolicyBuilder().store(store).build_server_verifier(x509.DNSName(name))
    try:
        verifier.verify(
            x509.load_der_x509_certificate(leaf), [x509.load_der_x509_certificate(inter.cert_der)]
        )
        accepted = True
    except verification.VerificationError:
        accepted = False
    assert accepted == inter.constraints.permits(ident)


def test_days_are_bounded(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path)
    for days in (0, 399):
        with pytest.raises(UsageError):
            ca.issue([parse_identifier("localhost")], days=days)
    assert not (tmp_path / "ca").exists()


# -- which keys the local CA signs --------------------------------------------------------------


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_every_offered_key_type_is_recognised(key_type: str) -> None:
    assert public_key_kind(spki_of(generate_key(key_type))).key_type == key_type


def _spki(public: object) -> bytes:
    return public.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _compressed_p256() -> bytes:
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    )
    return der.seq(
        der.seq(der.oid("1.2.840.10045.2.1"), der.oid("1.2.840.10045.3.1.7")), der.bit_string(point)
    )


UNOFFERED = [
    ("RSA 1024-bit", lambda: _spki(rsa.generate_private_key(65537, 1024).public_key())),
    (
        "RSA 2048-bit with public exponent 3",
        lambda: _spki(rsa.generate_private_key(3, 2048).public_key()),
    ),
    ("RSA 2047-bit", lambda: _spki(rsa.generate_private_key(65537, 2047).public_key())),
    ("ECDSA P-521", lambda: _spki(ec.generate_private_key(ec.SECP521R1()).public_key())),
    ("ECDSA P-224", lambda: _spki(ec.generate_private_key(ec.SECP224R1()).public_key())),
    ("ECDSA secp256k1", lambda: _spki(ec.generate_private_key(ec.SECP256K1()).public_key())),
    (
        "ECDSA brainpoolP256r1",
        lambda: _spki(ec.generate_private_key(ec.BrainpoolP256R1()).public_key()),
    ),
    ("ECDSA P-256 with a compressed or malformed point", _compressed_p256),
    ("Ed25519", lambda: _spki(ed25519.Ed25519PrivateKey.generate().public_key())),
    ("Ed448", lambda: _spki(ed448.Ed448PrivateKey.generate().public_key())),
    ("X25519", lambda: _spki(x25519.X25519PrivateKey.generate().public_key())),
    ("DSA", lambda: _spki(dsa.generate_private_key(1024).public_key())),
    ("not a readable public key", lambda: b"\x30\x03\x02\x01\x00"),
    (
        "not a readable public key",
        lambda: der.seq(  # a negative "2048-bit" modulus
            der.seq(der.oid("1.2.840.113549.1.1.1"), der.null()),
            der.bit_string(der.seq(der.integer(-(2**2047) - 1), der.integer(65537))),
        ),
    ),
]


@pytest.mark.parametrize(("described", "make"), UNOFFERED, ids=[u[0] for u in UNOFFERED])
def test_keys_certsmith_would_not_make_are_described(
    described: str, make: Callable[[], bytes]
) -> None:
    kind = public_key_kind(make())
    assert kind == (None, described)


@given(st.binary(max_size=200))
def test_any_bytes_are_classified_never_raised(data: bytes) -> None:
    kind = public_key_kind(data)
    assert kind.key_type is None or kind.key_type in KEY_TYPES


def test_the_ca_refuses_an_unoffered_key_before_making_anything(tmp_path: Path) -> None:
    weak = _spki(rsa.generate_private_key(65537, 1024).public_key())
    with pytest.raises(UsageError, match="the key is RSA 1024-bit"):
        LocalCA(tmp_path).issue([parse_identifier("localhost")], public_key_der=weak)
    with pytest.raises(UsageError, match="unknown key type 'rsa1024'"):
        LocalCA(tmp_path).issue([parse_identifier("localhost")], key_type="rsa1024")
    assert not (tmp_path / "ca").exists()
