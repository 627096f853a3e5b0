"""The local development CA: a root that only signs intermediates, and a name-constrained
intermediate that signs leaf certificates.

State lives in ``<home>/ca/`` (0700)::

    root.pem            the root certificate (what trust stores import)
    root-key.pem        its key (0600); used only to sign a new intermediate
    intermediate.pem    the current intermediate's key and certificate in one file (0600),
                        so one rename replaces both

The intermediate's NameConstraints extension *is* the record of which names the CA may
certify: by default only non-public namespaces (``localhost``, ``.test``, ``.internal``,
``.home.arpa``, ``.lan``, ``.local``, loopback and private networks). Constraints are fixed when a
certificate is signed, so allowing another domain means a new intermediate, signed by the same
root: trust stores need no change, and certificates issued earlier keep working.

This module imports ``cryptography``'s key primitives only (see :mod:`certsmith.base.certder`).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from certsmith.base import certder, der
from certsmith.base.identifiers import Identifier
from certsmith.base.keytypes import RSA_EXPONENT, check_key_type, check_offered_key
from certsmith.base.nameconstraints import Constraints, Network
from certsmith.base.store import keys as store_keys
from certsmith.base.store import open_store
from certsmith.errors import CAError, IdentifierError, NotFoundError, UsageError

ROOT_CERT = store_keys.CA_ROOT_CERT
ROOT_KEY = store_keys.CA_ROOT_KEY
INTERMEDIATE = store_keys.CA_INTERMEDIATE

ROOT_DAYS = 3650
INTERMEDIATE_DAYS = 5 * 365
MAX_LEAF_DAYS = 398  # CA/B Forum, Apple and Chrome: longer leaves are rejected
DEFAULT_LEAF_DAYS = 90
ORGANIZATION = "certsmith local development CA"
LEAF_ORGANIZATION = "certsmith development certificate"
SKEW = dt.timedelta(minutes=1)


def owner() -> str:
    """``user@host``, written into subjects so a CA's origin is recognisable in trust stores."""
    user = os.environ.get("USER") or os.environ.get("LOGNAME")
    if not user:
        import pwd

        try:
            user = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            user = str(os.getuid())
    return f"{user}@{os.uname().nodename}"


def check_days(days: int) -> int:
    if not 1 <= days <= MAX_LEAF_DAYS:
        raise UsageError(
            f"--days {days}: must be between 1 and {MAX_LEAF_DAYS} "
            "(browsers reject longer-lived certificates)"
        )
    return days


