"""State storage: the :class:`Store` protocol, its filesystem implementation, and
:func:`open_store`, which every caller outside this package uses (the layering test refuses
``FileStore`` named anywhere else but the composition root)."""

from pathlib import Path

from certsmith.base.store.base import Lease, Store
from certsmith.base.store.fs import FileStore


def open_store(home: Path) -> Store:
    """The store for the state directory ``home``."""
    return FileStore(Path(home))


__all__ = ["FileStore", "Lease", "Store", "open_store"]
