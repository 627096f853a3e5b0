"""TSIG keys from the files ``tsig-keygen`` (or ``ddns-confgen``) writes, for signing RFC 2136
updates::

    key "acme-update" {
        algorithm hmac-sha256;
        secret "base64...";
    };

A file may hold several ``key`` clauses (and other BIND statements, which are skipped): with
one key it is used, with several the file is refused (name the one to use by giving a file with
only it). The algorithms are BIND's: hmac-sha256 (the default when a clause names none),
hmac-sha1, hmac-sha224, hmac-sha384, hmac-sha512 and hmac-md5.

The file's mode is not checked (certbot's rfc2136 plugin does not either; the key is only
good for the zones the server lets it update). The secret never appears in a message or a repr.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.name
import dns.tsig

from certsmith.errors import UsageError

ALGORITHMS: dict[str, dns.name.Name] = {
    "hmac-md5": dns.tsig.HMAC_MD5,
    "hmac-md5.sig-alg.reg.int": dns.tsig.HMAC_MD5,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
}
DEFAULT_ALGORITHM = "hmac-sha256"

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*|//[^\n]*|/\*.*?\*/)
  | "(?P<string>(?:[^"\\\n]|\\.)*)"
  | (?P<punct>[{};])
  | (?P<word>[^\s{};"#/]+(?:/(?![/*])[^\s{};"#/]*)*)
""",
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class TsigKey:
    """One key: ``name`` (without trailing dot), ``algorithm`` as BIND spells it, and the
    dnspython ``keyring`` ({key name: dns.tsig.Key}) for ``dns.update.UpdateMessage``."""

    name: str
    algorithm: str
    keyring: dict[dns.name.Name, dns.tsig.Key] = field(repr=False, compare=False)

    @property
    def keyname(self) -> dns.name.Name:
        return dns.name.from_text(self.name)

    @property
    def algorithm_name(self) -> dns.name.Name:
        return ALGORITHMS[self.algorithm]


def read_tsig_key(path: str | Path) -> TsigKey:
    """The only key in ``path``; ``UsageError`` naming the file otherwise."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"TSIG key file {file} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"TSIG key file {file} is a directory") from None
    except UnicodeDecodeError:
        raise UsageError(f"TSIG key file {file} is not a key file (not text)") from None
    except OSError as exc:
        raise UsageError(f"cannot read TSIG key file {file}: {exc.strerror}") from None
    keys = parse_tsig_keys(text, where=str(file))
    if not keys:
        raise UsageError(
            f"TSIG key file {file} holds no key clause "
            '(expected key "NAME" { algorithm ...; secret "..."; };)'
        )
    if len(keys) > 1:
        names = ", ".join(k.name for k in keys)
        raise UsageError(
            f"TSIG key file {file} holds {len(keys)} keys ({names}): "
            "give a file with only the key to use"
        )
    return keys[0]


def parse_tsig_keys(text: str, *, where: str = "TSIG key file") -> list[TsigKey]:
    """Every ``key`` clause in ``text`` (BIND syntax); other statements are skipped."""
    tokens = _tokens(text, where)
    keys: list[TsigKey] = []
    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "word" and value == "key":
            clause, i = _key_clause(tokens, i + 1, where)
            keys.append(clause)
        else:
            i = _skip_statement(tokens, i, where)
    return keys


def _tokens(text: str, where: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            line = text.count("\n", 0, pos) + 1
            raise UsageError(f"{where} is not a TSIG key file: cannot parse line {line}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind in ("space", "comment"):
            continue
        out.append((kind, m.group(kind)))
    return out


def _skip_statement(tokens: list[tuple[str, str]], i: int, where: str) -> int:
    """Past the ``;`` that ends the statement at ``i`` (braces nested)."""
    depth = 0
    while i < len(tokens):
        kind, value = tokens[i]
        i += 1
        if kind == "punct":
            if value == "{":
                depth += 1
            elif value == "}":
                depth -= 1
                if depth < 0:
                    break
            elif value == ";" and depth == 0:
                return i
    raise UsageError(f"{where} is not a TSIG key file: unbalanced braces or missing ';'")


def _key_clause(tokens: list[tuple[str, str]], i: int, where: str) -> tuple[TsigKey, int]:
    def bad(why: str) -> UsageError:
        return UsageError(f"{where} is not a valid TSIG key file: {why}")

    if i >= len(tokens) or tokens[i][0] not in ("string", "word"):
        raise bad("'key' needs a name")
    name = tokens[i][1].lower().rstrip(".")
    if not name:
        raise bad("empty key name")
    i += 1
    if i >= len(tokens) or tokens[i] != ("punct", "{"):
        raise bad(f"expected '{{' after key \"{name}\"")
    i += 1
    options: dict[str, str] = {}
    while i < len(tokens) and tokens[i] != ("punct", "}"):
        kind, option = tokens[i]
        if kind != "word":
            raise bad(f'unexpected {option!r} in key "{name}"')
        if (
            i + 2 >= len(tokens)
            or tokens[i + 1][0] not in ("word", "string")
            or tokens[i + 2] != ("punct", ";")
        ):
            raise bad(f"'{option}' in key \"{name}\" needs one value and ';'")
        options[option.lower()] = tokens[i + 1][1]
        i += 3
    if i + 1 >= len(tokens) or tokens[i + 1] != ("punct", ";"):
        raise bad(f"key \"{name}\" is not closed with '}};'")
    i += 2
    algorithm = options.get("algorithm", DEFAULT_ALGORITHM).lower()
    if algorithm not in ALGORITHMS:
        known = ", ".join(a for a in ALGORITHMS if "." not in a)
        raise bad(f'key "{name}" has unsupported algorithm {algorithm!r} (known: {known})')
    encoded = options.get("secret")
    if not encoded:
        raise bad(f'key "{name}" has no secret')
    try:
        secret = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise bad(f'the secret of key "{name}" is not valid base64') from None
    if not secret:
        raise bad(f'the secret of key "{name}" is empty')
    try:
        keyname = dns.name.from_text(name)
    except dns.exception.DNSException:
        raise bad(f"invalid key name {name!r}") from None
    key = dns.tsig.Key(keyname, secret, ALGORITHMS[algorithm])
    return TsigKey(name=name, algorithm=_canonical(algorithm), keyring={keyname: key}), i


def _canonical(algorithm: str) -> str:
    return "hmac-md5" if algorithm.startswith("hmac-md5") else algorithm
