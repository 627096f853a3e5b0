"""certsmith import certbot for certbot's DNS plugins, on a certbot directory laid out as
certbot writes it (no CA needed: the certificates come from a throwaway CA here): dns-rfc2136
lineages become dns-01 rfc2136 lineages whose TSIG key is stored 0600 in tsig-keygen's format
(an explicit HMAC-SHA512 key, and one with no algorithm: certbot's HMAC-MD5 default); a
missing or garbled credentials file and other DNS plugins are skipped in one line each, with
nothing written for them; 'certsmith list' then shows each lineage's solver."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import dns.name
import dns.tsigkeyring
import josepy as jose
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certsmith.base.solverspec import (
    DnsSpec,
    ServerSpec,
    SolverSpec,
    StandaloneSpec,
    TlsAlpnSpec,
    WebrootSpec,
)

SERVER = "https://acme.test/directory"
ACCOUNT = "0123456789abcdef0123456789abcdef"
SECRET_512 = base64.b64encode(bytes(range(64))).decode()
SECRET_MD5 = base64.b64encode(b"certbot-default-md5-key").decode()
WILD, MD5, MISSING, GARBLED, CLOUD = (
    "wild.example.org",
    "md5.example.org",
    "missing.example.org",
    "garbled.example.org",
    "cloud.example.org",
)

_CA_KEY = ec.generate_private_key(ec.SECP256R1())
_CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certbot-dns test CA")])


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _ca() -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_CA_NAME)
        .issuer_name(_CA_NAME)
        .public_key(_CA_KEY.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(_CA_KEY, hashes.SHA256())
    )


def ca_pem() -> bytes:
    """The throwaway CA's certificate (for clients to verify what ``issue`` made)."""
    return _ca().public_bytes(serialization.Encoding.PEM)


def issue(names: list[str]) -> dict[str, bytes]:
    """cert, chain, fullchain and privkey PEM for ``names`` from the throwaway CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(_CA_NAME)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(_CA_KEY, hashes.SHA256())
    )
    leaf = cert.public_bytes(serialization.Encoding.PEM)
    chain = ca_pem()
    return {
        "cert.pem": leaf,
        "chain.pem": chain,
        "fullchain.pem": leaf + chain,
        "privkey.pem": _pem(key),
    }


def certbot_dir(base: Path) -> Path:
    """An /etc/letsencrypt with one account and the lineages of this module."""
    le = base / "letsencrypt"
    account = le / "accounts" / "acme.test" / "directory" / ACCOUNT
    account.mkdir(parents=True)
    jwk = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    (account / "private_key.json").write_text(jwk.json_dumps())
    (account / "regr.json").write_text(
        json.dumps({"body": {}, "uri": f"https://acme.test/acct/{ACCOUNT}"})
    )
    (le / "renewal").mkdir()
    creds = base / "creds"
    creds.mkdir(mode=0o700)

    def lineage(name: str, names: list[str], params: str) -> None:
        live = le / "live" / name
        live.mkdir(parents=True)
        for filename, data in issue(names).items():
            (live / filename).write_bytes(data)
        (le / "renewal" / f"{name}.conf").write_text(
            f"# renew_before_expiry = 30 days\nversion = 2.11.0\ncert = {live}/cert.pem\n"
            f"[renewalparams]\naccount = {ACCOUNT}\nserver = {SERVER}\nkey_type = ecdsa\n" + params
        )

    def ini(name: str, text: str) -> Path:
        path = creds / name
        path.write_text(text)
        path.chmod(0o600)
        return path

    sha512 = ini(
        "sha512.ini",
        "# Target DNS server\ndns_rfc2136_server = 192.0.2.53\n"
        "dns_rfc2136_port = 5353\ndns_rfc2136_name = certbot-key.\n"
        f"dns_rfc2136_secret = {SECRET_512}\ndns_rfc2136_algorithm = HMAC-SHA512\n",
    )
    lineage(
        WILD,
        [f"*.{WILD}", WILD],
        f"authenticator = dns-rfc2136\ndns_rfc2136_credentials = {sha512}\n"
        "dns_rfc2136_propagation_seconds = 900\n",
    )
    default = ini(
        "default.ini",
        "dns_rfc2136_server = 2001:db8::53\n"
        f"dns_rfc2136_name = md5key\ndns_rfc2136_secret = {SECRET_MD5}\n",
    )
    lineage(MD5, [MD5], f"authenticator = dns-rfc2136\ndns_rfc2136_credentials = {default}\n")
    lineage(
        MISSING,
        [MISSING],
        f"authenticator = dns-rfc2136\ndns_rfc2136_credentials = {creds / 'gone.ini'}\n",
    )
    garbled = ini(
        "garbled.ini",
        "dns_rfc2136_server = 192.0.2.53\ndns_rfc2136_name = k\ndns_rfc2136_secret = not base64!\n",
    )
    lineage(
        GARBLED, [GARBLED], f"authenticator = dns-rfc2136\ndns_rfc2136_credentials = {garbled}\n"
    )
    lineage(
        CLOUD,
        [CLOUD],
        "authenticator = dns-cloudflare\n"
        f"dns_cloudflare_credentials = {creds / 'cloudflare.ini'}\n",
    )
    return le


def certsmith(home: Path, *args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CERTSMITH_HOME": str(home)}
    env.pop("CERTSMITH_DEBUG", None)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run(
        [sys.executable, "-m", "certsmith", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


KEY_FILE = re.compile(
    r'\Akey "([^"]+)" \{\n\talgorithm ([a-z0-9-]+);\n\tsecret "([^"]+)";\n'
    r"\};\n\Z"
)


def read_tsig_key(path: Path) -> tuple[str, str, str]:
    """(name, algorithm, secret) of a tsig-keygen key file, checked by dnspython's keyring."""
    m = KEY_FILE.match(path.read_text())
    assert m, path.read_text()
    name, algorithm, secret = m.groups()
    ring = dns.tsigkeyring.from_text({name: (algorithm, secret)})
    key = ring[dns.name.from_text(name)]
    assert key.algorithm == dns.name.from_text(algorithm)
    return name, algorithm, secret


