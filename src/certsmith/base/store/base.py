"""The storage seam: every piece of state goes through these verbs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol


class Store(Protocol):
    """Keys are relative slash-separated paths such as ``sites/example.com.toml``."""

    def get(self, key: str) -> bytes | None: ...

    def where(self, key: str) -> str:
        """Where ``key`` lives, for messages that must name the damaged or unreadable file."""
        ...

    def exists(self, key: str) -> bool: ...

    def put(self, key: str, data: bytes, *, private: bool = False) -> None: ...

    def list(self, prefix: str) -> list[str]: ...

    def delete(self, key: str) -> None: ...

    def lock(self, name: str, *, wait: float | None = None) -> AbstractContextManager[None]: ...

    def publish(self, name: str, files: Mapping[str, bytes], private: frozenset[str]) -> int:
        """Write a whole new version of certificate ``name`` and switch ``live/name`` to it."""
        ...

    def relink(self, name: str, version: int) -> None:
        """Point ``live/name`` at an existing version (repair)."""
        ...

    def live_version(self, name: str) -> int | None: ...

    def live_path(self, name: str) -> Path: ...

    def versions(self, name: str) -> Iterator[int]: ...
