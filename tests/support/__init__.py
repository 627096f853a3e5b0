"""Real components for tests and benchmarks: Pebble + pebble-challtestsrv, lighttpd."""

from tests.support.lighttpd import Lighttpd
from tests.support.net import free_port, wait_until
from tests.support.pebble import Pebble

__all__ = ["Lighttpd", "Pebble", "free_port", "wait_until"]