def skipped(stderr: str) -> dict[str, str]:
    prefix = "certsmith: cannot import "
    lines = stderr.splitlines()
    assert all(ln.startswith(prefix) for ln in lines), stderr
    return dict(ln[len(prefix) :].split(": ", 1) for ln in lines)


def test_rfc2136_lineages_are_imported_and_other_dns_plugins_skipped(tmp_path: Path) -> None:
    le, home = certbot_dir(tmp_path), tmp_path / "certsmith"
    creds = tmp_path / "creds"
    dry = certsmith(home, "import", "certbot", le, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert (
        f"would import {WILD}: *.{WILD}, {WILD} (dns-01 rfc2136, ecdsa-p256; expires " in dry.stdout
    )
    assert f"would import {MD5}: {MD5} (dns-01 rfc2136, ecdsa-p256; expires " in dry.stdout
    assert (
        "  note: certbot slept 900s for DNS propagation; certsmith asks every authoritative "
        "server until it has the records (up to 900s)"
    ) in dry.stdout
    assert (
        "  note: TSIG algorithm HMAC-MD5 (certbot's default: its credentials name none)"
        in dry.stdout
    )
    assert skipped(dry.stderr) == {
        CLOUD: "certbot DNS plugin 'dns-cloudflare': certsmith does not read its credentials; "
        "get it anew with 'certsmith get NAME --dns lexicon:cloudflare "
        "--dns-credentials FILE'",
        GARBLED: f"certbot DNS plugin 'dns-rfc2136': dns_rfc2136_secret in "
        f"{creds / 'garbled.ini'} is not base64",
        MISSING: f"certbot DNS plugin 'dns-rfc2136': cannot read its credentials file "
        f"{creds / 'gone.ini'}: No such file or directory",
    }
    assert not home.exists()

    done = certsmith(home, "import", "certbot", le)
    assert done.returncode == 0, done.stderr
    assert skipped(done.stderr).keys() == {CLOUD, GARBLED, MISSING}
    for name in (WILD, MD5):
        assert f"{name}: imported -> {home}/live/{name}/fullchain.pem" in done.stdout
        assert (le / "renewal" / f"{name}.conf.imported-by-certsmith").exists()
    for name in (CLOUD, GARBLED, MISSING):  # left to certbot, nothing of them written
        assert (le / "renewal" / f"{name}.conf").exists()
    assert sorted(p.name for p in (home / "sites").iterdir()) == [f"{MD5}.toml", f"{WILD}.toml"]
    keys = home / "dns-01" / "tsig"
    assert sorted(p.name for p in keys.iterdir()) == [f"{MD5}.key", f"{WILD}.key"]

    from certsmith.base.sites import load_site
    from certsmith.base.store import open_store

    store = open_store(home)
    wild = load_site(store, WILD)
    assert wild.solver == DnsSpec(
        provider="rfc2136",
        server="192.0.2.53:5353",
        tsig_key_file=str(keys / f"{WILD}.key"),
        timeout=900,
    )
    assert [i.value for i in wild.identifiers] == [f"*.{WILD}", WILD]
    assert load_site(store, MD5).solver == DnsSpec(
        provider="rfc2136", server="[2001:db8::53]:53", tsig_key_file=str(keys / f"{MD5}.key")
    )
    for name, want in (
        (WILD, ("certbot-key.", "hmac-sha512", SECRET_512)),
        (MD5, ("md5key", "hmac-md5", SECRET_MD5)),
    ):
        path = keys / f"{name}.key"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert read_tsig_key(path) == want

    listed = certsmith(home, "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "NAMES", "SOLVER"]
    by_name = {r.split()[0]: r for r in rows}
    assert by_name[WILD].split()[1:4] == [f"*.{WILD},{WILD}", "dns-01", "rfc2136"]
    as_json = {e["name"]: e for e in json.loads(certsmith(home, "list", "--json").stdout)}
    assert as_json[WILD]["solver"] == "dns-01 rfc2136"
    assert as_json[WILD]["names"] == [f"*.{WILD}", WILD]
    assert as_json[MD5]["last_result"] == "imported"


def test_a_credentials_file_certsmith_cannot_read_is_one_line(tmp_path: Path) -> None:
    le, home = certbot_dir(tmp_path), tmp_path / "certsmith"
    ini = tmp_path / "creds" / "sha512.ini"
    ini.write_text("dns_rfc2136_server = 192.0.2.53\n[unclosed\n= no key\n")
    proc = certsmith(home, "import", "certbot", le, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert skipped(proc.stderr)[WILD] == (
        f"certbot DNS plugin 'dns-rfc2136': its credentials file is garbled: {ini}, line 2: "
        "cannot parse '[unclosed'"
    )
    ini.write_text(
        "dns_rfc2136_server = 192.0.2.53\ndns_rfc2136_name = k\n"
        f"dns_rfc2136_secret = {SECRET_512}\ndns_rfc2136_algorithm = HMAC-SHA3\n"
    )
    proc = certsmith(home, "import", "certbot", le, "--dry-run")
    assert skipped(proc.stderr)[WILD] == (
        f"certbot DNS plugin 'dns-rfc2136': unknown TSIG algorithm 'HMAC-SHA3' in {ini} "
        "(known: HMAC-MD5, HMAC-SHA1, HMAC-SHA224, HMAC-SHA256, HMAC-SHA384, HMAC-SHA512)"
    )
    ini.write_text("dns_rfc2136_server = ns1.example.org\ndns_rfc2136_name = k\n")
    proc = certsmith(home, "import", "certbot", le, "--dry-run")
    assert skipped(proc.stderr)[WILD] == (
        f"certbot DNS plugin 'dns-rfc2136': its credentials file {ini} lacks dns_rfc2136_secret"
    )
    assert not home.exists()


def test_every_solver_describes_itself_in_list(tmp_path: Path) -> None:
    from certsmith.base.certstate import CertState, save_state
    from certsmith.base.identifiers import parse_identifiers
    from certsmith.base.keys import cert_info
    from certsmith.base.model import SiteSpec
    from certsmith.base.sites import save_site
    from certsmith.base.store import open_store

    home = tmp_path / "certsmith"
    specs: dict[str, SolverSpec] = {
        "a.test": WebrootSpec(webroot="/var/www/html"),
        "b.test": StandaloneSpec(),
        "c.test": StandaloneSpec(http_port=8080, address="::1"),
        "d.test": ServerSpec(server="nginx", webroot=str(home / "http-01")),
        "e.test": TlsAlpnSpec(webroot=str(home / "tls-alpn")),
        "f.test": DnsSpec(provider="lexicon:powerdns"),
        "g.test": DnsSpec(provider="hook", hook="/usr/local/bin/dns-hook"),
    }
    store = open_store(home)
    store.ensure()
    for name, solver in specs.items():
        names = [f"*.{name}", name] if isinstance(solver, DnsSpec) else [name]
        files = issue(names)
        store.publish(name, files, private=frozenset({"privkey.pem"}))
        save_site(
            store,
            SiteSpec(name=name, identifiers=parse_identifiers(names), server=SERVER, solver=solver),
        )
        info = cert_info(files["cert.pem"])
        save_state(
            store,
            name,
            CertState(
                serial=info.serial,
                not_before=info.not_before,
                not_after=info.not_after,
                issuer=info.issuer,
                last_result="issued",
            ),
        )
    want = {
        "a.test": "webroot /var/www/html",
        "b.test": "standalone :80",
        "c.test": "standalone [::1]:8080",
        "d.test": "nginx",
        "e.test": "tls-alpn",
        "f.test": "dns-01 lexicon:powerdns",
        "g.test": "dns-01 hook",
    }
    assert {name: spec.describe() for name, spec in specs.items()} == want
    listed = certsmith(home, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {e["name"]: e["solver"] for e in json.loads(listed.stdout)} == want
    table = certsmith(home, "list")
    assert table.returncode == 0, table.stderr
    for line in table.stdout.splitlines()[1:]:
        name = line.split()[0]
        assert f"  {want[name]}  " in line, line
