"""certbot's DNS plugins, translated for ``import certbot`` (pure: reads files, writes nothing).

``dns-rfc2136`` becomes a :class:`~certsmith.base.solverspec.DnsSpec` with provider
``rfc2136``: the TSIG key of its credentials INI file (``dns_rfc2136_name``, ``_secret``,
``_algorithm``, default HMAC-MD5 as in certbot) is rendered as ``tsig-keygen`` writes it, for
the caller to store 0600; the server and port become ``server``. Every other certbot DNS plugin
is left to certbot, with the ``--dns lexicon:PROVIDER`` that ``certsmith get`` takes instead.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certsmith.base.solverspec import DnsSpec
from certsmith.errors import CertsmithError, UsageError
from certsmith.services.importer import configobj

RFC2136 = "dns-rfc2136"
PREFIX = "dns_rfc2136_"
# certbot-dns-rfc2136's algorithm names -> BIND's; an empty one is HMAC-MD5 there
ALGORITHMS = {
    f"HMAC-{h}": f"hmac-{h.lower()}"
    for h in ("MD5", "SHA1", "SHA224", "SHA256", "SHA384", "SHA512")
}
CERTBOT_DEFAULT_ALGORITHM = "HMAC-MD5"
DEFAULT_TIMEOUT = DnsSpec.timeout
_KEY_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9_.])?$")

# certbot DNS plugin -> the dns-lexicon provider for the same DNS host (where the name differs
# or certbot has a plugin for it: its own and the common third-party ones)
LEXICON = {
    "cloudflare": "cloudflare",
    "digitalocean": "digitalocean",
    "dnsimple": "dnsimple",
    "dnsmadeeasy": "dnsmadeeasy",
    "gehirn": "gehirn",
    "google": "googleclouddns",
    "linode": "linode4",
    "luadns": "luadns",
    "nsone": "nsone",
    "ovh": "ovh",
    "route53": "route53",
    "sakuracloud": "sakuracloud",
    "powerdns": "powerdns",
    "hetzner": "hetzner",
    "gandi": "gandi",
    "desec": "desec",
    "inwx": "inwx",
    "godaddy": "godaddy",
    "namecheap": "namecheap",
    "porkbun": "porkbun",
    "transip": "transip",
    "netcup": "netcup",
    "ionos": "ionos",
    "vultr": "vultr",
    "dnspod": "dnspod",
    "aliyun": "aliyun",
    "azure": "azure",
    "cloudns": "cloudns",
    "infomaniak": "infomaniak",
    "joker": "joker",
    "namecom": "namecom",
}


class Unusable(CertsmithError):
    """The lineage's DNS plugin or its credentials cannot be carried over (one line, why)."""


@dataclass(frozen=True)
class Rfc2136:
    """What an rfc2136 lineage becomes: its spec (``tsig_key_file`` already the stored file's
    path), the key file to store 0600, and notes for the report."""

    spec: DnsSpec
    key_file: bytes
    notes: tuple[str, ...] = ()


def plugin_name(authenticator: str) -> str:
    """``dns-cloudflare`` (or the old ``certbot-dns-cloudflare:dns-cloudflare``) ->
    ``cloudflare``."""
    return authenticator.rpartition(":")[2].removeprefix("dns-")


def other_plugin(authenticator: str) -> str:
    """Why a lineage of another certbot DNS plugin is left to certbot, and what to run."""
    name = plugin_name(authenticator)
    provider = LEXICON.get(name)
    how = (
        f"get it anew with 'certsmith get NAME --dns lexicon:{provider} --dns-credentials FILE'"
        if provider
        else "get it anew with 'certsmith get NAME --dns lexicon:PROVIDER' (a dns-lexicon "
        "provider for your DNS host) or '--dns hook'"
    )
    return f"certbot DNS plugin {authenticator!r}: certsmith does not read its credentials; {how}"


def tsig_key_text(name: str, algorithm: str, secret: str) -> bytes:
    """A TSIG key as ``tsig-keygen`` writes it (BIND's ``key`` statement)."""
    return (f'key "{name}" {{\n\talgorithm {algorithm};\n\tsecret "{secret}";\n}};\n').encode()


def _server(host: str, port: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise Unusable(
            f"dns_rfc2136_server {host!r} is not an IP address (certbot needs one too)"
        ) from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise Unusable(f"invalid dns_rfc2136_port {port!r}")
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def _credentials(path: str) -> dict[str, str]:
    if not path:
        raise Unusable("dns-rfc2136 without dns_rfc2136_credentials in the renewal config")
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise Unusable(f"cannot read its credentials file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise Unusable(f"its credentials file {path} is not text") from None
    try:
        parsed = configobj.parse(text, path)
    except UsageError as exc:
        raise Unusable(f"its credentials file is garbled: {exc}") from None
    return {k: v for k, v in parsed.items() if isinstance(v, str)}


def rfc2136(rp: dict[str, Any], tsig_key_file: str) -> Rfc2136:
    """The dns-01 spec of a certbot ``dns-rfc2136`` lineage (``rp``: its [renewalparams]);
    ``tsig_key_file``: where the caller will store the key. Raises :class:`Unusable`."""
    path = str(rp.get(PREFIX + "credentials") or "")
    creds = _credentials(path)

    def get(key: str, default: str = "") -> str:
        return (creds.get(PREFIX + key) or default).strip()

    missing = [PREFIX + k for k in ("server", "name", "secret") if not get(k)]
    if missing:
        raise Unusable(f"its credentials file {path} lacks {', '.join(missing)}")
    name, secret = get("name"), get("secret")
    if not _KEY_NAME.match(name):
        raise Unusable(f"invalid TSIG key name {name!r} in {path}")
    try:
        if not base64.b64decode(secret, validate=True):
            raise ValueError("empty")
    except (binascii.Error, ValueError):
        raise Unusable(f"dns_rfc2136_secret in {path} is not base64") from None
    given = get("algorithm")
    algorithm = ALGORITHMS.get((given or CERTBOT_DEFAULT_ALGORITHM).upper())
    if algorithm is None:
        raise Unusable(
            f"unknown TSIG algorithm {given!r} in {path} (known: {', '.join(ALGORITHMS)})"
        )
    server = _server(get("server"), get("port", "53"))
    notes = []
    if not given:
        notes.append("TSIG algorithm HMAC-MD5 (certbot's default: its credentials name none)")
    timeout = DEFAULT_TIMEOUT
    wait = str(rp.get(PREFIX + "propagation_seconds") or "").strip()
    if wait.isdigit():
        timeout = max(timeout, int(wait))
        notes.append(
            f"certbot slept {wait}s for DNS propagation; certsmith asks every "
            f"authoritative server until it has the records (up to {timeout}s)"
        )
    if get("sign_query").upper() == "TRUE":
        notes.append(
            "dns_rfc2136_sign_query is not carried over: certsmith signs its updates "
            "with the key and finds the zone through the resolvers, unsigned"
        )
    spec = DnsSpec(provider="rfc2136", server=server, tsig_key_file=tsig_key_file, timeout=timeout)
    return Rfc2136(spec, tsig_key_text(name, algorithm, secret), tuple(notes))
