"""The served chain as a TLS client sees it: the path it builds, and what in it clients refuse
(pure: certificates and a time in, findings out).

``cryptography``'s verifier says *whether* a chain leads to a trusted root; it does not say
*why* not in words an operator can act on ("candidates exhausted"). Here the path is built the
way OpenSSL builds it (trust store first, then the served certificates, in any order) and every
certificate on it is judged on its own, so the reason names the certificate that fails:
"intermediate 'X' expired on ...", not "does not lead to a trusted root".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

MIN_RSA_BITS = 2048  # OpenSSL's security level 2 (Debian's default), the CA/B Forum, browsers

_SIG = SignatureAlgorithmOID
# OpenSSL's names, as `openssl x509 -text` shows them.
_SIGNATURE_NAMES = {
    _SIG.RSA_WITH_MD5: "md5WithRSAEncryption",
    _SIG.RSA_WITH_SHA1: "sha1WithRSAEncryption",
    _SIG.RSA_WITH_SHA224: "sha224WithRSAEncryption",
    _SIG.RSA_WITH_SHA256: "sha256WithRSAEncryption",
    _SIG.RSA_WITH_SHA384: "sha384WithRSAEncryption",
    _SIG.RSA_WITH_SHA512: "sha512WithRSAEncryption",
    _SIG.RSASSA_PSS: "rsassaPss",
    _SIG.ECDSA_WITH_SHA1: "ecdsa-with-SHA1",
    _SIG.ECDSA_WITH_SHA224: "ecdsa-with-SHA224",
    _SIG.ECDSA_WITH_SHA256: "ecdsa-with-SHA256",
    _SIG.ECDSA_WITH_SHA384: "ecdsa-with-SHA384",
    _SIG.ECDSA_WITH_SHA512: "ecdsa-with-SHA512",
    _SIG.ED25519: "ED25519",
    _SIG.ED448: "ED448",
    _SIG.DSA_WITH_SHA1: "dsa_with_SHA1",
    _SIG.DSA_WITH_SHA256: "dsa_with_SHA256",
}
# Digests no current client accepts in a certificate signature.
_WEAK_DIGESTS = {
    _SIG.RSA_WITH_MD5: "MD5",
    _SIG.RSA_WITH_SHA1: "SHA-1",
    _SIG.ECDSA_WITH_SHA1: "SHA-1",
    _SIG.DSA_WITH_SHA1: "SHA-1",
}


@dataclass(frozen=True)
class Link:
    """One certificate on the path: its role, and where the server sent it (None: it came
    from the trust store only)."""

    cert: x509.Certificate
    role: str  # "leaf", "intermediate" or "root"
    served_at: int | None


def sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses of the subjectAltName."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return (
        list(san.get_values_for_type(x509.DNSName)),
        [str(ip) for ip in san.get_values_for_type(x509.IPAddress)],
    )


def common_name(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else name.rfc4514_string() or "(empty name)"


def display_name(cert: x509.Certificate) -> str:
    """The subject's CN; for a leaf without a subject (ACME CAs issue those), its first SAN."""
    if cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME) or cert.subject.rfc4514_string():
        return common_name(cert.subject)
    dns, ips = sans(cert)
    return (dns + ips)[0] if dns or ips else "(empty name)"


def key_type(cert: x509.Certificate) -> str:
    pub = cert.public_key()
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return f"ECDSA {pub.curve.name}"
    if isinstance(pub, rsa.RSAPublicKey):
        return f"RSA {pub.key_size}"
    if isinstance(pub, dsa.DSAPublicKey):
        return f"DSA {pub.key_size}"
    if isinstance(pub, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(pub, ed448.Ed448PublicKey):
        return "Ed448"
    return type(pub).__name__


def signature_name(cert: x509.Certificate) -> str:
    oid = cert.signature_algorithm_oid
    return _SIGNATURE_NAMES.get(oid, oid.dotted_string)


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and _issued_by(cert, cert)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer`` signed ``cert``. Signatures ``cryptography`` will not check (SHA-1,
    MD5) fall back to names and key identifiers, so such a chain is still built, and its weak
    signature reported as what it is."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, TypeError):
        return False
    except (ValueError, UnsupportedAlgorithm):
        return _key_ids_agree(cert, issuer)
    return True


def _key_ids_agree(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return True  # names agree and nothing says otherwise
    return aki.key_identifier is None or aki.key_identifier == ski.digest


def _served_index(cert: x509.Certificate, served: Sequence[x509.Certificate]) -> int | None:
    return next((i for i, c in enumerate(served) if c == cert), None)


def build_path(
    served: Sequence[x509.Certificate], roots: Sequence[x509.Certificate]
) -> tuple[Link, ...]:
    """Leaf (``served[0]``) up to a trust anchor: at each step a trusted issuer is preferred
    (OpenSSL's X509_V_FLAG_TRUSTED_FIRST), else the served certificate that signed it,
    wherever the server put it. Stops at a self-signed certificate or a missing issuer."""
    links = [Link(served[0], "leaf", 0)]
    used = {0}
    while len(links) <= len(served):
        current = links[-1].cert
        anchor = next((r for r in roots if _issued_by(current, r)), None)
        if anchor is not None:
            if anchor != current:
                links.append(Link(anchor, "root", _served_index(anchor, served)))
            return tuple(links)
        if _self_signed(current):
            break
        found = next(
            (i for i, c in enumerate(served) if i not in used and _issued_by(current, c)), None
        )
        if found is None:
            break
        used.add(found)
        cert = served[found]
        links.append(Link(cert, "root" if _self_signed(cert) else "intermediate", found))
    return tuple(links)


def _who(link: Link) -> str:
    if link.role == "leaf":
        return "certificate"
    return f"{link.role} {display_name(link.cert)!r}"


def _ago(days: float) -> str:
    return f"{days:.0f} days ago"


def link_problems(link: Link, now: dt.datetime) -> list[str]:
    """What makes clients refuse this certificate, first cause first. A leaf's own dates are
    judged by the caller (with the days left); a self-signed certificate's signature over
    itself is not checked by clients, so it is not judged here either."""
    cert, who, problems = link.cert, _who(link), []
    if link.role != "leaf":
        if now > cert.not_valid_after_utc:
            days = (now - cert.not_valid_after_utc).total_seconds() / 86400
            problems.append(
                f"{who} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M}Z ({_ago(days)})"
            )
        elif now < cert.not_valid_before_utc:
            problems.append(
                f"{who} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M}Z"
            )
    pub = cert.public_key()
    if isinstance(pub, rsa.RSAPublicKey | dsa.DSAPublicKey) and pub.key_size < MIN_RSA_BITS:
        problems.append(
            f"{who} key is {key_type(cert)}: clients refuse keys under {MIN_RSA_BITS} bits"
        )
    weak = _WEAK_DIGESTS.get(cert.signature_algorithm_oid)
    if weak and not _self_signed(cert):
        problems.append(f"{who} signed with {weak} ({signature_name(cert)}): clients refuse it")
    return problems


def order_problem(path: Sequence[Link], served: Sequence[x509.Certificate]) -> str | None:
    """TLS 1.2 (RFC 5246 7.4.2) wants each certificate followed by the one that certifies it;
    OpenSSL and browsers sort a shuffled chain out, stricter clients refuse it."""
    at = [link.served_at for link in path if link.served_at is not None]
    if at == sorted(at):
        return None
    shown = " <- ".join(display_name(c) for c in served)
    expected = " <- ".join(display_name(served[i]) for i in at)
    return (
        f"chain served in the wrong order: {shown}; expected {expected} "
        "(each certificate followed by its issuer)"
    )
