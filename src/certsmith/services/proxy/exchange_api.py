"""What an upstream connection needs from the exchange it serves, and from the client
connection behind it: the callbacks :mod:`.upstream` makes into :mod:`.connection`.

:mod:`.connection` and :mod:`.exchange` import :mod:`.upstream` (they open, pool and write to
upstream connections); :mod:`.upstream` sees the client side only through these protocols, so
the modules do not import each other. Both are generic in the upstream connection type (``Up``)
so that this module names neither; ``exchange.Exchange`` / ``connection.HttpsConnection``
implement them for ``upstream.UpstreamConnection``.
"""

from __future__ import annotations

from typing import Protocol, Self, TypeVar

from certsmith.services.proxy import fastpath, http
from certsmith.services.proxy.config import Limits

Up = TypeVar("Up", contravariant=True)  # the upstream connection making the call
Ex = TypeVar("Ex", contravariant=True)  # the exchange it is about


class WorkerSide(Protocol):
    """The worker a client connection belongs to."""

    @property
    def now(self) -> float: ...  # the event loop's time at the last sweep

    @property
    def limits(self) -> Limits: ...

    @property
    def response_validator(self) -> fastpath.Validator: ...


class ClientSide(Protocol[Ex, Up]):
    """The client connection an exchange belongs to: what the upstream side calls back."""

    @property
    def worker(self) -> WorkerSide: ...

    @property
    def keep_alive(self) -> bool: ...

    @property
    def out(self) -> list[bytes]: ...  # response bytes not yet written to the client

    def flush(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def response_head(
        self, ex: Ex, up: Up, status: int, head: bytes, upstream_keep_alive: bool
    ) -> None: ...

    def response_body(self, ex: Ex, body: bytes) -> None: ...

    def response_done(self, ex: Ex) -> None: ...

    def fast_response(self, ex: Ex, up: Up, fast: fastpath.FastResponse) -> None: ...

    def upstream_lost(self, ex: Ex, up: Up) -> None: ...

    def upstream_failed(self, ex: Ex, why: str) -> None: ...


class SiteSide(Protocol):
    """The site an exchange was routed to."""

    @property
    def tails(self) -> tuple[bytes, bytes]: ...  # see fastpath.tail, by client keep-alive


class ExchangeSide(Protocol[Up]):
    """One request and its response, as the upstream connection serving it sees it."""

    @property
    def conn(self) -> ClientSide[Self, Up]: ...

    @property
    def method(self) -> bytes: ...

    @property
    def site(self) -> SiteSide: ...

    @property
    def response(self) -> http.Response | None: ...  # the response head, once forwarded

    @property
    def fast_reply(self) -> bool: ...  # the response may take fastpath.response


class TunnelSide(Protocol):
    """The client connection of an upgraded (tunnelled) connection."""

    def tunnel_data(self, data: bytes) -> None: ...

    def tunnel_closed(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...
