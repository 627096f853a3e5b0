"""The dns-01 test servers behave as the tests built on them assume: BIND's primary takes TSIG-
signed updates at once and refuses a wrong key, its secondary lags until ``retransfer()``, the
resolver follows a delegation CNAME, the wildcard CNAME is synthesized, zone snapshots compare
equal after an add and a delete, PowerDNS's API and lexicon's powerdns provider change what
PowerDNS serves on port 53, and Pebble starts with a real DNS server.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support.dns import (
    DELEGATE_ZONE,
    DELEGATED_CHALLENGE,
    DELEGATED_TARGET,
    DNS_PORT,
    KEEP_NAME,
    KEEP_TXT,
    PDNS_KEEP_NAME,
    PDNS_ZONE,
    WILDCARD_PARENT,
    WILDCARD_TARGET,
    ZONE,
    Bind,
    PowerDns,
    query,
    worker_net,
)
from tests.support.net import wait_until
from tests.support.pebble import Pebble


def label() -> str:
    """A fresh name part, so tests sharing the session's servers never see each other's data."""
    return f"t{secrets.token_hex(4)}"


def nsupdate(
    bind: Bind, key_file: Path, zone: str, *commands: str
) -> subprocess.CompletedProcess[str]:
    script = (
        f"server {bind.primary} {DNS_PORT}\nzone {zone}\n"
        + "".join(f"{command}\n" for command in commands)
        + "send\n"
    )
    return subprocess.run(
        ["nsupdate", "-k", str(key_file)],
        input=script,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_servers_listen_on_this_workers_addresses(bind_dns: Bind, pdns: PowerDns) -> None:
    net = worker_net()
    assert (bind_dns.primary, bind_dns.secondary, pdns.address, bind_dns.resolver) == (
        f"127.53.{net}.1",
        f"127.53.{net}.2",
        f"127.53.{net}.3",
        f"127.53.{net}.4",
    )
    shown = subprocess.run(
        ["ip", "-4", "addr", "show", "dev", "lo"], capture_output=True, text=True, check=True
    ).stdout
    for address in (bind_dns.primary, bind_dns.secondary, bind_dns.resolver, pdns.address):
        assert f"{address}/32" in shown
    # The zones' NS records name the addresses certsmith will ask on port 53.
    ns = query(bind_dns.primary, f"ns2.{ZONE}", "A")
    assert [rdata.address for rrset in ns.answer for rdata in rrset] == [bind_dns.secondary]
    assert bind_dns.key_file.stat().st_mode & 0o777 == 0o600
    assert bind_dns.wrong_key_file.stat().st_mode & 0o777 == 0o600


def test_update_shows_on_primary_at_once_and_on_secondary_after_retransfer(
    bind_dns: Bind,
) -> None:
    name = f"_acme-challenge.{label()}.{ZONE}"
    value = secrets.token_urlsafe(32)
    before = bind_dns.secondary_serial()
    done = nsupdate(bind_dns, bind_dns.key_file, ZONE, f'update add {name} 60 TXT "{value}"')
    assert done.returncode == 0, done.stderr
    assert bind_dns.txt(bind_dns.primary, name) == [value]
    assert bind_dns.primary_serial() > before
    assert bind_dns.txt(bind_dns.secondary, name) == []
    assert bind_dns.secondary_serial() == before

    bind_dns.retransfer()
    assert bind_dns.txt(bind_dns.secondary, name) == [value]
    assert bind_dns.secondary_serial() == bind_dns.primary_serial()

    done = nsupdate(bind_dns, bind_dns.key_file, ZONE, f"update delete {name} TXT")
    assert done.returncode == 0, done.stderr
    assert bind_dns.txt(bind_dns.primary, name) == []
    bind_dns.retransfer()
    assert bind_dns.txt(bind_dns.secondary, name) == []
    assert bind_dns.txt(bind_dns.primary, KEEP_NAME) == [KEEP_TXT]


def test_wrong_key_is_refused(bind_dns: Bind) -> None:
    name = f"_acme-challenge.{label()}.{ZONE}"
    done = nsupdate(bind_dns, bind_dns.wrong_key_file, ZONE, f'update add {name} 60 TXT "x"')
    assert done.returncode != 0
    assert "BADSIG" in done.stdout + done.stderr or "NOTAUTH" in done.stdout + done.stderr
    assert bind_dns.txt(bind_dns.primary, name) == []


def test_the_key_may_change_txt_records_only(bind_dns: Bind) -> None:
    name = f"{label()}.{ZONE}"
    done = nsupdate(bind_dns, bind_dns.key_file, ZONE, f"update add {name} 60 A 127.0.0.9")
    assert done.returncode != 0
    assert "REFUSED" in done.stdout + done.stderr


def test_zone_snapshot_is_equal_after_an_add_and_a_delete(bind_dns: Bind) -> None:
    before = bind_dns.zone_snapshot(ZONE)
    assert not any(" SOA " in line for line in before)
    assert f'{KEEP_NAME}. 300 IN TXT "{KEEP_TXT}"' in before
    serial = bind_dns.primary_serial()
    name = f"_acme-challenge.{label()}.{ZONE}"
    assert (
        nsupdate(bind_dns, bind_dns.key_file, ZONE, f'update add {name} 60 TXT "tok"').returncode
        == 0
    )
    during = bind_dns.zone_snapshot(ZONE)
    assert sorted([*before, f'{name}. 60 IN TXT "tok"']) == during
    assert nsupdate(bind_dns, bind_dns.key_file, ZONE, f"update delete {name} TXT").returncode == 0
    assert bind_dns.zone_snapshot(ZONE) == before
    assert bind_dns.primary_serial() == serial + 2  # the SOA moved; the snapshot leaves it out
    bind_dns.retransfer(ZONE)
    assert bind_dns.zone_snapshot(ZONE, bind_dns.secondary) == before


def test_delegation_cname_is_followed_by_the_resolver_only(bind_dns: Bind) -> None:
    value = secrets.token_urlsafe(16)
    assert (
        nsupdate(
            bind_dns,
            bind_dns.key_file,
            DELEGATE_ZONE,
            f'update add {DELEGATED_TARGET} 60 TXT "{value}"',
        ).returncode
        == 0
    )
    try:
        answer = query(bind_dns.primary, DELEGATED_CHALLENGE, "TXT")
        assert [rrset.rdtype.name for rrset in answer.answer] == ["CNAME"]
        assert str(answer.answer[0][0].target) == f"{DELEGATED_TARGET}."
        # Negative answers may be cached for about a second: poll.
        wait_until(
            lambda: bind_dns.txt(bind_dns.resolver, DELEGATED_CHALLENGE) == [value],
            what="the resolver following the delegation CNAME",
            timeout=10,
        )
    finally:
        nsupdate(
            bind_dns, bind_dns.key_file, DELEGATE_ZONE, f"update delete {DELEGATED_TARGET} TXT"
        )


def test_wildcard_cname_answers_for_any_label(bind_dns: Bind) -> None:
    name = f"_acme-challenge.{label()}.{WILDCARD_PARENT}"
    answer = query(bind_dns.primary, name, "TXT")
    cnames = [rrset for rrset in answer.answer if rrset.rdtype.name == "CNAME"]
    assert [str(rrset.name) for rrset in cnames] == [f"{name}."]
    assert str(cnames[0][0].target) == f"{WILDCARD_TARGET}."


# -- PowerDNS -------------------------------------------------------------------------------------
def _rrset(name: str, content: str | None) -> dict[str, object]:
    if content is None:
        return {"rrsets": [{"name": f"{name}.", "type": "TXT", "changetype": "DELETE"}]}
    return {
        "rrsets": [
            {
                "name": f"{name}.",
                "type": "TXT",
                "ttl": 60,
                "changetype": "REPLACE",
                "records": [{"content": json.dumps(content), "disabled": False}],
            }
        ]
    }


def test_powerdns_api_changes_what_port_53_serves(pdns: PowerDns) -> None:
    before = pdns.zone_snapshot()
    name = f"_acme-challenge.{label()}.{PDNS_ZONE}"
    url = f"{pdns.api_url}/api/v1/servers/{pdns.server_id}/zones/{PDNS_ZONE}."
    headers = {"X-API-Key": pdns.api_key}
    reply = requests.patch(url, json=_rrset(name, "from the API"), headers=headers, timeout=10)
    assert reply.status_code == 204, reply.text
    assert pdns.txt(name) == ["from the API"]
    reply = requests.patch(url, json=_rrset(name, None), headers=headers, timeout=10)
    assert reply.status_code == 204, reply.text
    assert pdns.txt(name) == []
    assert pdns.zone_snapshot() == before
    assert pdns.txt(PDNS_KEEP_NAME) == [KEEP_TXT]

    refused = requests.patch(
        url, json=_rrset(name, "x"), headers={"X-API-Key": "wrong"}, timeout=10
    )
    assert refused.status_code == 401


def test_lexicon_powerdns_provider_creates_and_deletes(
    pdns: PowerDns, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Lexicon guesses the zone with tldextract, which downloads the Public Suffix List on first
    # use (and caches it under ~/.lexicon_tld_set); offline that fails, quickly here but it may
    # hang on a filtered network. An empty TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS makes tldextract
    # use the list it ships with, without any request; the cache goes to tmp_path. It finds
    # example.org as the registered domain: "delegated" names the real zone, pdns.example.org.
    # Imported here: with lexicon in sys.modules, Hypothesis's scan of the loaded modules
    # touches lexicon's deprecated module aliases and warns in every later property test.
    from lexicon.client import Client
    from lexicon.config import ConfigResolver

    monkeypatch.setenv("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    monkeypatch.setenv("TLDEXTRACT_CACHE_PATH", str(tmp_path / "tld"))
    before = pdns.zone_snapshot()
    name = f"_acme-challenge.{label()}.{PDNS_ZONE}"
    config = ConfigResolver().with_dict(
        {  # type: ignore[no-untyped-call]
            "provider_name": "powerdns",
            "domain": PDNS_ZONE,
            "delegated": PDNS_ZONE,
            "ttl": 60,
            "powerdns": {
                "auth_token": pdns.api_key,
                "pdns_server": pdns.api_url,
                "pdns_server_id": pdns.server_id,
            },
        }
    )
    with Client(config) as operations:
        assert operations.create_record("TXT", name, "from lexicon")
    assert pdns.txt(name) == ["from lexicon"]
    with Client(config) as operations:
        assert operations.delete_record(rtype="TXT", name=name, content="from lexicon")
    assert pdns.txt(name) == []
    assert pdns.zone_snapshot() == before


# -- Pebble ---------------------------------------------------------------------------------------
def test_pebble_starts_with_a_real_dns_server(
    pebble_bind: Pebble, bind_dns: Bind, pebble_pdns: Pebble, pdns: PowerDns
) -> None:
    for pebble, dns_server in (
        (pebble_bind, f"{bind_dns.resolver}:{DNS_PORT}"),
        (pebble_pdns, f"{pdns.address}:{DNS_PORT}"),
    ):
        assert pebble.dns_server == dns_server
        assert "newOrder" in pebble.directory_json()
        assert pebble._dns_proc is None  # no challtestsrv


def test_pebble_validates_dns01_through_the_resolver_certbot_rfc2136(
    pebble_bind: Pebble, bind_dns: Bind, tmp_path: Path
) -> None:
    """The whole path with a peer client: certbot's rfc2136 plugin writes the TXT records with
    ``key_file``'s key on the primary, Pebble finds them through the resolver (a wildcard name
    too), and the zone is as it was afterwards."""
    before = bind_dns.zone_snapshot(ZONE)
    credentials = tmp_path / "rfc2136.ini"
    credentials.touch(mode=0o600)
    credentials.write_text(
        f"dns_rfc2136_server = {bind_dns.primary}\ndns_rfc2136_port = {DNS_PORT}\n"
        f"dns_rfc2136_name = {bind_dns.key_name}\ndns_rfc2136_secret = {bind_dns.key_secret}\n"
        "dns_rfc2136_algorithm = HMAC-SHA256\n"
    )
    host = f"{label()}.{ZONE}"
    cmd = [
        str(Path(sys.executable).with_name("certbot")),
        "certonly",
        "--non-interactive",
        "--agree-tos",
        "-m",
        f"admin@{ZONE}",
        "--server",
        pebble_bind.directory,
        "--config-dir",
        str(tmp_path / "etc"),
        "--work-dir",
        str(tmp_path / "work"),
        "--logs-dir",
        str(tmp_path / "log"),
        "--authenticator",
        "dns-rfc2136",
        "--dns-rfc2136-credentials",
        str(credentials),
        "--dns-rfc2136-propagation-seconds",
        "0",
        "-d",
        host,
        "-d",
        f"*.{host}",
    ]
    done = subprocess.run(
        cmd, env=pebble_bind.client_env(), capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "etc" / "live" / host / "fullchain.pem").exists()
    assert bind_dns.zone_snapshot(ZONE) == before
