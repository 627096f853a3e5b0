"""An ACME CA as an :class:`~certsmith.core.issuers.base.Issuer`: one connection and one
account, with the order's progress reported through ``on_step``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from certsmith.base.identifiers import Identifier
from certsmith.core.issuers.acme import Account, AcmeConnection
from certsmith.core.issuers.base import Issued
from certsmith.core.solvers.base import Solver


class AcmeIssuer:
    def __init__(
        self, conn: AcmeConnection, account: Account, on_step: Callable[[str], None] | None = None
    ) -> None:
        self.conn = conn
        self.account = account
        self.on_step = on_step

    def issue(
        self,
        identifiers: Sequence[Identifier],
        csr_pem: bytes,
        solver: Solver,
        *,
        profile: str | None = None,
        replaces: str | None = None,
        preferred_chain: str | None = None,
    ) -> Issued:
        return self.conn.issue(
            self.account,
            identifiers,
            csr_pem,
            solver,
            profile=profile,
            replaces=replaces,
            preferred_chain=preferred_chain,
            on_step=self.on_step,
        )