def generate_key(key_type: str) -> Any:
    """A new key of one of the types ``--key-type`` offers (and no other)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    key_type = check_key_type(key_type)
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=RSA_EXPONENT, key_size=int(key_type[3:]))


def key_pem(key: Any) -> bytes:
    fast = certder.ec_pkcs8(key, spki_of(key))
    if fast is not None:
        return der.pem("PRIVATE KEY", fast)
    from cryptography.hazmat.primitives._serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    pem: bytes = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return pem


def spki_of(key: Any) -> bytes:
    from cryptography.hazmat.primitives._serialization import Encoding, PublicFormat

    spki: bytes = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return spki


def load_key(pem: bytes, what: str) -> Any:
    try:
        # The loader itself: ``serialization``'s package __init__ pulls in SSH support we do
        # not need on the hot path.
        from cryptography.hazmat.bindings._rust import openssl as rust_openssl

        loader = rust_openssl.keys.load_pem_private_key
    except (ImportError, AttributeError):  # other cryptography layouts
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        loader = load_pem_private_key
    try:
        return loader(pem, None, unsafe_skip_rsa_key_validation=False)
    except (ValueError, TypeError) as exc:
        raise CAError(f"cannot read the local CA's {what} key: {exc}") from exc


class CertKey(NamedTuple):
    """A CA certificate with its key (and, for the intermediate, its name constraints)."""

    cert_der: bytes
    cert: certder.Parsed
    key: Any
    constraints: Constraints | None

    @property
    def cert_pem(self) -> bytes:
        return der.pem("CERTIFICATE", self.cert_der)

    @property
    def key_id(self) -> bytes:
        return self.cert.key_id

    @classmethod
    def load(cls, cert_der: bytes, key: Any) -> CertKey:
        parsed = certder.parse(cert_der)
        value = parsed.extension(certder.EXT_NAME_CONSTRAINTS)
        return cls(cert_der, parsed, key, Constraints.from_der(value) if value else None)


class Leaf(NamedTuple):
    """An issued leaf: certificate + intermediate (PEM), and its key unless a CSR was signed."""

    chain_pem: bytes
    key_pem: bytes | None
    cert_der: bytes
    intermediate_der: bytes
    key: Any
    not_after: dt.datetime


class LocalCA:
    """The CA under ``<home>/ca``; created on first use."""

    def __init__(self, home: Path) -> None:
        self.store = open_store(home)
        self.path = Path(home) / "ca"
        self._intermediate: CertKey | None = None

    # -- reading --------------------------------------------------------------------------------

    def exists(self) -> bool:
        return (self.path / "root.pem").is_file() and (self.path / "intermediate.pem").is_file()

    def root_pem(self) -> bytes:
        pem = self.store.get(ROOT_CERT)
        if pem is None:
            raise NotFoundError(f"no local CA in {self.path} yet: run 'certsmith local NAME'")
        return pem

    def root_der(self) -> bytes:
        blocks = der.unpem(self.root_pem(), "CERTIFICATE")
        if not blocks:
            raise CAError(f"{self.path / 'root.pem'} holds no certificate")
        return blocks[0]

    def intermediate(self, *, fresh: bool = False) -> CertKey | None:
        if self._intermediate is not None and not fresh:
            return self._intermediate
        data = self.store.get(INTERMEDIATE)
        if data is None:
            return None
        try:
            certs = der.unpem(data, "CERTIFICATE")
            keys = der.unpem(data, "PRIVATE KEY")
            certder.parse(certs[0])
        except (IndexError, ValueError, UsageError) as exc:
            raise CAError(
                f"{self.path / 'intermediate.pem'} is damaged ({exc}); remove it "
                "to have a new intermediate made"
            ) from None
        if not keys:
            raise CAError(
                f"{self.path / 'intermediate.pem'} holds no key; remove it to have "
                "a new intermediate made"
            )
        inter = CertKey.load(certs[0], load_key(der.pem("PRIVATE KEY", keys[0]), "intermediate"))
        if inter.constraints is None:
            raise CAError(
                "the local CA's intermediate has no name constraints; remove "
                f"{self.path / 'intermediate.pem'} to have a new one made"
            )
        self._intermediate = inter
        return inter

    def constraints(self) -> Constraints | None:
        inter = self.intermediate()
        return inter.constraints if inter else None

    # -- creating -------------------------------------------------------------------------------

    def desired(
        self, allow: Iterable[str | Network] = (), forget: Iterable[str | Network] = ()
    ) -> Constraints:
        """The constraints after adding ``allow`` and removing ``forget`` (pure; no writes)."""
        current = self.constraints() or Constraints.build()
        extra: set[str | Network] = set(current.dns) | set(current.ip)
        extra |= set(allow)
        for item in forget:
            if item not in extra:
                raise UsageError(f"{item} is not among the local CA's allowed names")
            extra.discard(item)
        wanted = Constraints.build(extra)
        for item in forget:  # the defaults cannot be forgotten: they would come straight back
            if item in set(wanted.dns) | set(wanted.ip):
                raise UsageError(f"{item} is a built-in local namespace and cannot be removed")
        return wanted

    def ensure(
        self, constraints: Constraints | None = None, valid_until: dt.datetime | None = None
    ) -> CertKey:
        """Make the root (if missing) and an intermediate with ``constraints`` valid through
        ``valid_until`` (if the current one differs); return the intermediate."""
        inter = self.intermediate()
        if (
            inter is not None
            and self._fits(inter, constraints, valid_until)
            and (self.path / "root.pem").is_file()
        ):
            return inter
        with self.store.lock(store_keys.CA_LEASE):
            inter = self.intermediate(fresh=True)  # another process may have done it meanwhile
            if (
                inter is not None
                and self._fits(inter, constraints, valid_until)
                and (self.path / "root.pem").is_file()
            ):
                return inter
            if constraints is None:
                constraints = (inter.constraints if inter else None) or Constraints.build()
            # (If root.pem is gone, a new root is made and with it a new intermediate.)
            root = self._root_or_create()
            return self._new_intermediate(root, constraints, valid_until)

    @staticmethod
    def _fits(
        inter: CertKey, constraints: Constraints | None, valid_until: dt.datetime | None
    ) -> bool:
        if constraints is not None and inter.constraints != constraints:
            return False
        return valid_until is None or inter.cert.not_after >= valid_until

    def _root_or_create(self) -> CertKey:
        cert_pem = self.store.get(ROOT_CERT)
        key_pem_ = self.store.get(ROOT_KEY)
        if cert_pem is not None and key_pem_ is not None:
            blocks = der.unpem(cert_pem, "CERTIFICATE")
            if not blocks:
                raise CAError(f"{self.path / 'root.pem'} holds no certificate")
            return CertKey.load(blocks[0], load_key(key_pem_, "root"))
        if cert_pem is not None:
            raise CAError(
                f"the local CA's root key {self.path / 'root-key.pem'} is missing; "
                "it is needed to sign a new intermediate"
            )
        key = generate_key("ecdsa-p256")
        spki = spki_of(key)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        subject = certder.name(
            o=ORGANIZATION, ou=owner(), cn=f"certsmith root {owner()} {now:%Y-%m-%d %H:%M:%S}"
        )
        template = certder.Template(
            serial=certder.new_serial(),
            issuer=subject,
            subject=subject,
            not_before=now - dt.timedelta(hours=1),
            not_after=now + dt.timedelta(days=ROOT_DAYS),
            spki=spki,
            extensions=(
                certder.basic_constraints(True, 1),
                certder.key_usage({certder.KEY_CERT_SIGN, certder.CRL_SIGN}),
                certder.subject_key_id(spki),
            ),
        )
        cert = certder.sign(template, key)
        self.store.put(ROOT_KEY, key_pem(key), private=True)
        self.store.put(ROOT_CERT, der.pem("CERTIFICATE", cert))
        return CertKey.load(cert, key)

    def _new_intermediate(
        self, root: CertKey, constraints: Constraints, valid_until: dt.datetime | None
    ) -> CertKey:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        not_after = min(now + dt.timedelta(days=INTERMEDIATE_DAYS), root.cert.not_after)
        if valid_until is not None and not_after < valid_until:
            raise CAError(
                f"the local CA's root expires {root.cert.not_after:%Y-%m-%d}, before "
                "the certificate would; move the ca/ directory aside to start a new CA"
            )
        key = generate_key("ecdsa-p256")
        spki = spki_of(key)
        template = certder.Template(
            serial=certder.new_serial(),
            issuer=root.cert.subject,
            subject=certder.name(
                o=ORGANIZATION, ou=owner(), cn=f"certsmith intermediate {now:%Y-%m-%d %H:%M:%S}"
            ),
            not_before=now - dt.timedelta(hours=1),
            not_after=not_after,
            spki=spki,
            extensions=(
                certder.basic_constraints(True, 0),
                certder.key_usage(
                    {certder.DIGITAL_SIGNATURE, certder.KEY_CERT_SIGN, certder.CRL_SIGN}
                ),
                # Only TLS: a leaf from this CA is useless for code or e-mail signing.
                certder.extended_key_usage(certder.EKU_SERVER, certder.EKU_CLIENT),
                certder.Extension(
                    certder.EXT_NAME_CONSTRAINTS, constraints.to_der(), critical=True
                ),
                certder.subject_key_id(spki),
                certder.authority_key_id(root.key_id),
            ),
        )
        cert = certder.sign(template, root.key)
        self.store.put(INTERMEDIATE, key_pem(key) + der.pem("CERTIFICATE", cert), private=True)
        self._intermediate = CertKey.load(cert, key)
        return self._intermediate

    # -- issuing --------------------------------------------------------------------------------

    def issue(
        self,
        identifiers: Sequence[Identifier],
        *,
        key_type: str = "ecdsa-p256",
        days: int = DEFAULT_LEAF_DAYS,
        client: bool = False,
        public_key_der: bytes | None = None,
        constraints: Constraints | None = None,
    ) -> Leaf:
        """A leaf for ``identifiers``: a new key of ``key_type``, or ``public_key_der`` (an
        SPKI, from a CSR). ``constraints`` (if given) replaces the intermediate's."""
        check_days(days)
        if not identifiers:
            raise IdentifierError("no names given")
        # Checked before anything is made, so a refused key changes nothing; and only the
        # types --key-type offers, whether certsmith makes the key or a CSR brings it.
        key_type = (
            check_key_type(key_type)
            if public_key_der is None
            else check_offered_key(public_key_der, "the request")
        )
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        not_before = now - SKEW
        not_after = not_before + dt.timedelta(days=days)
        wanted = constraints or self.constraints() or Constraints.build()
        check_permitted(identifiers, wanted)
        inter = self.ensure(constraints, not_after)
        check_permitted(identifiers, inter.constraints or Constraints.build())
        key = None
        if public_key_der is None:
            key = generate_key(key_type)
            public_key_der = spki_of(key)
        # RSA key exchange (TLS 1.2's non-forward-secret suites) needs keyEncipherment.
        rsa = key_type.startswith("rsa")
        usage = {certder.DIGITAL_SIGNATURE} | ({certder.KEY_ENCIPHERMENT} if rsa else set())
        ekus = [certder.EKU_SERVER] + ([certder.EKU_CLIENT] if client else [])
        template = certder.Template(
            serial=certder.new_serial(),
            issuer=inter.cert.subject,
            subject=certder.name(o=LEAF_ORGANIZATION, ou=owner()),
            not_before=not_before,
            not_after=not_after,
            spki=public_key_der,
            extensions=(
                certder.basic_constraints(False),
                certder.key_usage(usage),
                certder.extended_key_usage(*ekus),
                # Subject is not the name: SANs carry every name, so the extension is critical
                # only when the subject is empty, which ours never is.
                certder.subject_alt_names(identifiers),
                certder.authority_key_id(inter.key_id),
            ),
        )
        cert = certder.sign(template, inter.key)
        chain = der.pem("CERTIFICATE", cert) + der.pem("CERTIFICATE", inter.cert_der)
        return Leaf(
            chain, key_pem(key) if key is not None else None, cert, inter.cert_der, key, not_after
        )


def check_permitted(identifiers: Sequence[Identifier], constraints: Constraints) -> None:
    for ident in identifiers:
        if not constraints.permits(ident):
            hint = (
                "--allow-domain NETWORK"
                if ident.is_ip
                else f"--allow-domain {ident.value.removeprefix('*.')}"
            )
            raise IdentifierError(
                f"{ident.value} is outside the local CA's name constraints (public names need "
                f"{hint}, for a domain you control)"
            )
