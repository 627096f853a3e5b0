"""Certificates for the proxy's sites: TLS settings, SNI selection, local-CA issuance.

One ``ssl.SSLContext`` per site holds its certificate; the *dispatch* context, the one the
listening sockets use, holds none and only switches each handshake to the site its SNI names.
An unknown name is refused with an ``unrecognized_name`` alert: no other site's certificate is
ever shown. A site's ``*.example.org`` is chosen for any name one label deeper that no site lists
itself (``a.example.org``; not ``a.b.example.org``, nor ``example.org`` unless listed too): the
same rule as routing by Host (:func:`~.config.covering_wildcard`). A client without SNI (an IP
address in the URL) gets the site whose certificate lists an IP address, or the only site if
there is just one.

Session resumption across worker processes: OpenSSL encrypts session tickets with keys made
when a context is created, and always with the keys of the context the handshake *started*
with (``session_ctx``), even after SNI switched it. The dispatch context is created once, in the
supervisor, before the workers are forked, so every worker shares its ticket keys; the site
contexts can be rebuilt at any time (a renewed certificate) without breaking resumption.

Certificates live in the store as lineages like any other (``archive/<name>/<n>/`` and
``live/<name>``), so the workers read a new version as soon as ``live/<name>`` switches.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import ssl
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from certsmith.base import policy
from certsmith.base.store import Store, open_store
from certsmith.base.store import keys as store_keys
from certsmith.base.tlsgroups import set_groups
from certsmith.services.lifecycle import Bus, event_log_bus
from certsmith.services.proxy.config import covering_wildcard

ACME_TLS_ALPN = "acme-tls/1"
TLS_ALPN_DIR = policy.TLS_ALPN01_DIR


def tls_context() -> ssl.SSLContext:
    """A server context with the proxy's TLS settings (certsmith.base.policy: Mozilla
    "intermediate", its three key exchange groups, the client's cipher order) and no
    certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion[policy.TLS_VERSIONS[0].replace(".", "_")]
    ctx.maximum_version = ssl.TLSVersion[policy.TLS_VERSIONS[-1].replace(".", "_")]
    ctx.set_ciphers(policy.INTERMEDIATE_CIPHERS)
    set_groups(ctx, policy.GROUPS_LIST)
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    # Python turns server preference on by default; the policy leaves the order to the client.
    ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def dispatch_context() -> ssl.SSLContext:
    """The listening context (see the module docstring: make it before forking workers)."""
    return tls_context()


def site_context(fullchain: str, key: str) -> ssl.SSLContext:
    ctx = tls_context()
    ctx.load_cert_chain(fullchain, key)
    return ctx


def client_hello_alpn(message: bytes) -> list[bytes]:
    """The ALPN protocol names a TLS ClientHello offers (``message`` with or without its
    4-byte handshake header); [] if none or unparsable. Pure."""
    data = memoryview(message)
    try:
        if data[0] == 1 and int.from_bytes(data[1:4], "big") == len(data) - 4:
            data = data[4:]
        pos = 2 + 32  # legacy_version, random
        pos += 1 + data[pos]  # session id
        pos += 2 + int.from_bytes(data[pos : pos + 2], "big")  # cipher suites
        pos += 1 + data[pos]  # compression methods
        end = pos + 2 + int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        while pos + 4 <= end:
            kind = int.from_bytes(data[pos : pos + 2], "big")
            size = int.from_bytes(data[pos + 2 : pos + 4], "big")
            body = data[pos + 4 : pos + 4 + size]
            pos += 4 + size
            if kind != 16:  # application_layer_protocol_negotiation
                continue
            names = []
            inner = 2
            total = 2 + int.from_bytes(body[0:2], "big")
            while inner < total:
                length = body[inner]
                names.append(bytes(body[inner + 1 : inner + 1 + length]))
                inner += 1 + length
            return names
    except (IndexError, ValueError):
        return []
    return []


