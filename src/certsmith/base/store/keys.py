"""Every storage key and lease name, formed in one place.

A key is a relative, slash-separated name in the :class:`~certsmith.base.store.Store`; a lease
name is what ``Store.lock`` takes. The filesystem store maps keys to paths under the state
directory one to one (``sites/example.com.toml``), so these are also the layout on disk.
"""

from __future__ import annotations

from certsmith.errors import StoreError

# -- keys -----------------------------------------------------------------------------------

SITES = "sites"
STATE = "state"
ACCOUNTS = "accounts"
INSTALLS = "installs"
EVENTS = "events.jsonl"
ALERTS_CONFIG = "alerts.toml"
ALERTS_SENT = "state/alerts-sent.json"
ALERTS_OUTBOX = "state/alerts-outbox.json"
METRICS_CONFIG = "metrics.toml"
CA_ROOT_CERT = "ca/root.pem"
CA_ROOT_KEY = "ca/root-key.pem"
CA_INTERMEDIATE = "ca/intermediate.pem"


def key_parts(key: str) -> list[str]:
    """The parts of a valid key (relative, slash-separated, no empty, ``.`` or ``..`` part);
    StoreError for any other, so no backend can be asked for a path outside its state."""
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") for p in parts):
        raise StoreError(f"invalid store key {key!r}")
    return parts


def site(name: str) -> str:
    """A lineage's site spec (what to get, how to prove it, where it goes)."""
    return f"{SITES}/{name}.toml"


def state(name: str) -> str:
    """A lineage's certificate state (live serial and dates, ARI cache, failures)."""
    return f"{STATE}/{name}.json"


def accounts(server_id: str) -> str:
    """The prefix of the accounts at one CA."""
    return f"{ACCOUNTS}/{server_id}"


def account(server_id: str, account_id: str) -> str:
    """One account's directory (``account.json``, ``key.pem``)."""
    return f"{ACCOUNTS}/{server_id}/{account_id}"


def installs(kind: str) -> str:
    """The prefix of the install records for one web server kind."""
    return f"{INSTALLS}/{kind}"


def install(kind: str, name: str) -> str:
    """What 'install' wrote into a web server for lineage ``name``."""
    return f"{INSTALLS}/{kind}/{name}.json"


# -- lease names ----------------------------------------------------------------------------

CA_LEASE = "ca"
ALERTS_LEASE = "alerts"
FORMAT_LEASE = "format"


def lineage_lease(name: str) -> str:
    """Held while a lineage is issued, renewed, revoked, repaired, installed or backed up."""
    return f"cert-{name}"


def account_lease(server_id: str) -> str:
    return f"account-{server_id}"


def standalone_lease(port: int) -> str:
    """Our own HTTP-01 listener on ``port``: one certsmith process at a time."""
    return f"standalone-{port}"


# DNS-01: what a solver presented, so that a run killed before its cleanup is cleaned by the
# next one. One entry per solver instance, guarded by a lease its owner holds while it lives.
DNS01_PENDING = "dns-01/pending"
DNS01_TSIG = "dns-01/tsig"


def dns01_pending(owner: str) -> str:
    """The record of the TXT values solver ``owner`` has presented and not removed yet."""
    return f"{DNS01_PENDING}/{owner}.json"


def tsig_key(name: str) -> str:
    """The TSIG key (``tsig-keygen`` format, private) an imported rfc2136 lineage signs its
    updates with."""
    return f"{DNS01_TSIG}/{name}.key"


def dns01_lease(owner: str) -> str:
    return f"dns01-{owner}"
