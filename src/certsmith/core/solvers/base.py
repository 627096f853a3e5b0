"""The solver seam: make a challenge answerable, then take it away again."""

from __future__ import annotations

from typing import Protocol


class Solver(Protocol):
    challenge_type: str

    def prepare(self) -> None:
        """Check everything can work (directory writable, port free) before any order."""

    def present(self, domain: str, token: str, key_authorization: str) -> None: ...

    def cleanup(self, domain: str, token: str) -> None: ...

    def close(self) -> None: ...