class SiteContexts:
    """The per-site contexts of one worker, refreshed when a certificate changes."""

    def __init__(self, home: Path | str, sites: Sequence[Any]) -> None:
        self.home = str(home)
        self.store = open_store(Path(home))
        self.sites = list(sites)  # config.Site
        self.runtime: dict[str, Any] = {}  # cert_name -> the worker's SiteRuntime
        self.by_name: dict[str, ssl.SSLContext] = {}
        self.versions: dict[str, int] = {}
        self.failed: dict[str, str] = {}  # cert_name -> why its live version did not load
        self.no_sni: ssl.SSLContext | None = None
        self.challenge_ctx: dict[str, ssl.SSLContext] = {}
        self._challenge_mtime: int | None = None
        self._offered: dict[int, list[bytes]] = {}
        self._dispatch: ssl.SSLContext | None = None

    def attach(self, runtimes: Iterable[Any]) -> None:
        """Link each site to the worker's runtime object (set as ``ctx.site``)."""
        for runtime in runtimes:
            self.runtime[runtime.site.cert_name] = runtime
        self.refresh()

    def install(self, dispatch: ssl.SSLContext) -> None:
        self._dispatch = dispatch
        dispatch.sni_callback = self._sni

    def refresh(self) -> list[str]:
        """Load certificates whose ``live/`` version changed; return the names reloaded."""
        changed = []
        for site in self.sites:
            name = site.cert_name
            version = self.store.live_version(name)
            if version is None or self.versions.get(name) == version:
                continue
            directory = os.path.join(self.home, "archive", name, str(version))
            try:
                ctx = site_context(
                    os.path.join(directory, "fullchain.pem"), os.path.join(directory, "privkey.pem")
                )
            except (OSError, ssl.SSLError) as exc:  # keep serving the previous one
                self.failed[name] = f"{directory}: {exc}"
                continue
            ctx.site = self.runtime.get(name)  # type: ignore[attr-defined]
            # Swap each name in one assignment: a handshake sees the old or the new context.
            for ident in site.cert_identifiers:
                self.by_name[ident.value] = ctx
            self.versions[name] = version
            self.failed.pop(name, None)
            changed.append(name)
        if changed:
            self._pick_no_sni()
        return changed

    def _pick_no_sni(self) -> None:
        chosen = None
        for site in self.sites:
            if any(i.is_ip for i in site.cert_identifiers):
                chosen = self.by_name.get(site.cert_identifiers[0].value)
                if chosen is not None:
                    break
        if chosen is None and len(self.sites) == 1:
            chosen = self.by_name.get(self.sites[0].cert_identifiers[0].value)
        self.no_sni = chosen

    def missing(self) -> list[str]:
        return [s.cert_name for s in self.sites if s.cert_name not in self.versions]

    def _sni(self, sslobj: Any, server_name: str | None, _ctx: ssl.SSLContext) -> int | None:
        if server_name is None:
            ctx = self.no_sni
        else:
            name = server_name.lower().rstrip(".")  # "localhost." is "localhost"
            if self.challenge_ctx:
                offered = self._offered.pop(id(sslobj), None)
                if offered and ACME_TLS_ALPN.encode() in offered and name in self.challenge_ctx:
                    sslobj.context = self.challenge_ctx[name]
                    return None
            ctx = self.by_name.get(name) if "*" not in name else None
            if ctx is None and (wildcard := covering_wildcard(name)) is not None:
                ctx = self.by_name.get(wildcard)  # one label deeper only, as Host routing
        if ctx is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME  # type: ignore[no-any-return]
        sslobj.context = ctx
        return None

    # -- TLS-ALPN-01 ----------------------------------------------------------------------------

    def poll_challenges(self) -> None:
        """Pick up TLS-ALPN-01 challenge certificates written by a solver (any process)."""
        directory = os.path.join(self.home, TLS_ALPN_DIR)
        try:
            mtime = os.stat(directory).st_mtime_ns
        except OSError:
            mtime = None
        if mtime == self._challenge_mtime:
            return
        self._challenge_mtime = mtime
        contexts: dict[str, ssl.SSLContext] = {}
        for entry in os.listdir(directory) if mtime is not None else ():
            if not entry.endswith(".pem"):
                continue
            path = os.path.join(directory, entry)
            try:
                ctx = tls_context()
                ctx.load_cert_chain(path)
                ctx.set_alpn_protocols([ACME_TLS_ALPN])
            except (OSError, ssl.SSLError):
                continue
            contexts[entry[:-4]] = ctx
        self.challenge_ctx = contexts
        self._offered.clear()
        if self._dispatch is not None:
            # Seeing the ClientHello's ALPN list costs a Python call per TLS record, so the
            # hook is on only while a challenge is pending.
            self._dispatch._msg_callback = self._on_message if contexts else None  # type: ignore[attr-defined]

    def _on_message(
        self,
        conn: Any,
        direction: str,
        _version: Any,
        content_type: Any,
        msg_type: Any,
        data: bytes,
    ) -> None:
        if direction == "read" and int(content_type) == 22 and int(msg_type) == 1:
            self._offered[id(conn)] = client_hello_alpn(data)


