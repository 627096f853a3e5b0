"""DNS providers against real servers: BIND 9 (``named``) for RFC 2136 and PowerDNS
(``pdns_server`` with its HTTP API, sqlite3 backend) for lexicon, each started here on
127.0.0.1 and a free high port, in a temporary directory. Small on purpose: the shared DNS
fixtures will replace these two."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import pytest
import requests

from certsmith.core.dns.lexicon import LexiconProvider
from certsmith.core.dns.rfc2136 import Rfc2136Provider
from certsmith.errors import DnsError
from tests.support.net import LOOPBACK, die_with_parent, free_port, stop_process, wait_until

ZONE = "example.org"
NAME = "_acme-challenge.example.org"
API_KEY = "test-api-key-0123456789"
PDNS_SCHEMA = Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql")


def _need(program: str) -> str:
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/bin")
    if path is None:
        pytest.fail(f"{program} is not installed")
    return path


def _keygen(name: str) -> str:
    return subprocess.run(
        [_need("tsig-keygen"), "-a", "hmac-sha256", name],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _soa_answers(port: int) -> bool:
    query = dns.message.make_query(ZONE + ".", dns.rdatatype.SOA)
    try:
        response = dns.query.tcp(query, LOOPBACK, port=port, timeout=1)
    except (OSError, EOFError, dns.exception.DNSException):
        return False
    return bool(response.answer)


@dataclass
class Bind:
    port: int
    key_file: Path
    wrong_key_file: Path

    @property
    def server(self) -> str:
        return f"{LOOPBACK}:{self.port}"


@pytest.fixture
def bind(tmp_path: Path) -> Iterator[Bind]:
    port = free_port()
    key_file = tmp_path / "acme-update.key"
    key_file.write_text(_keygen("acme-update"))
    key_file.chmod(0o600)
    wrong = tmp_path / "wrong.key"
    wrong.write_text(_keygen("acme-update"))  # same name, another secret
    (tmp_path / "zone.db").write_text(
        "$TTL 300\n"
        f"@ IN SOA ns1.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 60\n"
        f"@ IN NS ns1.{ZONE}.\nns1 IN A 127.0.0.1\n"
        '_acme-challenge IN TXT "unrelated"\n'
    )
    (tmp_path / "named.conf").write_text(f"""
