"""The issuer seam: identifiers + key -> certificate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from certsmith.base.identifiers import Identifier
from certsmith.core.solvers.base import Solver


@dataclass(frozen=True)
class Issued:
    """What a CA returned: the leaf and the chain above it (PEM)."""

    cert_pem: bytes
    chain_pem: bytes
    replaced: str | None = None  # the ARI id the order replaced, as the CA accepted it
    replace_refused: str | None = None  # why the CA would not take "replaces", if it refused


class Issuer(Protocol):
    def issue(
        self,
        identifiers: Sequence[Identifier],
        csr_pem: bytes,
        solver: Solver,
        *,
        profile: str | None = None,
        replaces: str | None = None,
        preferred_chain: str | None = None,
    ) -> Issued: ...
