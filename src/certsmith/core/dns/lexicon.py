"""``--dns lexicon:NAME``: TXT records through a dns-lexicon provider (Cloudflare, PowerDNS,
Route 53, OVH, ... : ``lexicon --help`` lists them).

Only lexicon's public API is used: ``lexicon.client.Client`` with a
``lexicon.config.ConfigResolver``, and the operations its context manager gives
(``create_record``, ``delete_record`` by type + name + content, ``list_records``). One client
per operation: the zone and TTL are part of its configuration.

Credentials: ``credentials`` names a file of ``KEY=VALUE`` lines (``#`` comments and blank
lines allowed) whose keys are the provider's lexicon options (``auth_token``, ``pdns_server``,
...); it must not be readable by group or others, like a private key. Without a file,
lexicon's own environment variables are read (``LEXICON_<PROVIDER>_<OPTION>``, e.g.
``LEXICON_POWERDNS_AUTH_TOKEN``). Credential values never reach a message: every error text
taken from lexicon or a provider has them replaced by ``***``, and lexicon's loggers (its
providers log requests and answers at DEBUG) are held at WARNING.

Offline zone names. ``Client()`` guesses the zone from the domain with tldextract, whose first
use downloads the public suffix list (there may be no internet; and a guess is wrong for a
delegated sub-zone anyway). lexicon's alternative, ``resolve_zone_name``, asks the system
resolver instead. We do neither: (1) while the client is built, tldextract's
``TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS`` is set to the empty string, which a ``TLDExtract``
reads in its constructor as "no URLs" (the same as ``suffix_list_urls=()``), so it falls back
to the snapshot bundled with tldextract and never fetches; (2) the client's guess is then
overridden: our own config source holding ``domain = zone`` is put first
(``ConfigResolver.add_config_source(..., 0)``, public API), so the provider works in exactly
the zone certsmith found.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from certsmith.errors import DnsError, UsageError

_PSL_ENV = "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"
_env_lock = threading.Lock()

# lexicon's providers log requests and answers (for some, headers with tokens) at DEBUG.
logging.getLogger("lexicon").setLevel(logging.WARNING)


def read_credentials(path: str | Path) -> dict[str, str]:
    """The ``KEY=VALUE`` lines of a credentials file that only its owner can read."""
    file = Path(path)
    try:
        st = file.stat()
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"credentials file {file} is a directory")
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise UsageError(f"credentials file {file} is readable by others: chmod 600 {file}")
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"credentials file {file} does not exist") from None
    except UnicodeDecodeError:
        raise UsageError(f"credentials file {file} is not text") from None
    except OSError as exc:
        raise UsageError(f"cannot read credentials file {file}: {exc.strerror}") from None
    return parse_credentials(text, where=str(file))


def parse_credentials(text: str, *, where: str = "credentials file") -> dict[str, str]:
    """``KEY=VALUE`` per line; ``#`` starts a comment line; blanks skipped; values may be
    quoted ('...' or "..."). Messages name the line, never a value."""
    out: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or any(c.isspace() for c in key):
            raise UsageError(f"{where}, line {number}: expected KEY=VALUE")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key] = value
    return out


class LexiconProvider:
    """``name``: the lexicon provider (``powerdns``); ``credentials``: the file, or "" for
    lexicon's environment variables."""

    appends = False  # lexicon providers differ; not known in general

    def __init__(self, name: str, *, credentials: str | Path = "") -> None:
        self.name = name.strip().lower()
        self.credentials = str(credentials) if credentials else ""
        self._options: dict[str, str] | None = None

    @property
    def label(self) -> str:
        return f"lexicon {self.name}"

    def prepare(self) -> None:
        """Lexicon knows the provider and has its dependencies, and the credentials are there
        (the file reads, or the environment has variables for the provider); no DNS and no API
        request."""
        self._options = read_credentials(self.credentials) if self.credentials else {}
        self._client("invalid", 60)
        if self.credentials and not self._options:
            raise UsageError(f"credentials file {self.credentials} holds no KEY=VALUE line")
        if not self.credentials and not any(k.startswith(self._env_prefix) for k in os.environ):
            raise UsageError(
                f"lexicon {self.name} has no credentials: give a credentials "
                f"file or set {self._env_prefix}<OPTION> variables"
            )

    def add_txt(self, zone: str, fqdn: str, value: str, ttl: int) -> None:
        with self._operations(zone, ttl, f"add TXT at {fqdn}") as ops:
            ops.create_record("TXT", fqdn, value)

    def remove_txt(self, zone: str, fqdn: str, value: str) -> None:
        with self._operations(zone, None, f"remove TXT at {fqdn}") as ops:
            ops.delete_record(None, "TXT", fqdn, value)

    def list_txt(self, zone: str, fqdn: str) -> set[str] | None:
        with self._operations(zone, None, f"list TXT at {fqdn}") as ops:
            records = ops.list_records("TXT", fqdn, None)
        return {
            str(r.get("content", ""))
            for r in records
            if str(r.get("name", "")).rstrip(".").lower() == fqdn
        }

    # -- internals ---------------------------------------------------------------------------

    @property
    def options(self) -> dict[str, str]:
        if self._options is None:
            self._options = read_credentials(self.credentials) if self.credentials else {}
        return self._options

    @property
    def _env_prefix(self) -> str:
        return f"LEXICON_{self.name.upper().replace('-', '_')}_"

    def _secrets(self) -> list[str]:
        values = list(self.options.values())
        values += [v for k, v in os.environ.items() if k.startswith(self._env_prefix)]
        return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)

    def _redact(self, text: str) -> str:
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return text

    def _client(self, zone: str, ttl: int | None) -> Any:
        from lexicon.client import Client
        from lexicon.config import ConfigResolver, DictConfigSource
        from lexicon.exceptions import ProviderNotAvailableError

        provider_options: dict[str, str] = {}
        for key, value in self.options.items():
            # lexicon reads most options with '_', a few with '-' (pdns-disable-notify)
            provider_options[key] = value
            provider_options.setdefault(key.replace("-", "_"), value)
            provider_options.setdefault(key.replace("_", "-"), value)
        runtime: dict[str, Any] = {
            "provider_name": self.name,
            "domain": zone,
            self.name: provider_options,
        }
        if ttl is not None:
            runtime["ttl"] = ttl
        config = ConfigResolver().with_dict(runtime)  # type: ignore[no-untyped-call]
        if not self.credentials:
            config = config.with_env()
        try:
            with _offline_suffix_list():
                client = Client(config)
        except ProviderNotAvailableError as exc:
            if "not supported" in str(exc):
                raise UsageError(
                    f"lexicon has no DNS provider {self.name!r} (`lexicon --help` "
                    "lists the ones it knows)"
                ) from None
            raise UsageError(
                f"lexicon {self.name} needs extra packages: install dns-lexicon[{self.name}]"
            ) from None
        # Our zone, not tldextract's guess: first in line (see the module docstring).
        client.config.add_config_source(DictConfigSource({"domain": zone}), 0)
        return client

    @contextmanager
    def _operations(self, zone: str, ttl: int | None, what: str) -> Iterator[Any]:
        client = self._client(zone, ttl)
        try:
            with client as ops:
                yield ops
        except (DnsError, UsageError):
            raise
        except Exception as exc:  # any provider may raise anything; turn it into one line
            raise DnsError(self._describe(exc, zone, what)) from None

    def _describe(self, exc: Exception, zone: str, what: str) -> str:
        import requests
        from lexicon.exceptions import AuthenticationError

        who = self.label
        if isinstance(exc, AuthenticationError):
            return f"{who} refused the credentials: {self._redact(str(exc))}"
        if isinstance(exc, requests.HTTPError):
            status = exc.response.status_code if exc.response is not None else 0
            if status in (401, 403):
                return f"{who} refused the credentials (HTTP {status})"
            if status == 404:
                return (
                    f"{who}: the API answered HTTP 404 (does the account hold zone "
                    f"{zone}?): could not {what}"
                )
            reason = exc.response.reason if exc.response is not None else ""
            return f"{who}: the API answered HTTP {status} {reason}: could not {what}".rstrip()
        if isinstance(exc, requests.Timeout):
            return f"cannot reach the {who} API: timed out"
        if isinstance(exc, requests.ConnectionError):
            return f"cannot reach the {who} API: {_reason(exc)}"
        text = self._redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return f"{who} failed to {what}: {text}"


def _reason(exc: BaseException) -> str:
    """The socket error under a requests ConnectionError (``connection refused``, ...)."""
    seen: BaseException | None = exc
    while seen is not None:
        for arg in (seen, *getattr(seen, "args", ())):
            if isinstance(arg, OSError) and arg.errno:
                if arg.errno == errno.ECONNREFUSED:
                    return "connection refused"
                return (arg.strerror or errno.errorcode.get(arg.errno, "")).lower()
        nxt = seen.__cause__ or seen.__context__ or getattr(seen, "reason", None)
        seen = nxt if isinstance(nxt, BaseException) else None
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "nodename nor servname" in text:
        return "unknown host name"
    return "connection failed"


@contextmanager
def _offline_suffix_list() -> Iterator[None]:
    """tldextract reads no URL while lexicon's client is built (see the module docstring)."""
    with _env_lock:
        old = os.environ.get(_PSL_ENV)
        os.environ[_PSL_ENV] = ""
        try:
            yield
        finally:
            if old is None:
                os.environ.pop(_PSL_ENV, None)
            else:
                os.environ[_PSL_ENV] = old
