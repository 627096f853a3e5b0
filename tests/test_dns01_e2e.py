"""DNS-01 end to end: certsmith's CLI against real BIND 9 and PowerDNS (tests/support/dns/) and a
real Pebble that validates by asking that DNS.

What a user sees is asserted: the exit status and its one line, the names on the certificate,
the progress lines of the propagation wait, and the zone itself — after every test its transfer
(AXFR, without the SOA whose serial moves on each update) is identical to before.

BIND's secondary (ns2) gets no NOTIFY: it has a new record only after ``retransfer()``. certsmith
asks every authoritative server directly, so it waits for ns2 and says so ("waiting for
ns2..."); :func:`run_dns` answers that line the way an operator's fixed secondary would, by
making ns2 transfer the zone. That is the "second authoritative server that receives the record
late" of every BIND test.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import _certsmith_env
from tests.support.dns import (
    DELEGATE_ZONE,
    DELEGATED_CHALLENGE,
    DNS_PORT,
    KEEP_NAME,
    KEEP_TXT,
    PDNS_ZONE,
    ZONE,
    Bind,
    PowerDns,
    worker_net,
)
from tests.support.pebble import Pebble
from tests.test_acme_flow import sans

pytestmark = pytest.mark.servers


class Run:
    def __init__(self, returncode: int, stdout: str, stderr: str, retransfers: int) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.retransfers = retransfers

    @property
    def lines(self) -> list[str]:
        return self.stderr.strip().splitlines()


def run_dns(
    home: Path,
    pebble: Pebble,
    *args: str,
    bind: Bind | None = None,
    env: dict[str, str] | None = None,
    catch_up: bool = True,
    timeout: float = 120,
) -> Run:
    """certsmith ``args``; each time it says it waits for ns2, ns2 is made to transfer."""
    cmd = [sys.executable, "-m", "certsmith", *args]
    proc = subprocess.Popen(
        cmd,
        env=_certsmith_env(home, pebble, env),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None and proc.stdout is not None
    err: list[str] = []
    retransfers = 0
    out_box: list[str] = []
    reader = threading.Thread(target=lambda: out_box.append(proc.stdout.read()))  # type: ignore[union-attr]
    reader.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        for line in proc.stderr:
            err.append(line)
            if bind is not None and catch_up and "waiting for ns2" in line:
                bind.retransfer()
                retransfers += 1
        proc.wait()
    finally:
        timer.cancel()
        reader.join()
    return Run(proc.returncode, "".join(out_box), "".join(err), retransfers)


def label() -> str:
    return "t" + secrets.token_hex(4)


def rfc2136(bind: Bind, key: Path | None = None) -> list[str]:
    return [
        "--dns",
        "rfc2136",
        "--tsig-key-file",
        str(key or bind.key_file),
        "--dns-resolver",
        bind.resolver,
    ]


def acme(pebble: Pebble) -> list[str]:
    return ["--server", pebble.directory, "--agree-tos"]


def pending(home: Path) -> list[str]:
    d = home / "dns-01" / "pending"
    return sorted(os.listdir(d)) if d.is_dir() else []


def test_wildcard_and_apex_over_rfc2136_then_renewal(
    cs_home: Path, bind_dns: Bind, pebble_bind: Pebble
) -> None:
    apex = f"{label()}.{ZONE}"
    before = bind_dns.zone_snapshot(ZONE)
    got = run_dns(
        cs_home,
        pebble_bind,
        "get",
        f"*.{apex}",
        apex,
        *rfc2136(bind_dns),
        *acme(pebble_bind),
        bind=bind_dns,
    )
    assert got.returncode == 0, got.stderr
    assert sans(cs_home / "live" / f"_.{apex}" / "cert.pem") == sorted([f"*.{apex}", apex])
    # the late secondary was waited for, and certsmith said so
    assert got.retransfers >= 1
    assert any(f"waiting for ns2.{ZONE} ({bind_dns.secondary})" in ln for ln in got.lines)
    assert bind_dns.zone_snapshot(ZONE) == before
    assert bind_dns.txt(bind_dns.primary, KEEP_NAME) == [KEEP_TXT]
    assert pending(cs_home) == []

    listed = run_dns(cs_home, pebble_bind, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [c["solver"] for c in json.loads(listed.stdout)] == ["dns-01 rfc2136"]

    serial = (cs_home / "live" / f"_.{apex}" / "cert.pem").read_bytes()
    renewed = run_dns(cs_home, pebble_bind, "renew", "--force", bind=bind_dns)
    assert renewed.returncode == 0, renewed.stderr
    assert (cs_home / "live" / f"_.{apex}" / "cert.pem").read_bytes() != serial
    assert bind_dns.zone_snapshot(ZONE) == before


def test_ten_wildcard_sites_in_one_command(
    cs_home: Path, bind_dns: Bind, pebble_bind: Pebble
) -> None:
    apexes = [f"{label()}.{ZONE}" for _ in range(3)]
    names = [n for a in apexes for n in (f"*.{a}", a)]
    before = bind_dns.zone_snapshot(ZONE)
    got = run_dns(
        cs_home,
        pebble_bind,
        "get",
        *names,
        "--separate",
        *rfc2136(bind_dns),
        *acme(pebble_bind),
        bind=bind_dns,
    )
    assert got.returncode == 0, got.stderr
    for a in apexes:
        assert sans(cs_home / "live" / f"_.{a}" / "cert.pem") == sorted([f"*.{a}", a])
    assert bind_dns.zone_snapshot(ZONE) == before


def test_propagation_timeout_names_the_server_and_what_it_answered(
    cs_home: Path, bind_dns: Bind, pebble_bind: Pebble
) -> None:
    apex = f"{label()}.{ZONE}"
    before = bind_dns.zone_snapshot(ZONE)
    got = run_dns(
        cs_home,
        pebble_bind,
        "get",
        apex,
        *rfc2136(bind_dns),
        "--dns-timeout",
        "2",
        *acme(pebble_bind),
        bind=bind_dns,
        catch_up=False,
    )
    assert got.returncode != 0
    last = got.lines[-1]
    assert f"ns2.{ZONE} ({bind_dns.secondary})" in last, got.stderr
    assert "Traceback" not in got.stderr
    assert not (cs_home / "live" / apex).exists()
    assert bind_dns.zone_snapshot(ZONE) == before
    assert pending(cs_home) == []


def test_wrong_tsig_key_is_one_line_and_nothing_is_written(
    cs_home: Path, bind_dns: Bind, pebble_bind: Pebble
) -> None:
    apex = f"{label()}.{ZONE}"
    before = bind_dns.zone_snapshot(ZONE)
    got = run_dns(
        cs_home,
        pebble_bind,
        "get",
        f"*.{apex}",
        apex,
        *rfc2136(bind_dns, bind_dns.wrong_key_file),
        *acme(pebble_bind),
        bind=bind_dns,
    )
    assert got.returncode != 0
    assert len(got.lines) == 1, got.stderr
    assert "TSIG" in got.lines[0] and "certsmith-acme" in got.lines[0]
    assert bind_dns.key_secret not in got.stderr
    assert not (cs_home / "live" / f"_.{apex}").exists()
    assert not (cs_home / "sites" / f"_.{apex}.toml").exists()
    assert bind_dns.zone_snapshot(ZONE) == before
    assert pending(cs_home) == []


def test_unreachable_dns_server_is_one_line(
    cs_home: Path, bind_dns: Bind, pebble_bind: Pebble
) -> None:
    apex = f"{label()}.{ZONE}"
    dead = bind_dns.primary.rsplit(".", 1)[0] + ".9"
    got = run_dns(
        cs_home,
        pebble_bind,
        "get",
        apex,
        *rfc2136(bind_dns),
        "--dns-server",
        f"{dead}:53",
        *acme(pebble_bind),
        bind=bind_dns,
    )
    assert got.returncode != 0
    assert len(got.lines) == 1, got.stderr
    assert dead in got.lines[0]
    assert not (cs_home / "live" / apex).exists()
    assert pending(cs_home) == []


def test_delegated_challenge_follows_the_cname(
    cs_home: Path, bind_dns: Bind, pebble_bind: Pebble
) -> None:
    name = DELEGATED_CHALLENGE.removeprefix("_acme-challenge.")
    before = (bind_dns.zone_snapshot(ZONE), bind_dns.zone_snapshot(DELEGATE_ZONE))
    check = run_dns(cs_home, pebble_bind, "dns", "check", name, *rfc2136(bind_dns), bind=bind_dns)
    assert check.returncode == 0, check.stderr
    assert f"(zone {DELEGATE_ZONE}" not in check.stdout  # the zone line reads "zone X;"
    assert f"zone {DELEGATE_ZONE};" in check.stdout
    assert "CNAME" in check.stdout and "write access OK" in check.stdout
    got = run_dns(
        cs_home, pebble_bind, "get", name, *rfc2136(bind_dns), *acme(pebble_bind), bind=bind_dns
    )
    assert got.returncode == 0, got.stderr
    assert sans(cs_home / "live" / name / "cert.pem") == [name]
    assert (bind_dns.zone_snapshot(ZONE), bind_dns.zone_snapshot(DELEGATE_ZONE)) == before


def test_hook_provider_calling_nsupdate(
    cs_home: Path, tmp_path: Path, bind_dns: Bind, pebble_bind: Pebble
) -> None:
    hook = tmp_path / "dns-hook"
    hook.write_text(
        "#!/bin/sh\nset -e\n"
        'if [ "$CERTSMITH_DNS_ACTION" = add ]; then\n'
        '  line="update add $CERTSMITH_DNS_NAME $CERTSMITH_DNS_TTL TXT '
        '\\"$CERTSMITH_DNS_VALUE\\""\n'
        "else\n"
        '  line="update delete $CERTSMITH_DNS_NAME TXT \\"$CERTSMITH_DNS_VALUE\\""\n'
        "fi\n"
        f'printf "server {bind_dns.primary} 53\\nzone %s\\n%s\\nsend\\n" '
        f'"$CERTSMITH_DNS_ZONE" "$line" | nsupdate -k {bind_dns.key_file}\n'
    )
    hook.chmod(0o755)
    apex = f"{label()}.{ZONE}"
    before = bind_dns.zone_snapshot(ZONE)
    got = run_dns(
        cs_home,
        pebble_bind,
        "get",
        f"*.{apex}",
        apex,
        "--dns",
        "hook",
        "--dns-hook",
        str(hook),
        "--dns-resolver",
        bind_dns.resolver,
        *acme(pebble_bind),
        bind=bind_dns,
    )
    assert got.returncode == 0, got.stderr
    assert sans(cs_home / "live" / f"_.{apex}" / "cert.pem") == sorted([f"*.{apex}", apex])
    assert bind_dns.zone_snapshot(ZONE) == before


def test_a_hook_that_replaces_is_noticed_and_validated_one_value_at_a_time(
    cs_home: Path, tmp_path: Path, bind_dns: Bind, pebble_bind: Pebble
) -> None:
    hook = tmp_path / "replacing-hook"
    hook.write_text(
        "#!/bin/sh\nset -e\n"
        'if [ "$CERTSMITH_DNS_ACTION" = add ]; then\n'
        '  line="update delete $CERTSMITH_DNS_NAME TXT\n'
        'update add $CERTSMITH_DNS_NAME $CERTSMITH_DNS_TTL TXT \\"$CERTSMITH_DNS_VALUE\\""\n'
        "else\n"
        '  line="update delete $CERTSMITH_DNS_NAME TXT \\"$CERTSMITH_DNS_VALUE\\""\n'
        "fi\n"
        f'printf "server {bind_dns.primary} 53\\nzone %s\\n%s\\nsend\\n" '
        f'"$CERTSMITH_DNS_ZONE" "$line" | nsupdate -k {bind_dns.key_file}\n'
    )
    hook.chmod(0o755)
    apex = f"{label()}.{ZONE}"
    before = bind_dns.zone_snapshot(ZONE)
    got = run_dns(
        cs_home,
        pebble_bind,
        "get",
        f"*.{apex}",
        apex,
        "--dns",
        "hook",
        "--dns-hook",
        str(hook),
        "--dns-resolver",
        bind_dns.resolver,
        *acme(pebble_bind),
        bind=bind_dns,
    )
    assert got.returncode == 0, got.stderr
    assert any("replaces the TXT values" in ln for ln in got.lines), got.stderr
    assert sans(cs_home / "live" / f"_.{apex}" / "cert.pem") == sorted([f"*.{apex}", apex])
    assert bind_dns.zone_snapshot(ZONE) == before


def test_sigkill_between_presenting_and_cleanup_is_cleaned_by_the_next_run(
    cs_home: Path, bind_dns: Bind, pebble_bind: Pebble
) -> None:
    apex = f"{label()}.{ZONE}"
    before = bind_dns.zone_snapshot(ZONE)
    killed = run_dns(
        cs_home,
        pebble_bind,
        "get",
        f"*.{apex}",
        apex,
        *rfc2136(bind_dns),
        *acme(pebble_bind),
        bind=bind_dns,
        env={"CERTSMITH_CRASH_AT": "order:presented"},
    )
    assert killed.returncode == -9
    assert bind_dns.zone_snapshot(ZONE) != before  # the two values were left behind
    assert len(pending(cs_home)) == 1
    # Any next run cleans them up: here a renew with nothing to renew.
    nxt = run_dns(cs_home, pebble_bind, "renew", bind=bind_dns)
    assert nxt.returncode == 0, nxt.stderr
    assert sum("removed a TXT value left" in ln for ln in nxt.lines) == 2, nxt.stderr
    assert bind_dns.zone_snapshot(ZONE) == before
    assert pending(cs_home) == []


def _pdns_credentials(tmp_path: Path, pdns: PowerDns, key: str | None = None) -> Path:
    creds = tmp_path / "pdns.env"
    creds.write_text(
        f"auth_token={key or pdns.api_key}\npdns_server={pdns.api_url}\n"
        f"pdns_server_id={pdns.server_id}\n"
    )
    creds.chmod(0o600)
    return creds


def test_wildcard_and_apex_through_lexicon_powerdns(
    cs_home: Path, tmp_path: Path, pdns: PowerDns, pebble_pdns: Pebble
) -> None:
    apex = f"{label()}.{PDNS_ZONE}"
    before = pdns.zone_snapshot()
    got = run_dns(
        cs_home,
        pebble_pdns,
        "get",
        f"*.{apex}",
        apex,
        "--dns",
        "lexicon:powerdns",
        "--dns-credentials",
        str(_pdns_credentials(tmp_path, pdns)),
        "--dns-resolver",
        pdns.address,
        *acme(pebble_pdns),
    )
    assert got.returncode == 0, got.stderr
    assert sans(cs_home / "live" / f"_.{apex}" / "cert.pem") == sorted([f"*.{apex}", apex])
    assert pdns.zone_snapshot() == before
    assert pdns.api_key not in got.stderr


def test_powerdns_refusing_the_credentials_is_one_line(
    cs_home: Path, tmp_path: Path, pdns: PowerDns, pebble_pdns: Pebble
) -> None:
    apex = f"{label()}.{PDNS_ZONE}"
    before = pdns.zone_snapshot()
    got = run_dns(
        cs_home,
        pebble_pdns,
        "get",
        apex,
        "--dns",
        "lexicon:powerdns",
        "--dns-credentials",
        str(_pdns_credentials(tmp_path, pdns, "not-the-key")),
        "--dns-resolver",
        pdns.address,
        *acme(pebble_pdns),
    )
    assert got.returncode != 0
    assert len(got.lines) == 1, got.stderr
    assert "credentials" in got.lines[0] and "not-the-key" not in got.stderr
    assert not (cs_home / "live" / apex).exists()
    assert pdns.zone_snapshot() == before


def test_proxy_serves_a_wildcard_got_over_dns01(
    tmp_path: Path, bind_dns: Bind, pebble_bind: Pebble
) -> None:
    """``certsmith proxy '*.X' X --dns rfc2136 ...``: ordered with DNS-01 by the proxy itself,
    served for any one-label name under the wildcard (and routed to the site), not deeper."""
    import ssl

    from tests.support.net import wait_until
    from tests.support.proxy import Proxy, UpstreamApp, served_certificate

    apex = f"{label()}.{ZONE}"
    root = pebble_bind.write_root(tmp_path / "pebble-root.pem")
    env = {"REQUESTS_CA_BUNDLE": str(pebble_bind.ca_bundle)}
    before = bind_dns.zone_snapshot(ZONE)
    stop = threading.Event()

    def keep_ns2_in_step() -> None:  # the proxy's wait asks ns2 too (see the module docstring)
        while not stop.is_set():
            bind_dns.retransfer()
            stop.wait(0.2)

    helper = threading.Thread(target=keep_ns2_in_step)
    helper.start()
    try:
        with (
            UpstreamApp(tmp_path).start() as app,
            Proxy(
                tmp_path / "home",
                [
                    f"*.{apex},{apex}",
                    "--to",
                    app.address,
                    "--server",
                    pebble_bind.directory,
                    "--agree-tos",
                    *rfc2136(bind_dns),
                ],
                env=env,
            ) as proxy,
        ):

            def issued() -> bytes | None:
                try:
                    return served_certificate(proxy.https_port, f"a.{apex}", root)
                except (OSError, ssl.SSLError):
                    return None

            wait_until(
                issued,
                what="wildcard certificate from Pebble",
                timeout=90,
                proc=proxy.proc,
                log=proxy.logs,
            )
            for host, want in ((f"a.{apex}", "hello"), (apex, "hello")):
                got = subprocess.run(
                    [
                        "curl",
                        "-sS",
                        "--cacert",
                        str(root),
                        "--resolve",
                        f"{host}:{proxy.https_port}:127.0.0.1",
                        f"https://{host}:{proxy.https_port}/hello",
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                assert got.stdout == want, got.stderr
            deeper = subprocess.run(
                [
                    "curl",
                    "-sS",
                    "--cacert",
                    str(root),
                    "--resolve",
                    f"a.b.{apex}:{proxy.https_port}:127.0.0.1",
                    f"https://a.b.{apex}:{proxy.https_port}/hello",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            assert deeper.returncode != 0 and deeper.stdout != "hello"
    finally:
        stop.set()
        helper.join()
    assert bind_dns.zone_snapshot(ZONE) == before


@pytest.fixture(scope="module")
def bind_in_step() -> Iterator[Bind]:
    """A BIND whose secondary gets NOTIFY (in step at once, as in production), on its own net."""
    with Bind(net=150 + worker_net(), notify=True) as server:
        yield server


@pytest.fixture(scope="module")
def pebble_in_step(
    tmp_path_factory: pytest.TempPathFactory, bind_in_step: Bind
) -> Iterator[Pebble]:
    with Pebble(
        tmp_path_factory.mktemp("pebble-in-step"),
        dns_server=f"{bind_in_step.resolver}:{DNS_PORT}",
    ) as server:
        yield server


def test_a_ca_asking_the_same_resolver_finds_the_record(
    cs_home: Path, bind_in_step: Bind, pebble_in_step: Pebble
) -> None:
    # The CA validates through the very resolver certsmith was told to use (a private CA on
    # the internal DNS), and nothing lags: it asks within milliseconds of the record being
    # there. Had certsmith asked that resolver about _acme-challenge.NAME before writing it,
    # the resolver would answer the CA with the NXDOMAIN it kept.
    apex = f"{label()}.{ZONE}"
    before = bind_in_step.zone_snapshot(ZONE)
    got = run_dns(
        cs_home,
        pebble_in_step,
        "get",
        f"*.{apex}",
        apex,
        *rfc2136(bind_in_step),
        *acme(pebble_in_step),
    )
    assert got.returncode == 0, got.stderr
    assert sans(cs_home / "live" / f"_.{apex}" / "cert.pem") == sorted([f"*.{apex}", apex])
    assert not any("waiting for" in ln for ln in got.lines)  # NOTIFY kept ns2 in step
    assert bind_in_step.zone_snapshot(ZONE) == before
