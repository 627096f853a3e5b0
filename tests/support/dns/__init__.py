"""Real DNS servers for the dns-01 tests, on port 53 of loopback addresses ``127.53.N.x``
(``N`` = 1 + the xdist worker number; ``net=BENCH_NET`` (200) for benchmarks). Needs root: the
addresses are added to ``lo`` for the servers' lifetime. The servers run as Debian runs them
(dropping to ``bind``/``pdns``) under tests/support/supervise.py, which stops them if the test
run dies.

- ``Bind`` (bind.py): primary ``127.53.N.1`` (TSIG updates of TXT with ``key_file``; a
  ``wrong_key_file`` with the same name and another secret), secondary ``127.53.N.2``
  (transfers only on ``retransfer()``), recursive ``resolver`` ``127.53.N.4`` (Pebble's).
  Zones ``ZONE`` and ``DELEGATE_ZONE``.
- ``PowerDns`` (powerdns.py): ``127.53.N.3``, SQLite backend, HTTP API at ``api_url`` with
  ``api_key``; zone ``PDNS_ZONE``.
- zones.py: zone and record names (``KEEP_NAME``/``KEEP_TXT``, ``DELEGATED_CHALLENGE`` ->
  ``DELEGATED_TARGET``, ``WILDCARD_OWNER`` -> ``WILDCARD_TARGET``, ...).
- common.py: ``query``, ``txt``, ``serial``, ``zone_snapshot`` (AXFR minus the SOA, sorted),
  ``keyring``/``read_key_file`` for TSIG key files, the address plan.
"""

from tests.support.dns.bind import KEY_NAME, RNDC_PORT, Bind
from tests.support.dns.common import (
    BENCH_NET,
    DNS_PORT,
    TSIG_ALGORITHM,
    keyring,
    net_address,
    query,
    read_key_file,
    serial,
    txt,
    worker_net,
    zone_snapshot,
)
from tests.support.dns.powerdns import PowerDns
from tests.support.dns.zones import (
    DELEGATE_ZONE,
    DELEGATED_CHALLENGE,
    DELEGATED_HOST,
    DELEGATED_TARGET,
    KEEP_NAME,
    KEEP_TXT,
    PDNS_KEEP_NAME,
    PDNS_ZONE,
    WILDCARD_OWNER,
    WILDCARD_PARENT,
    WILDCARD_TARGET,
    ZONE,
)

__all__ = [
    "BENCH_NET",
    "DELEGATED_CHALLENGE",
    "DELEGATED_HOST",
    "DELEGATED_TARGET",
    "DELEGATE_ZONE",
    "DNS_PORT",
    "KEEP_NAME",
    "KEEP_TXT",
    "KEY_NAME",
    "PDNS_KEEP_NAME",
    "PDNS_ZONE",
    "RNDC_PORT",
    "TSIG_ALGORITHM",
    "WILDCARD_OWNER",
    "WILDCARD_PARENT",
    "WILDCARD_TARGET",
    "ZONE",
    "Bind",
    "PowerDns",
    "keyring",
    "net_address",
    "query",
    "read_key_file",
    "serial",
    "txt",
    "worker_net",
    "zone_snapshot",
]
