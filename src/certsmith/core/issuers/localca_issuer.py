"""The local CA as an :class:`~certsmith.core.issuers.base.Issuer`: it signs the request's
key for names inside its constraints; there is nothing to prove, so the solver is unused."""

from __future__ import annotations

from collections.abc import Sequence

from certsmith.base import der
from certsmith.base.identifiers import Identifier
from certsmith.core.issuers.base import Issued
from certsmith.core.issuers.localca import LocalCA
from certsmith.core.solvers.base import Solver
from certsmith.errors import UsageError


def csr_public_key(csr_pem: bytes) -> bytes:
    """The SubjectPublicKeyInfo (DER) of a PEM certificate request."""
    blocks = der.unpem(csr_pem, "CERTIFICATE REQUEST")
    if not blocks:
        raise UsageError("not a PEM certificate request")
    _, body, _ = der.read(blocks[0])
    _, info, _ = next(der.children(body))
    _version, _subject, (_, _, spki), *_attributes = der.children(info)
    return spki


class LocalIssuer:
    def __init__(self, ca: LocalCA) -> None:
        self.ca = ca

    def issue(
        self,
        identifiers: Sequence[Identifier],
        csr_pem: bytes,
        solver: Solver | None = None,
        *,
        profile: str | None = None,
        replaces: str | None = None,
        preferred_chain: str | None = None,
    ) -> Issued:
        leaf = self.ca.issue(list(identifiers), public_key_der=csr_public_key(csr_pem))
        return Issued(
            der.pem("CERTIFICATE", leaf.cert_der), der.pem("CERTIFICATE", leaf.intermediate_der)
        )
