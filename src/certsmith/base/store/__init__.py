"""State storage: the :class:`Store` protocol and its filesystem implementation."""

from certsmith.base.store.base import Store
from certsmith.base.store.fs import FileStore

__all__ = ["FileStore", "Store"]