# -- local CA certificates ------------------------------------------------------------------


def local_due(
    store: Store, name: str, identifiers: Sequence[Any], chain_pem: bytes, now: dt.datetime
) -> bool:
    """Does the local certificate ``name`` need (re-)issuing: none yet, other names, another
    intermediate (a new CA), or a third of its lifetime left?"""
    from certsmith.core.renewal import lifetime_renewal_time

    version = store.live_version(name)
    if version is None:
        return True
    base = store.live_path(name)
    try:
        meta = json.loads((base / "meta.json").read_text())
        stored_chain = (base / "chain.pem").read_bytes()
        not_before = dt.datetime.fromisoformat(meta["not_before"])
        not_after = dt.datetime.fromisoformat(meta["not_after"])
        names = sorted(meta["names"])
    except (OSError, ValueError, KeyError):
        return True
    if names != sorted(i.value for i in identifiers) or stored_chain != chain_pem:
        return True
    return now >= lifetime_renewal_time(not_before, not_after, meta.get("serial", name))


def ensure_local(
    home: Path,
    name: str,
    identifiers: Sequence[Any],
    *,
    force: bool = False,
    bus: Bus | None = None,
) -> int | None:
    """Issue a local-CA certificate into lineage ``name`` when due; return the new version.
    Written by the same lineage writer as ACME certificates (version, metadata, certificate
    state, lifecycle event on ``bus``)."""
    from certsmith.base.keytypes import DEFAULT_KEY_TYPE
    from certsmith.core.issuers.localca import LocalCA
    from certsmith.core.issuers.localca_issuer import LocalIssuer
    from certsmith.services import lineage

    store = open_store(home)
    ca = LocalCA(home)
    with store.lock(store_keys.lineage_lease(name)) as lease:
        inter = ca.ensure()
        now = dt.datetime.now(dt.UTC)
        if not force and not local_due(store, name, identifiers, inter.cert_pem, now):
            return None
        renewing = store.live_version(name) is not None
        # The same steps as an ACME order: our key, a CSR, the issuer, the lineage writer.
        request = lineage.request_for(identifiers, DEFAULT_KEY_TYPE)
        _issued, bundle = lineage.obtain(LocalIssuer(ca), identifiers, request, None)
        written = lineage.write(
            store,
            bus if bus is not None else event_log_bus(home),
            lineage.NewVersion(
                name,
                bundle,
                "renewed" if renewing else "issued",
                meta={"issuer": "certsmith local CA", "names": [i.value for i in identifiers]},
                event={"issuer": "local CA"},
            ),
            fence=lease,
        )
    return written.version
