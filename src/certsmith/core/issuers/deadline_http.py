"""requests/urllib3 connections whose sockets are put under the current ``Deadline``.

A new connection registers its raw socket before the TLS handshake (so a trickled handshake is
cut too); a pooled connection reused by a later request registers again under that request's
deadline.
"""

from __future__ import annotations

from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import PoolManager

from certsmith.base.deadline import watch


class _Conn(HTTPConnection):
    def _new_conn(self) -> Any:
        sock = super()._new_conn()
        watch(sock)
        return sock


class _TlsConn(HTTPSConnection):
    def _new_conn(self) -> Any:
        sock = super()._new_conn()
        watch(sock)
        return sock


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Conn

    def _make_request(self, conn: Any, *args: Any, **kwargs: Any) -> Any:
        watch(getattr(conn, "sock", None))
        return super()._make_request(conn, *args, **kwargs)


class _TlsPool(HTTPSConnectionPool):
    ConnectionCls = _TlsConn

    def _make_request(self, conn: Any, *args: Any, **kwargs: Any) -> Any:
        watch(getattr(conn, "sock", None))
        return super()._make_request(conn, *args, **kwargs)


def _watched(manager: PoolManager) -> PoolManager:
    manager.pool_classes_by_scheme = {"http": _Pool, "https": _TlsPool}
    return manager


class DeadlineAdapter(HTTPAdapter):
    """Mount on a ``requests.Session``; wrap each request in ``with Deadline():``."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _watched(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        return _watched(super().proxy_manager_for(proxy, **kwargs))
