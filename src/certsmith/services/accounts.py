"""ACME accounts on disk: ``accounts/<ca>/<id>/{key.pem,account.json}``, created once, reused."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from certsmith.base.crashpoints import crash_point
from certsmith.base.store import keys as store_keys
from certsmith.base.store.base import Store
from certsmith.core.issuers.cas import NEEDS_EAB, alias_of, server_id
from certsmith.errors import DamagedError, UsageError

if TYPE_CHECKING:
    from certsmith.core.issuers.acme import Account, AcmeConnection


@dataclass(frozen=True)
class AccountOptions:
    email: str | None = None
    agree_tos: bool = False
    eab_kid: str | None = None
    eab_hmac_key: str | None = None


def _find(store: Store, server: str) -> tuple[str, bytes, bytes | None] | None:
    """(account dir key, key PEM, account.json or None) of the first account for ``server``.

    A directory without a key is what a run that died before writing it leaves (skipped); a
    key that is empty or not a key, or an account without its key, is damage: registering a
    new account would silently lose the old one (its certificates, its rate limits), so it is
    refused, naming the file."""
    for entry in store.list(store_keys.accounts(server_id(server))):
        key_pem = store.get(f"{entry}/key.pem")
        account = store.get(f"{entry}/account.json")
        if key_pem is None and account is None:
            continue
        where = store.where(f"{entry}/key.pem")
        fix = (
            f"restore it from a backup, or move {store.where(entry)} away to register a new account"
        )
        if key_pem is None:
            raise DamagedError(f"damaged account: {where} is missing; {fix}")
        if not key_pem.strip():
            raise DamagedError(f"damaged account key {where}: empty; {fix}")
        if not _is_key(key_pem):
            raise DamagedError(f"damaged account key {where}: not a PEM private key; {fix}")
        return entry, key_pem, account
    return None


def _is_key(pem: bytes) -> bool:
    from cryptography.hazmat.primitives import serialization

    try:
        serialization.load_pem_private_key(pem, None, unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError):
        return False
    return True


def has_account(store: Store, server: str) -> bool:
    found = _find(store, server)
    return found is not None and found[2] is not None


def check_can_register(store: Store, server: str, options: AccountOptions) -> None:
    """Refuse before any write when a new account would be needed but cannot be made."""
    if has_account(store, server):
        return
    if not options.agree_tos:
        raise UsageError(
            "no account with this CA yet: add --agree-tos to accept its terms of service"
        )
    if bool(options.eab_kid) != bool(options.eab_hmac_key):
        raise UsageError("--eab-kid and --eab-hmac-key go together")
    alias = alias_of(server)
    if alias in NEEDS_EAB and not options.eab_kid:
        raise UsageError(
            f"{alias} needs External Account Binding: add --eab-kid and "
            "--eab-hmac-key from the CA's dashboard"
        )


def load_or_create(store: Store, conn: AcmeConnection, options: AccountOptions) -> Account:
    """The account for ``conn``'s CA, registering one (once, under a lock) if there is none."""
    from certsmith.core.issuers import acme

    found = _find(store, conn.url)
    if found and (raw := found[2]) is not None:
        return _load(store, found[0], found[1], raw)
    conn.directory()  # an unreachable CA fails here, before anything is written
    with store.lock(store_keys.account_lease(server_id(conn.url))):
        found = _find(store, conn.url)
        if found and (raw := found[2]) is not None:
            return _load(store, found[0], found[1], raw)
        check_can_register(store, conn.url, options)
        if conn.needs_eab() and not options.eab_kid:
            raise UsageError(
                "this CA needs External Account Binding: add --eab-kid and --eab-hmac-key"
            )
        if found:
            # A key written by a run that died before registering: register that key.
            entry, key_pem = found[0], found[1]
            key = acme.load_account_key(key_pem)
        else:
            key, key_pem = acme.new_account_key()
            entry = store_keys.account(server_id(conn.url), acme.account_id(key))
            # The key is on disk before the CA knows it, so a crash never loses an account.
            store.put(f"{entry}/key.pem", key_pem, private=True)
            crash_point("account:key-written")
        eab = (options.eab_kid, options.eab_hmac_key) if options.eab_kid else None
        account = conn.register(key, options.email, eab)  # type: ignore[arg-type]
        crash_point("account:registered")
        store.put(f"{entry}/account.json", acme.account_json(account, conn.url), private=True)
        return account


def reregister(store: Store, conn: AcmeConnection, account: Account) -> Account:
    """The CA no longer knows our account (deactivated, CA reset): register the same key again.

    The terms were agreed when the account was first created for this CA.
    """
    from certsmith.core.issuers import acme

    with store.lock(store_keys.account_lease(server_id(conn.url))):
        fresh = conn.register(account.key, None, None)
        entry = store_keys.account(server_id(conn.url), acme.account_id(account.key))
        store.put(f"{entry}/account.json", acme.account_json(fresh, conn.url), private=True)
        return fresh


def load_existing(store: Store, server: str) -> Account:
    found = _find(store, server)
    if not found or (raw := found[2]) is None:
        raise UsageError(f"no account for {server}")
    return _load(store, found[0], found[1], raw)


def _load(store: Store, entry: str, key_pem: bytes, raw: bytes) -> Account:
    from certsmith.core.issuers import acme

    where = store.where(f"{entry}/account.json")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DamagedError(f"damaged account file {where}: not JSON") from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("uri"), str)
        or not isinstance(data.get("body"), dict)
    ):
        raise DamagedError(f"damaged account file {where}: no account URI and body")
    return acme.Account(key=acme.load_account_key(key_pem), uri=data["uri"], body=data["body"])