include "{key_file}";
options {{
    directory "{tmp_path}"; pid-file "{tmp_path}/named.pid";
    session-keyfile "{tmp_path}/session.key";
    listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};
    recursion no; dnssec-validation no;
}};
controls {{ }};
zone "{ZONE}" {{
    type primary; file "{tmp_path}/zone.db";
    update-policy {{ grant acme-update wildcard *.{ZONE} TXT; }};
}};
""")
    log = tmp_path / "named.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [_need("named"), "-g", "-n", "1", "-c", str(tmp_path / "named.conf")],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
    try:
        wait_until(lambda: _soa_answers(port), what="named", proc=proc, log=log.read_text)
        yield Bind(port, key_file, wrong)
    finally:
        stop_process(proc)


@dataclass
class PowerDns:
    api: str
    credentials: Path
    wrong_credentials: Path


def _write_creds(path: Path, api: str, key: str) -> Path:
    path.write_text(
        f"# PowerDNS API\nauth_token={key}\npdns_server={api}\npdns_server_id=localhost\n"
    )
    path.chmod(0o600)
    return path


@pytest.fixture
def pdns(tmp_path: Path) -> Iterator[PowerDns]:
    dns_port, api_port = free_port(), free_port()
    db = tmp_path / "pdns.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(PDNS_SCHEMA.read_text())
    (tmp_path / "pdns.conf").write_text(
        f"launch=gsqlite3\ngsqlite3-database={db}\n"
        f"local-address=127.0.0.1\nlocal-port={dns_port}\n"
        f"api=yes\napi-key={API_KEY}\nwebserver=yes\nwebserver-address=127.0.0.1\n"
        f"webserver-port={api_port}\nwebserver-allow-from=127.0.0.0/8\n"
        f"socket-dir={tmp_path}\nguardian=no\ndaemon=no\ndisable-syslog=yes\n"
    )
    log = tmp_path / "pdns.log"
    api = f"http://{LOOPBACK}:{api_port}"
    zones = f"{api}/api/v1/servers/localhost/zones"

    def api_up() -> bool:
        try:
            return requests.get(zones, headers={"X-API-Key": API_KEY}, timeout=1).ok
        except requests.RequestException:
            return False

    with log.open("wb") as out:
        proc = subprocess.Popen(
            [_need("pdns_server"), f"--config-dir={tmp_path}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
    try:
        wait_until(api_up, what="pdns_server", proc=proc, log=log.read_text)
        made = requests.post(
            zones,
            headers={"X-API-Key": API_KEY},
            timeout=5,
            json={
                "name": ZONE + ".",
                "kind": "Native",
                "nameservers": [f"ns1.{ZONE}."],
                "rrsets": [
                    {
                        "name": NAME + ".",
                        "type": "TXT",
                        "ttl": 300,
                        "changetype": "REPLACE",
                        "records": [{"content": '"unrelated"', "disabled": False}],
                    }
                ],
            },
        )
        assert made.status_code == 201, made.text
        yield PowerDns(
            api,
            _write_creds(tmp_path / "creds", api, API_KEY),
            _write_creds(tmp_path / "wrong", api, "not-the-key"),
        )
    finally:
        stop_process(proc)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text
    return text


# -- RFC 2136 against BIND ---------------------------------------------------------------------


def test_rfc2136_add_list_remove(bind: Bind) -> None:
    p = Rfc2136Provider(bind.key_file, server=bind.server)
    p.prepare()
    assert p.label == f"RFC 2136 at {bind.server} (key acme-update)"
    p.add_txt(ZONE, NAME, "token-one", 60)
    assert p.list_txt(ZONE, NAME) == {"unrelated", "token-one"}
    p.add_txt(ZONE, NAME, "token-two", 60)  # appends: both values present
    assert p.list_txt(ZONE, NAME) == {"unrelated", "token-one", "token-two"}
    p.remove_txt(ZONE, NAME, "token-one")  # exactly that value
    assert p.list_txt(ZONE, NAME) == {"unrelated", "token-two"}
    p.remove_txt(ZONE, NAME, "token-one")  # absent: no error
    p.remove_txt(ZONE, NAME, "token-two")
    assert p.list_txt(ZONE, NAME) == {"unrelated"}
    assert p.list_txt(ZONE, f"_acme-challenge.nothing.{ZONE}") == set()


def test_rfc2136_server_from_primary_for(bind: Bind) -> None:
    p = Rfc2136Provider(bind.key_file, primary_for=lambda zone: bind.server)
    p.add_txt(ZONE, f"_acme-challenge.www.{ZONE}", "v", 60)
    assert p.list_txt(ZONE, f"_acme-challenge.www.{ZONE}") == {"v"}


def test_rfc2136_wrong_key(bind: Bind) -> None:
    p = Rfc2136Provider(bind.wrong_key_file, server=bind.server)
    with pytest.raises(DnsError) as err:
        p.add_txt(ZONE, NAME, "v", 60)
    assert one_line(err.value) == (
        f"the DNS server {bind.server} refused TSIG key 'acme-update' (bad signature): "
        f"check --tsig-key-file {bind.wrong_key_file}"
    )
    assert Rfc2136Provider(bind.key_file, server=bind.server).list_txt(ZONE, NAME) == {"unrelated"}


def test_rfc2136_key_unknown_to_the_server(bind: Bind, tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    other.write_text(_keygen("someone-else"))
    p = Rfc2136Provider(other, server=bind.server)
    with pytest.raises(DnsError) as err:
        p.remove_txt(ZONE, NAME, "unrelated")
    assert one_line(err.value) == (
        f"the DNS server {bind.server} refused TSIG key 'someone-else' (unknown key): "
        f"check --tsig-key-file {other}"
    )
    assert Rfc2136Provider(bind.key_file, server=bind.server).list_txt(ZONE, NAME) == {"unrelated"}


def test_rfc2136_not_authoritative_and_not_in_zone(bind: Bind) -> None:
    p = Rfc2136Provider(bind.key_file, server=bind.server)
    with pytest.raises(DnsError) as err:
        p.add_txt("example.com", "_acme-challenge.example.com", "v", 60)
    assert one_line(err.value) == (
        f"the DNS server {bind.server} is not authoritative for zone example.com (NOTAUTH): "
        "could not add TXT at _acme-challenge.example.com"
    )
    with pytest.raises(
        DnsError,
        match=r"_acme-challenge.example.com is not in zone "
        r"example.org \(NOTZONE\)",
    ):
        p.add_txt(ZONE, "_acme-challenge.example.com", "v", 60)


def test_rfc2136_refused_by_policy(bind: Bind) -> None:
    p = Rfc2136Provider(bind.key_file, server=bind.server)
    with pytest.raises(DnsError) as err:
        p.add_txt(ZONE, ZONE, "v", 60)  # the apex is outside the key's update-policy
    assert one_line(err.value) == (
        f"the DNS server {bind.server} refused the update to zone {ZONE} (REFUSED): does its "
        "update-policy allow key 'acme-update' to change TXT records there?"
    )


def test_rfc2136_unreachable(bind: Bind) -> None:
    port = free_port()
    p = Rfc2136Provider(bind.key_file, server=f"127.0.0.1:{port}")
    with pytest.raises(DnsError) as err:
        p.add_txt(ZONE, NAME, "v", 60)
    assert one_line(err.value) == f"cannot reach DNS server 127.0.0.1:{port}: connection refused"


# -- lexicon against PowerDNS's API --------------------------------------------------------------


def test_lexicon_powerdns_add_list_remove(pdns: PowerDns) -> None:
    p = LexiconProvider("powerdns", credentials=pdns.credentials)
    p.prepare()
    p.add_txt(ZONE, NAME, "token-one", 60)
    p.add_txt(ZONE, NAME, "token-two", 60)
    assert p.list_txt(ZONE, NAME) == {"unrelated", "token-one", "token-two"}
    p.remove_txt(ZONE, NAME, "token-one")
    assert p.list_txt(ZONE, NAME) == {"unrelated", "token-two"}
    p.remove_txt(ZONE, NAME, "token-one")  # absent: no error
    p.remove_txt(ZONE, NAME, "token-two")
    assert p.list_txt(ZONE, NAME) == {"unrelated"}


def test_lexicon_powerdns_wrong_api_key(pdns: PowerDns) -> None:
    p = LexiconProvider("powerdns", credentials=pdns.wrong_credentials)
    p.prepare()  # touches no API
    with pytest.raises(DnsError) as err:
        p.add_txt(ZONE, NAME, "v", 60)
    assert one_line(err.value) == "lexicon powerdns refused the credentials (HTTP 401)"


def test_lexicon_powerdns_unknown_zone(pdns: PowerDns) -> None:
    p = LexiconProvider("powerdns", credentials=pdns.credentials)
    with pytest.raises(DnsError) as err:
        p.add_txt("example.net", "_acme-challenge.example.net", "v", 60)
    assert "does the account hold zone example.net?" in one_line(err.value)
