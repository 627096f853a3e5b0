"""The solver seam: make challenges answerable, wait until they are, then take them away.

An order presents all its challenges at once (``present_all``), waits once until every one
can be validated (``wait_ready``: nothing to wait for over HTTP; DNS propagation for DNS-01),
asks the CA to validate them, and cleans up what it presented (``cleanup_all``), also after a
failure. Solvers that answer one challenge at a time inherit :class:`OneAtATime`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Challenge:
    """One challenge to answer: the identifier, the CA's token and the key authorization
    (what HTTP-01 serves; TLS-ALPN-01 and DNS-01 derive their answer from it)."""

    domain: str
    token: str
    key_authorization: str


class Solver(Protocol):
    challenge_type: str

    def prepare(self) -> None:
        """Check everything can work (directory writable, port free) before any order."""

    def present_all(self, challenges: Sequence[Challenge]) -> None: ...

    def wait_ready(self, challenges: Sequence[Challenge], deadline: float) -> None:
        """Return when the CA can validate every challenge (by ``deadline``, a
        ``time.monotonic()`` value), or raise ChallengeError saying what is not ready."""

    def cleanup_all(self, challenges: Sequence[Challenge]) -> None: ...

    def close(self) -> None: ...


class OneAtATime(abc.ABC):
    """``present_all``/``cleanup_all`` from per-challenge ``present``/``cleanup``; ready at
    once (the answer is served as soon as it is written)."""

    @abc.abstractmethod
    def present(self, domain: str, token: str, key_authorization: str) -> None: ...

    @abc.abstractmethod
    def cleanup(self, domain: str, token: str) -> None: ...

    def present_all(self, challenges: Sequence[Challenge]) -> None:
        for c in challenges:
            self.present(c.domain, c.token, c.key_authorization)

    def wait_ready(self, challenges: Sequence[Challenge], deadline: float) -> None:
        return None

    def cleanup_all(self, challenges: Sequence[Challenge]) -> None:
        for c in challenges:
            self.cleanup(c.domain, c.token)
