"""Restrict an ``ssl.SSLContext`` to a list of key exchange groups.

Why this exists: Python 3.11's ``ssl`` module has no API for the group list
(``set_ecdh_curve`` sets one curve, and only for TLS 1.2), so a context keeps OpenSSL's default
list, which offers X448, P-521 and, in TLS 1.3, finite-field groups up to ffdhe8192. The TLS
policy (``certsmith.base.policy``) allows X25519, P-256 and P-384 only.

How: OpenSSL's ``SSL_CTX_set1_groups_list(ctx, list)`` is a macro for
``SSL_CTX_ctrl(ctx, SSL_CTRL_SET_GROUPS_LIST, 0, list)``. It is called through ctypes on the
context's ``SSL_CTX``:

- the function is looked up through the ``_ssl`` extension module's own handle, so it comes
  from the very libssl that ``_ssl`` was linked with (the dynamic linker searches a library's
  dependencies), never from another OpenSSL on the machine;
- CPython's ``PySSLContext`` (Modules/_ssl.c) starts with ``PyObject_HEAD`` followed by its
  ``SSL_CTX *ctx``. Before anything is written, the pointer read there is checked:
  ``SSL_CTX_get_options`` on it must return the context's ``options``, so a different object
  layout is refused instead of writing into the wrong memory.

Anything unexpected (another Python implementation, no such symbol, a layout that does not
check out, a group OpenSSL does not know) raises ``TLSGroupsError``: a server must not start
silently weaker than its policy says.
"""

from __future__ import annotations

import ctypes
import ssl
import sys
from functools import cache

from certsmith.errors import CertsmithError

SSL_CTRL_SET_GROUPS_LIST = 92  # include/openssl/ssl.h (SSL_CTRL_SET_CURVES_LIST before 1.1.1)


class TLSGroupsError(CertsmithError):
    """The group list could not be applied: the context would offer more than it should."""


@cache
def _libssl() -> ctypes.CDLL:
    if sys.implementation.name != "cpython":
        raise TLSGroupsError(
            f"cannot set TLS groups on {sys.implementation.name}: "
            "only CPython's ssl module layout is known"
        )
    import _ssl

    try:
        lib = ctypes.CDLL(_ssl.__file__)
        ctrl, options, clear = lib.SSL_CTX_ctrl, lib.SSL_CTX_get_options, lib.ERR_clear_error
    except (OSError, AttributeError) as exc:
        raise TLSGroupsError(f"cannot reach OpenSSL through {_ssl.__file__}: {exc}") from exc
    clear.argtypes, clear.restype = [], None
    ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
    ctrl.restype = ctypes.c_long
    options.argtypes = [ctypes.c_void_p]
    # unsigned long before OpenSSL 3.0, uint64_t since: the same width on 64-bit Linux.
    options.restype = ctypes.c_uint64 if ssl.OPENSSL_VERSION_INFO >= (3,) else ctypes.c_ulong
    return lib


def _ssl_ctx(ctx: ssl.SSLContext) -> int:
    """The ``SSL_CTX *`` inside ``ctx``, checked against the context's options."""
    if not isinstance(ctx, ssl.SSLContext):  # (any other object: its memory is not read)
        raise TLSGroupsError(f"not an ssl.SSLContext: {type(ctx).__name__}")
    header = object.__basicsize__  # PyObject_HEAD
    if type(ctx).__basicsize__ < header + ctypes.sizeof(ctypes.c_void_p):
        raise TLSGroupsError("unexpected ssl.SSLContext layout: cannot set TLS groups")
    pointer = ctypes.c_void_p.from_address(id(ctx) + header).value
    if not pointer or _libssl().SSL_CTX_get_options(pointer) != ctx.options:
        raise TLSGroupsError(
            "unexpected ssl.SSLContext layout (its SSL_CTX does not match): cannot set TLS groups"
        )
    return pointer


def set_groups(ctx: ssl.SSLContext, groups: str) -> None:
    """Offer exactly ``groups`` (OpenSSL names, colon-separated) for key exchange on ``ctx``,
    in TLS 1.2 and 1.3; raise TLSGroupsError if that cannot be done."""
    if not groups:
        raise TLSGroupsError("an empty group list would make every handshake fail")
    done = _libssl().SSL_CTX_ctrl(_ssl_ctx(ctx), SSL_CTRL_SET_GROUPS_LIST, 0, groups.encode())
    if done != 1:
        _libssl().ERR_clear_error()  # (else the ssl module reports it on a later call)
        raise TLSGroupsError(f"OpenSSL ({ssl.OPENSSL_VERSION}) refused the TLS groups {groups!r}")
