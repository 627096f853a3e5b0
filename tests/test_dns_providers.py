"""DNS-01 providers without servers: TSIG key files, HOST[:PORT], the hook's environment and
failures, lexicon credentials files, and that lexicon stays offline and keeps secrets out of
messages. The providers against real BIND and PowerDNS: test_dns_providers_servers.py."""

from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dns.tsig
import pytest

from certsmith.base.solverspec import DnsSpec
from certsmith.core.dns.address import format_hostport, parse_hostport
from certsmith.core.dns.hook import HookProvider
from certsmith.core.dns.lexicon import LexiconProvider, parse_credentials, read_credentials
from certsmith.core.dns.providers import from_spec
from certsmith.core.dns.rfc2136 import Rfc2136Provider
from certsmith.core.dns.tsig import parse_tsig_keys, read_tsig_key
from certsmith.errors import DnsError, UsageError

SECRET = base64.b64encode(b"k" * 32).decode()


def key_text(
    name: str = "acme-update", algorithm: str | None = "hmac-sha256", secret: str = SECRET
) -> str:
    alg = f"\talgorithm {algorithm};\n" if algorithm else ""
    return f'key "{name}" {{\n{alg}\tsecret "{secret}";\n}};\n'


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text
    return text


# -- TSIG key files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "algorithm, expected",
    [
        ("hmac-sha256", dns.tsig.HMAC_SHA256),
        ("hmac-sha1", dns.tsig.HMAC_SHA1),
        ("hmac-sha224", dns.tsig.HMAC_SHA224),
        ("hmac-sha384", dns.tsig.HMAC_SHA384),
        ("hmac-sha512", dns.tsig.HMAC_SHA512),
        ("hmac-md5", dns.tsig.HMAC_MD5),
        ("HMAC-MD5.SIG-ALG.REG.INT", dns.tsig.HMAC_MD5),
    ],
)
def test_tsig_key_each_algorithm(tmp_path: Path, algorithm: str, expected: object) -> None:
    path = tmp_path / "k.conf"
    path.write_text(key_text(algorithm=algorithm))
    key = read_tsig_key(path)
    assert key.name == "acme-update"
    assert key.algorithm_name == expected
    assert key.keyring[key.keyname].secret == b"k" * 32


@pytest.mark.parametrize("algorithm", ["hmac-sha256", "hmac-sha512", "hmac-md5"])
def test_tsig_key_as_tsig_keygen_writes_it(tmp_path: Path, algorithm: str) -> None:
    if shutil.which("tsig-keygen") is None:
        pytest.fail("tsig-keygen (bind9-utils) is not installed")
    text = subprocess.run(
        ["tsig-keygen", "-a", algorithm, "Acme-Update."], check=True, capture_output=True, text=True
    ).stdout
    path = tmp_path / "k.conf"
    path.write_text(text)
    key = read_tsig_key(path)
    assert (key.name, key.algorithm) == ("acme-update", algorithm)


def test_tsig_default_algorithm_comments_and_other_statements() -> None:
    text = '# a comment\n// another\n/* a\nblock */\noptions { directory "/x"; };\n' + key_text(
        algorithm=None
    )
    [key] = parse_tsig_keys(text)
    assert key.algorithm == "hmac-sha256"


def test_tsig_secret_never_in_repr(tmp_path: Path) -> None:
    path = tmp_path / "k.conf"
    path.write_text(key_text())
    assert SECRET not in repr(read_tsig_key(path))


