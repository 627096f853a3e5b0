"""The storage seam: every piece of state goes through these verbs.

A :class:`Store` holds keyed bytes (keys are relative, slash-separated: ``sites/example.com.toml``)
and certificate lineages (whole versions, one of them live). Mutual exclusion between processes
(and, for a shared backend, between machines) is a :class:`Lease`: ``lock(name, ttl=...)`` returns
one, renewable while held, carrying a **fencing token** that grows with every acquisition. A write
that passes ``fence=lease`` is refused (:class:`~certsmith.errors.StaleLeaseError`) unless that
lease is still the newest one for its name, so a holder that was paused past its lease, or that
released it, writes nothing.

``home``, ``live_path`` and ``ensure`` are the local side: where this machine's files for web
servers and apps are materialized (``live/NAME/fullchain.pem``), whatever holds the state.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol


class Lease(Protocol):
    """A held lock on ``name``; a context manager that releases it on exit."""

    @property
    def name(self) -> str: ...

    @property
    def token(self) -> int:
        """The fencing token: larger than that of every earlier lease on ``name``."""
        ...

    def renew(self, ttl: float | None = None) -> None:
        """Extend the lease while it is held; StaleLeaseError if it was lost or released."""
        ...

    def release(self) -> None: ...

    def __enter__(self) -> Lease: ...

    def __exit__(self, *exc: object) -> None: ...


class Store(Protocol):
    home: Path

    def ensure(self) -> None:
        """Create the local state directory with safe modes (idempotent)."""
        ...

    def get(self, key: str) -> bytes | None: ...

    def where(self, key: str) -> str:
        """Where ``key`` lives, for messages that must name the damaged or unreadable file."""
        ...

    def exists(self, key: str) -> bool: ...

    def put(
        self, key: str, data: bytes, *, private: bool = False, fence: Lease | None = None
    ) -> None:
        """Replace ``key`` atomically; ``private``: readable by the owner only."""
        ...

    def append(self, key: str, data: bytes) -> None:
        """Add ``data`` (one record, e.g. a line) to the end of ``key``; concurrent appends
        never interleave within a record (the audit log)."""
        ...

    def list(self, prefix: str) -> list[str]:
        """The keys directly under ``prefix``, sorted."""
        ...

    def delete(self, key: str, *, fence: Lease | None = None) -> None: ...

    def lock(self, name: str, *, ttl: float | None = None, wait: float | None = None) -> Lease:
        """Take the lease ``name``: ``wait=None`` waits as long as needed, ``wait=0`` fails at
        once (LockedError) if another holder has it; ``ttl``: how long it lasts unrenewed
        where a holder can vanish without the backend noticing."""
        ...

    def publish(
        self,
        name: str,
        files: Mapping[str, bytes],
        private: frozenset[str],
        *,
        fence: Lease | None = None,
    ) -> int:
        """Write a whole new version of certificate ``name`` and switch ``live/name`` to it."""
        ...

    def relink(self, name: str, version: int, *, fence: Lease | None = None) -> None:
        """Point ``live/name`` at an existing version (repair)."""
        ...

    def live_version(self, name: str) -> int | None: ...

    def live_path(self, name: str) -> Path:
        """This machine's ``live/name``: what web servers and apps read (see materialize)."""
        ...

    def materialize(self, name: str) -> bool:
        """Make this machine's ``live/name`` show the store's live version of ``name``, as
        files on the local disk (the key 0600); True if that changed anything. Another node's
        publish reaches this machine's web servers through this step; for a store whose state
        is this machine's directory it has nothing to do."""
        ...

    def versions(self, name: str) -> Iterator[int]: ...
