"""The trust-store seam: what every store kind reports, and how it runs its tool."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

State = Literal[
    "trusted",  # status: the root is in this store
    "not trusted",  # status: the store exists, the root is not in it
    "installed",  # install: added now
    "removed",  # uninstall: taken out now
    "missing",  # the store or its tool is not on this machine: skipped
    "read-only",  # cannot be changed by this user: skipped
    "failed",  # the tool failed; the other stores still ran
]
SKIPPED: frozenset[str] = frozenset({"missing", "read-only"})


@dataclass(frozen=True)
class Root:
    """The local CA's root as the stores need it."""

    pem: bytes
    der: bytes
    path: Path
    sha256: str  # hex, lowercase

    @property
    def label(self) -> str:
        """Nickname / alias / file stem: unique per root, recognisable as ours."""
        return f"certsmith-local-ca-{self.sha256[:16]}"


@dataclass(frozen=True)
class Report:
    store: str
    location: str
    state: State
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "store": self.store,
            "location": self.location,
            "state": self.state,
            "detail": self.detail,
        }


class TrustStore(Protocol):
    kind: str

    def status(self, root: Root) -> list[Report]: ...

    def install(self, root: Root) -> list[Report]: ...

    def uninstall(self, root: Root) -> list[Report]: ...


def run_tool(
    cmd: Sequence[str], timeout: float = 120, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a store's tool; never raises for a non-zero exit (the caller reports it)."""
    try:
        if stdin is not None:
            return subprocess.run(
                list(cmd), capture_output=True, text=True, timeout=timeout, check=False, input=stdin
            )
        return subprocess.run(
            list(cmd),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(list(cmd), 127, "", str(exc))


def first_line(proc: subprocess.CompletedProcess[str]) -> str:
    text = (proc.stderr or proc.stdout or "").strip()
    line = text.splitlines()[-1] if text else f"exit status {proc.returncode}"
    return f"{Path(proc.args[0]).name}: {line}"[:200]