@pytest.mark.parametrize(
    "text, says",
    [
        ("", "holds no key clause"),
        ("this is not a key file at all\n", "is not a"),
        ('key "a" { algorithm hmac-sha256; secret "!!notbase64!!"; };', "not valid base64"),
        ('key "a" { algorithm hmac-sha256; };', "has no secret"),
        (key_text(algorithm="hmac-sha3-999"), "unsupported algorithm 'hmac-sha3-999'"),
        ('key "a" { algorithm hmac-sha256; secret "' + SECRET + '"; }', "is not closed"),
        ('key "a" { algorithm hmac-sha256; secret "' + SECRET + '";', "is not closed"),
        (key_text("a") + key_text("b"), "holds 2 keys (a, b)"),
    ],
)
def test_tsig_bad_files(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "k.conf"
    path.write_text(text)
    with pytest.raises(UsageError) as err:
        read_tsig_key(path)
    msg = one_line(err.value)
    assert says in msg and str(path) in msg
    assert SECRET not in msg


def test_tsig_missing_unreadable_binary(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        read_tsig_key(tmp_path / "nope.conf")
    with pytest.raises(UsageError, match="is a directory"):
        read_tsig_key(tmp_path)
    binary = tmp_path / "bin.conf"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(UsageError, match="not text"):
        read_tsig_key(binary)


# -- HOST[:PORT] -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("NS1.Example.org.:53", ("ns1.example.org", 53)),
        ("::1", ("::1", 53)),
        ("[::1]", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("2001:db8::53", ("2001:db8::53", 53)),
    ],
)
def test_hostport(text: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "host:",
        "host:0",
        "host:99999",
        "host:x",
        "[::1",
        "[::1]x",
        "[nothost]:53",
        "1:2:zz",
        ":53",
    ],
)
def test_hostport_bad(text: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_hostport(text)
    one_line(err.value)


def test_format_hostport() -> None:
    assert format_hostport("::1", 53) == "[::1]:53"
    assert format_hostport("127.0.0.1", 5353) == "127.0.0.1:5353"


# -- from_spec and the RFC 2136 provider's configuration ------------------------------------


def test_from_spec_dispatch(tmp_path: Path) -> None:
    key = tmp_path / "k.conf"
    key.write_text(key_text())
    p = from_spec(DnsSpec(provider="rfc2136", tsig_key_file=str(key), server="[::1]:5353"))
    assert isinstance(p, Rfc2136Provider) and p.appends
    p.prepare()
    assert p.label == "RFC 2136 at [::1]:5353 (key acme-update)"
    p = from_spec(
        DnsSpec(provider="rfc2136", tsig_key_file=str(key), server="10.0.0.1"),
        server="127.0.0.1:53",
    )
    assert isinstance(p, Rfc2136Provider) and p.server == ("127.0.0.1", 53)
    p = from_spec(DnsSpec(provider="lexicon:powerdns"))
    assert isinstance(p, LexiconProvider) and p.label == "lexicon powerdns" and not p.appends
    p = from_spec(DnsSpec(provider="hook", hook="/usr/local/bin/x --flag"))
    assert isinstance(p, HookProvider) and p.label == "hook /usr/local/bin/x"


def test_rfc2136_primary_for_is_asked_per_zone(tmp_path: Path) -> None:
    key = tmp_path / "k.conf"
    key.write_text(key_text())
    asked: list[str] = []

    def primary_for(zone: str) -> str:
        asked.append(zone)
        return "127.0.0.1:1"  # nothing listens on port 1

    p = from_spec(DnsSpec(provider="rfc2136", tsig_key_file=str(key)), primary_for=primary_for)
    p.prepare()
    assert p.label == "RFC 2136 at the zone's primary (key acme-update)"
    with pytest.raises(DnsError) as err:
        p.add_txt("example.org", "_acme-challenge.example.org", "v", 60)
    assert one_line(err.value) == "cannot reach DNS server 127.0.0.1:1: connection refused"
    assert asked == ["example.org"]


def test_rfc2136_needs_a_server(tmp_path: Path) -> None:
    key = tmp_path / "k.conf"
    key.write_text(key_text())
    with pytest.raises(UsageError, match="needs a DNS server"):
        Rfc2136Provider(key).prepare()


# -- the hook ------------------------------------------------------------------------------


def script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "hook.py"
    path.write_text(f"#!{sys.executable}\nimport os, sys\n{body}\n")
    path.chmod(0o755)
    return path


def test_hook_environment(tmp_path: Path) -> None:
    out = tmp_path / "seen"
    hook = script(
        tmp_path,
        f"""
keys = sorted(k for k in os.environ if k.startswith(("CERTSMITH_DNS_", "CERTBOT_")))
with open({str(out)!r}, "a") as f:
    f.write(" ".join(f"{{k}}={{os.environ[k]}}" for k in keys) + " argv=" + sys.argv[1] + "\\n")
""",
    )
    p = HookProvider(f"{hook} 'one arg'")
    p.prepare()
    p.add_txt("example.org", "_acme-challenge.example.org", "abc-123_x", 90)
    p.remove_txt("example.org", "_acme-challenge.example.org", "abc-123_x")
    assert p.list_txt("example.org", "_acme-challenge.example.org") is None
    assert not p.appends
    add, remove = out.read_text().splitlines()
    assert add == (
        "CERTSMITH_DNS_ACTION=add CERTSMITH_DNS_NAME=_acme-challenge.example.org "
        "CERTSMITH_DNS_TTL=90 CERTSMITH_DNS_VALUE=abc-123_x "
        "CERTSMITH_DNS_ZONE=example.org argv=one arg"
    )
    assert remove.startswith("CERTSMITH_DNS_ACTION=remove ")


def test_hook_failure_names_command_status_and_last_stderr_line(tmp_path: Path) -> None:
    hook = script(
        tmp_path,
        "print('first', file=sys.stderr)\n"
        "print('zone not found: example.org', file=sys.stderr)\n"
        "print('', file=sys.stderr)\nsys.exit(3)",
    )
    with pytest.raises(DnsError) as err:
        HookProvider(str(hook)).add_txt("example.org", "_acme-challenge.example.org", "v", 60)
    assert one_line(err.value) == (
        f"DNS hook {hook} exited 3 (adding TXT at _acme-challenge.example.org): "
        "zone not found: example.org"
    )


def test_hook_timeout_stops_it(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    hook = script(
        tmp_path,
        f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\nimport time\ntime.sleep(60)",
    )
    with pytest.raises(DnsError) as err:
        HookProvider(str(hook), timeout=1).remove_txt("example.org", "x.example.org", "v")
    assert one_line(err.value) == (
        f"DNS hook {hook} timed out after 1 s (removing TXT at x.example.org)"
    )
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_hook_prepare(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        HookProvider(str(tmp_path / "nope")).prepare()
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\n")
    with pytest.raises(UsageError, match="is not executable"):
        HookProvider(str(plain)).prepare()
    with pytest.raises(UsageError, match="not found in PATH"):
        HookProvider("certsmith-no-such-hook-command").prepare()
    with pytest.raises(UsageError, match="cannot parse"):
        HookProvider("x 'unclosed").prepare()


# -- lexicon credentials ---------------------------------------------------------------------


def test_credentials_parsing() -> None:
    text = (
        '# PowerDNS\n\nauth_token = abc=def\npdns_server="http://127.0.0.1:8081"\n'
        "  # indented comment\npdns_server_id='localhost'\n"
    )
    assert parse_credentials(text) == {
        "auth_token": "abc=def",
        "pdns_server": "http://127.0.0.1:8081",
        "pdns_server_id": "localhost",
    }
    with pytest.raises(UsageError) as err:
        parse_credentials("auth_token=hunter22\njust a line\n", where="creds")
    assert one_line(err.value) == "creds, line 2: expected KEY=VALUE"
    assert "hunter22" not in str(err.value)


def test_credentials_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "creds"
    path.write_text("auth_token=hunter22\n")
    path.chmod(0o600)
    assert read_credentials(path) == {"auth_token": "hunter22"}
    for mode in (0o640, 0o604, 0o644):
        path.chmod(mode)
        with pytest.raises(UsageError) as err:
            read_credentials(path)
        assert one_line(err.value) == (
            f"credentials file {path} is readable by others: chmod 600 {path}"
        )
    with pytest.raises(UsageError, match="does not exist"):
        read_credentials(tmp_path / "nope")


def test_lexicon_unknown_provider() -> None:
    with pytest.raises(UsageError) as err:
        LexiconProvider("no-such-provider").prepare()
    assert one_line(err.value) == (
        "lexicon has no DNS provider 'no-such-provider' (`lexicon --help` lists the ones it knows)"
    )


def test_lexicon_never_fetches_the_suffix_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an empty tldextract cache, building a client reads no URL."""
    import tldextract.cache

    monkeypatch.setenv("TLDEXTRACT_CACHE_PATH", str(tmp_path / "tld-cache"))

    def fetch(*args: object, **kwargs: object) -> str:
        raise AssertionError("tldextract tried to fetch the public suffix list")

    monkeypatch.setattr(tldextract.cache.DiskCache, "cached_fetch_url", fetch)
    creds = tmp_path / "creds"
    creds.write_text("auth_token=hunter22\npdns_server=http://127.0.0.1:1\n")
    creds.chmod(0o600)
    p = LexiconProvider("powerdns", credentials=creds)
    p.prepare()
    # the zone is ours, not tldextract's guess (which would be example.org)
    client = p._client("sub.zone.example.org", 60)
    assert client.config.resolve("lexicon:domain") == "sub.zone.example.org"
    assert "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS" not in os.environ


def test_lexicon_unreachable_api_and_no_secret_in_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    creds = tmp_path / "creds"
    creds.write_text("auth_token=hunter22-secret\npdns_server=http://127.0.0.1:1\n")
    creds.chmod(0o600)
    p = LexiconProvider("powerdns", credentials=creds)
    with caplog.at_level(logging.DEBUG), pytest.raises(DnsError) as err:
        p.add_txt("example.org", "_acme-challenge.example.org", "v", 60)
    assert one_line(err.value) == "cannot reach the lexicon powerdns API: connection refused"
    assert "hunter22-secret" not in caplog.text


def test_lexicon_environment_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEXICON_POWERDNS_AUTH_TOKEN", "hunter22-env")
    monkeypatch.setenv("LEXICON_POWERDNS_PDNS_SERVER", "http://127.0.0.1:1")
    p = LexiconProvider("powerdns")
    p.prepare()
    with pytest.raises(DnsError, match="connection refused"):
        p.list_txt("example.org", "_acme-challenge.example.org")
    assert p._redact("token hunter22-env here") == "token *** here"


def test_lexicon_missing_option_message_is_one_line(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.write_text("pdns_server=http://127.0.0.1:1\n")
    creds.chmod(0o600)
    with pytest.raises(DnsError) as err:
        LexiconProvider("powerdns", credentials=creds).add_txt(
            "example.org", "_acme-challenge.example.org", "v", 60
        )
    assert one_line(err.value) == (
        "lexicon powerdns failed to add TXT at "
        "_acme-challenge.example.org: PowerDNS API key not defined "
        "(auth_token)"
    )


def test_lexicon_without_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("LEXICON_")]:
        monkeypatch.delenv(key)
    with pytest.raises(UsageError) as err:
        LexiconProvider("powerdns").prepare()
    assert one_line(err.value) == (
        "lexicon powerdns has no credentials: give a credentials "
        "file or set LEXICON_POWERDNS_<OPTION> variables"
    )
    empty = tmp_path / "creds"
    empty.write_text("# nothing\n")
    empty.chmod(0o600)
    with pytest.raises(UsageError, match="holds no KEY=VALUE line"):
        LexiconProvider("powerdns", credentials=empty).prepare()
