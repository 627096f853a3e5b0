"""State storage: the :class:`Store` protocol, its filesystem implementation, and
:func:`open_store`, which every caller outside this package uses (the layering test refuses
``FileStore`` named anywhere else but the composition root)."""

from pathlib import Path

from certsmith.base.store.base import Lease, Store
from certsmith.base.store.fs import FileStore
from certsmith.base.store.migrate import upgrade

_UPGRADED: set[Path] = set()


def open_store(home: Path) -> Store:
    """The store for the state directory ``home``, upgraded in place to the current layout on
    first use (see :mod:`certsmith.base.store.migrate`)."""
    store = FileStore(Path(home))
    if store.home not in _UPGRADED:
        upgrade(store)
        if store.home.exists():
            _UPGRADED.add(store.home)
    return store


__all__ = ["FileStore", "Lease", "Store", "open_store"]
