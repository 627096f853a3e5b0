"""The solver seam: make challenges answerable, wait until they are, then take them away.

An order presents all its challenges at once (``present_all``), waits once until every one
can be validated (``wait_ready``: nothing to wait for over HTTP; DNS propagation for DNS-01),
asks the CA to validate them, and cleans up what it presented (``cleanup_all``), also after a
failure. Solvers that answer one challenge at a time inherit :class:`OneAtATime`.

``present_all`` may present only some of the challenges it is given (a DNS provider that
replaces the TXT values at a name instead of adding one can hold only one value per name at a
time): it returns the ones it presented, and the order validates those, cleans them up and
calls it again with the rest. ``None`` means all of them.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from certsmith.base.store.base import Store


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

    def present_all(self, challenges: Sequence[Challenge]) -> Sequence[Challenge] | None: ...

    def wait_ready(self, challenges: Sequence[Challenge], deadline: float) -> None:
        """Return when the CA can validate every challenge (by ``deadline``, a
        ``time.monotonic()`` value), or raise ChallengeError saying what is not ready."""

    def cleanup_all(self, challenges: Sequence[Challenge]) -> None: ...

    def close(self) -> None: ...


def _quiet(_line: str) -> None:
    return None


@dataclass(frozen=True)
class SolverContext:
    """What a solver may need from the run that builds it: the store (to record what it
    presented, for cleanup after a crash) and a progress line for waits a person should see."""

    store: Store | None = None
    progress: Callable[[str], None] = field(default=_quiet)


class OneAtATime(abc.ABC):
    """``present_all``/``cleanup_all`` from per-challenge ``present``/``cleanup``; ready at
    once (the answer is served as soon as it is written)."""

    @abc.abstractmethod
    def present(self, domain: str, token: str, key_authorization: str) -> None: ...

    @abc.abstractmethod
    def cleanup(self, domain: str, token: str) -> None: ...

    def present_all(self, challenges: Sequence[Challenge]) -> Sequence[Challenge] | None:
        for c in challenges:
            self.present(c.domain, c.token, c.key_authorization)
        return None

    def wait_ready(self, challenges: Sequence[Challenge], deadline: float) -> None:
        return None

    def cleanup_all(self, challenges: Sequence[Challenge]) -> None:
        for c in challenges:
            self.cleanup(c.domain, c.token)
