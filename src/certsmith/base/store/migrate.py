"""The state directory's layout version (``format``) and the in-place upgrades between them.

A directory made by this certsmith gets ``format`` when it is created. One without it was made
by an earlier certsmith (layout 1) and is upgraded on first use, under the ``format`` lease, one
step at a time; each step is idempotent, so a crash half-way is finished by the next run. A
directory with a newer format than this certsmith knows is refused, not guessed at.

Layout 2: one HTTP-01 directory, ``http-01/``, for every answerer. Layout 1 had a second one for
``certsmith proxy`` (``challenges/http/``), recorded in the proxy's site files as their webroot,
so a ``certsmith renew`` from a timer wrote its answers where the new proxy no longer looks.
"""

from __future__ import annotations

import contextlib
import os
import tomllib
from collections.abc import Callable

import tomli_w

from certsmith.base import policy
from certsmith.base.store import keys as store_keys
from certsmith.base.store.fs import FileStore
from certsmith.base.store.layout import FORMAT, FORMAT_KEY, has_state
from certsmith.errors import StoreError


def _to_2(store: FileStore) -> None:
    old = str(store.home / "challenges" / "http")
    new = str(store.home / policy.HTTP01_DIR)
    for key in store.list(store_keys.SITES):
        if not key.endswith(".toml"):
            continue
        raw = store.get(key)
        try:
            site = tomllib.loads((raw or b"").decode())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            continue  # a damaged site file is reported (and kept) by the renewal scan
        solver = site.get("solver")
        if isinstance(solver, dict) and solver.get("webroot") == old:
            solver["webroot"] = new
            store.put(key, tomli_w.dumps(site).encode())
    os.makedirs(new, mode=0o755, exist_ok=True)
    with contextlib.suppress(OSError):  # answers there are gone with the orders that wrote them
        top = policy.ACME_CHALLENGE_SUBDIR.split("/")[0]  # .well-known
        os.rename(os.path.join(old, top), os.path.join(new, top))


STEPS: dict[int, Callable[[FileStore], None]] = {2: _to_2}


def read_format(store: FileStore) -> int | None:
    raw = store.get(FORMAT_KEY)
    if raw is None:
        return None
    try:
        return int(raw.decode().strip())
    except (ValueError, UnicodeDecodeError):
        raise StoreError(f"damaged {store.where(FORMAT_KEY)}: expected a number") from None


def upgrade(store: FileStore) -> None:
    """Bring an existing state directory to :data:`FORMAT` (nothing to do for a new one)."""
    current = read_format(store) if store.home.exists() else FORMAT
    if current is None and not has_state(store.home):
        return  # a new state directory: ensure() gives it the current format
    if current == FORMAT:
        return
    if current is not None and current > FORMAT:
        raise StoreError(
            f"{store.home} was written by a newer certsmith (layout {current}; "
            f"this one knows {FORMAT}): upgrade certsmith"
        )
    if not os.access(store.home, os.W_OK):
        return  # read as it is (a monitoring user's 'list'); the next writer upgrades it
    with store.lock(store_keys.FORMAT_LEASE):
        current = read_format(store) or 1  # another process may have upgraded it meanwhile
        for version in range(current + 1, FORMAT + 1):
            STEPS[version](store)
            store.put(FORMAT_KEY, f"{version}\n".encode())
