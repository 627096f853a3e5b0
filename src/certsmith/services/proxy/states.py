"""A client connection's states and the timeout that bounds each (the state table).

A connection is always in one :class:`State`: what it is waiting for. Its ``deadline`` is when
that wait ends; the worker's sweep calls ``timeout()`` on a connection past its deadline, and
``timeout()`` answers by the state (408, 504, close...). ``ClientConnection._enter`` is the one
method that sets both: it enters a state and arms the deadline from :data:`TIMEOUTS`, the limit
named there (``[limits]`` in the configuration). The seconds per state are worked out once per
worker (:func:`timeouts`), so entering a state costs a tuple index and an addition. (The two
transitions every keep-alive request makes are the same two lines written out, where a method
call would cost half a percent of the request: see ``HttpsConnection._attach``.)
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

from certsmith.services.proxy.config import Limits


class State(IntEnum):
    """What a client connection is waiting for. (Ordered: ``<= HEAD`` is "between requests or
    reading a head"; an ``IntEnum``, so comparing and indexing cost what an int does.)"""

    IDLE = 0  # kept alive, between requests
    HEAD = 1  # a request head (or, before it, the TLS handshake)
    BODY = 2  # the request body
    CONNECTING = 3  # the upstream connection to open
    WAITING = 4  # the upstream's response head
    RESPONDING = 5  # the rest of the response (or the client to read it)
    TUNNEL = 6  # an upgraded connection: either side to send something
    CLOSED = 7  # nothing: closing or closed


IDLE, HEAD, BODY, CONNECTING, WAITING, RESPONDING, TUNNEL, CLOSED = State

# The state table: which limit bounds each state. None: entering it arms nothing, and the
# deadline already running stays (a closing connection is still aborted by it).
TIMEOUTS: Final[dict[State, str | None]] = {
    IDLE: "idle_timeout",
    HEAD: "header_timeout",
    BODY: "body_timeout",
    CONNECTING: "connect_timeout",
    WAITING: "upstream_timeout",
    RESPONDING: "upstream_timeout",
    TUNNEL: "tunnel_timeout",
    CLOSED: None,
}

# For ``_enter``'s timer: the timer of a state that has none, so the running deadline stays.
KEEP: Final = CLOSED


def timeouts(limits: Limits) -> tuple[float | None, ...]:
    """Seconds per state, indexed by :class:`State`, from ``limits``."""
    names = [TIMEOUTS[state] for state in State]
    return tuple(None if name is None else getattr(limits, name) for name in names)
