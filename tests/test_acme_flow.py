"""The whole ACME flow against a real Pebble: get (standalone, webroot via lighttpd), list,
renew (ARI: skip what is not due, renew what is, with ``replaces``), revoke, deploy targets."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from cryptography import x509

from tests.conftest import LighttpdFactory, RunCertsmith
from tests.support.pebble import Pebble


def serial_of(pem: bytes | str) -> int:
    data = pem.encode() if isinstance(pem, str) else pem
    return x509.load_pem_x509_certificate(data).serial_number


def sans(path: Path) -> list[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [
        *ext.get_values_for_type(x509.DNSName),
        *[str(ip) for ip in ext.get_values_for_type(x509.IPAddress)],
    ]


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_standalone_get_renew_revoke(
    run_certsmith: RunCertsmith, pebble: Pebble, cs_home: Path, openssl_verify
) -> None:  # type: ignore[no-untyped-def]
    before = pebble.count_orders()
    got = run_certsmith(
        "get",
        "std.example.com",
        "www.std.example.com",
        "127.0.0.1",
        "--standalone",
        "--http-port",
        pebble.http_port,
        "--server",
        pebble.directory,
        "--agree-tos",
        "--email",
        "ops@example.org",
    )
    assert got.returncode == 0, got.stderr
    assert "std.example.com: issued" in got.stdout
    live = cs_home / "live" / "std.example.com"
    assert os.readlink(live) == "../archive/std.example.com/1"
    assert sorted(sans(live / "cert.pem")) == [
        "127.0.0.1",
        "std.example.com",
        "www.std.example.com",
    ]
    assert openssl_verify(live / "cert.pem", chain=live / "chain.pem").returncode == 0
    assert (live / "fullchain.pem").read_bytes() == (live / "cert.pem").read_bytes() + (
        live / "chain.pem"
    ).read_bytes()
    assert mode(live / "privkey.pem") == 0o600
    assert mode(cs_home / "archive") == 0o700
    [account_key] = list((cs_home / "accounts").rglob("key.pem"))
    assert mode(account_key) == 0o600 and mode(account_key.parent) == 0o700
    assert pebble.count_orders() == before + 1

    # Nothing is due: no order, no network needed for the second scan.
    listing = json.loads(run_certsmith("list", "--json", check=True).stdout)
    assert [r["name"] for r in listing] == ["std.example.com"]
    assert listing[0]["days_left"] > 1000 and listing[0]["last_result"] == "issued"
    skipped = run_certsmith("renew", check=True)
    assert "skipped (not due (ARI window)" in skipped.stdout
    assert pebble.count_orders() == before + 1

    # A second `get` reuses the account.
    run_certsmith(
        "get",
        "other.example.com",
        "--standalone",
        "--http-port",
        pebble.http_port,
        "--server",
        pebble.directory,
        check=True,
    )
    assert len(list((cs_home / "accounts").rglob("key.pem"))) == 1

    # After a revocation Pebble's ARI window lies in the past: renew makes a replacement.
    old_serial = serial_of((live / "cert.pem").read_bytes())
    run_certsmith("revoke", "std.example.com", check=True)
    renewed = run_certsmith("renew", "--json", check=True)
    outcomes = {o["name"]: o for o in json.loads(renewed.stdout)}
    assert outcomes["std.example.com"]["action"] == "renewed"
    assert outcomes["other.example.com"]["action"] == "skipped"
    assert os.readlink(live) == "../archive/std.example.com/2"
    assert serial_of((live / "cert.pem").read_bytes()) != old_serial
    events = [json.loads(line) for line in (cs_home / "events.jsonl").read_text().splitlines()]
    kinds = [(e["event"], e["name"]) for e in events]
    assert ("revoked", "std.example.com") in kinds and ("renewed", "std.example.com") in kinds
    renewed_event = next(e for e in events if e["event"] == "renewed")
    ari_lines = [
        line
        for line in pebble.log_text().splitlines()
        if "ARI" in line or "replace" in line.lower()
    ]
    assert renewed_event["replaces"], (events, ari_lines)  # sent, and accepted by the CA
    assert any(renewed_event["replaces"] and "is a replacement of" in line for line in ari_lines), (
        events,
        ari_lines,
    )

    # --force renews now; --dry-run orders nothing.
    count = pebble.count_orders()
    dry = run_certsmith("renew", "--dry-run", "--force", "--json", check=True)
    assert {o["action"] for o in json.loads(dry.stdout)} == {"due"}
    assert pebble.count_orders() == count
    run_certsmith("renew", "--force", "other.example.com", check=True)
    assert pebble.count_orders() == count + 1


def test_webroot_through_lighttpd_with_deploy_targets(
    run_certsmith: RunCertsmith,
    pebble: Pebble,
    cs_home: Path,
    tmp_path: Path,
    served_path: Path,
    lighttpd_factory: LighttpdFactory,
) -> None:
    """Seed 000: webroot served by a real lighttpd, a combined PEM lighttpd then serves, copies
    with owner/mode, and a reload command with the documented environment."""
    docroot = served_path / "www"
    docroot.mkdir()
    (docroot / "index.html").write_text("allsky\n")
    lighttpd_factory(docroot, port=pebble.http_port)
    deployed = tmp_path / "deployed"
    env_dump = tmp_path / "env.json"
    hook = (
        "python3 -c 'import json,os; json.dump({k: v for k, v in os.environ.items() "
        f'if k.startswith(("CERTSMITH_", "RENEWED_"))}}, open("{env_dump}", "w"))\''
    )
    got = run_certsmith(
        "get",
        "allsky.example.org",
        "--webroot",
        docroot,
        "--server",
        pebble.directory,
        "--agree-tos",
        "--key-type",
        "rsa2048",
        "--deploy-to",
        f"combined={deployed}/allsky.pem,mode=0600",
        "--deploy-to",
        f"fullchain={deployed}/pi/cert.pem,owner=nobody,group=nogroup,mode=0644",
        "--deploy-to",
        f"key={deployed}/pi/key.pem,owner=nobody,group=nogroup",
        "--deploy-command",
        hook,
    )
    assert got.returncode == 0, got.stderr
    # The challenge file is gone and the webroot is as before.
    assert sorted(p.name for p in docroot.iterdir()) == ["index.html"]
    live = cs_home / "live" / "allsky.example.org"
    combined = (deployed / "allsky.pem").read_bytes()
    assert combined == (live / "fullchain.pem").read_bytes() + (live / "privkey.pem").read_bytes()
    assert mode(deployed / "allsky.pem") == 0o600
    cert_copy, key_copy = deployed / "pi" / "cert.pem", deployed / "pi" / "key.pem"
    assert mode(cert_copy) == 0o644 and mode(key_copy) == 0o600
    import grp
    import pwd

    assert pwd.getpwuid(os.stat(key_copy).st_uid).pw_name == "nobody"
    assert grp.getgrgid(os.stat(key_copy).st_gid).gr_name == "nogroup"
    env = json.loads(env_dump.read_text())
    assert env["CERTSMITH_NAME"] == "allsky.example.org"
    assert env["CERTSMITH_NAMES"] == "allsky.example.org"
    assert env["CERTSMITH_FULLCHAIN"] == str(live / "fullchain.pem")
    assert env["CERTSMITH_KEY"] == str(live / "privkey.pem")
    assert env["RENEWED_LINEAGE"] == str(live)
    assert (
        x509.load_pem_x509_certificate((live / "cert.pem").read_bytes()).public_key().key_size
        == 2048
    )  # type: ignore[union-attr]

    # lighttpd serves the combined PEM.
    tls = lighttpd_factory(docroot, tls_port=None, pemfile=deployed / "allsky.pem")
    served = tls.served_cert_pem("allsky.example.org")
    assert serial_of(served) == serial_of((live / "cert.pem").read_bytes())

    # `certsmith deploy` runs the targets again; a broken command is one line and exit 3.
    (deployed / "allsky.pem").unlink()
    run_certsmith("deploy", "allsky.example.org", check=True)
    assert (deployed / "allsky.pem").read_bytes() == combined


def test_separate_certificates_in_one_command(
    run_certsmith: RunCertsmith, pebble: Pebble, cs_home: Path
) -> None:
    before = pebble.count_orders()
    names = [f"s{i}.example.net" for i in range(4)]
    got = run_certsmith(
        "get",
        *names,
        "--separate",
        "--standalone",
        "--http-port",
        pebble.http_port,
        "--server",
        pebble.directory,
        "--agree-tos",
        "--json",
    )
    assert got.returncode == 0, got.stderr
    assert {o["name"] for o in json.loads(got.stdout)} == set(names)
    assert pebble.count_orders() == before + 4
    for name in names:
        assert sans(cs_home / "live" / name / "cert.pem") == [name]


def test_failed_deploy_command_keeps_certificate(
    run_certsmith: RunCertsmith, pebble: Pebble, cs_home: Path
) -> None:
    got = run_certsmith(
        "get",
        "hook.example.com",
        "--standalone",
        "--http-port",
        pebble.http_port,
        "--server",
        pebble.directory,
        "--agree-tos",
        "--deploy-command",
        "echo reload failed >&2; exit 4",
    )
    assert got.returncode == 3
    assert got.stderr.strip().splitlines() == [
        "certsmith: hook.example.com: issued, but deploy command failed (exit 4): "
        "echo reload failed >&2; exit 4: reload failed"
    ]
    assert (cs_home / "live" / "hook.example.com" / "fullchain.pem").exists()
    assert "deploy-failed" in (cs_home / "events.jsonl").read_text()


def test_reuse_key_ecdsa_p384_and_profile(
    run_certsmith: RunCertsmith, pebble: Pebble, cs_home: Path
) -> None:
    run_certsmith(
        "get",
        "reuse.example.com",
        "--standalone",
        "--http-port",
        pebble.http_port,
        "--server",
        pebble.directory,
        "--agree-tos",
        "--key-type",
        "ecdsa-p384",
        "--reuse-key",
        check=True,
    )
    live = cs_home / "live" / "reuse.example.com"
    key1 = (live / "privkey.pem").read_bytes()
    cert = x509.load_pem_x509_certificate((live / "cert.pem").read_bytes())
    assert cert.public_key().curve.name == "secp384r1"  # type: ignore[union-attr]
    run_certsmith("renew", "--force", "reuse.example.com", check=True)
    assert os.readlink(live).endswith("/2")
    assert (live / "privkey.pem").read_bytes() == key1
    # Pebble 2.6 offers no ACME profiles: asking for one is a clear refusal.
    proc = run_certsmith(
        "get",
        "profile.example.com",
        "--standalone",
        "--http-port",
        pebble.http_port,
        "--server",
        pebble.directory,
        "--profile",
        "shortlived",
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "certsmith: profile.example.com: the CA offers no profiles; drop --profile shortlived"
    ]


def test_polling_honours_retry_after(
    pebble_factory,
    run_certsmith: RunCertsmith,  # type: ignore[no-untyped-def]
    cs_home: Path,
    tmp_path: Path,
) -> None:
    """With Retry-After: 3 on a pending authorization, the next poll comes >= 3 s later (our own
    backoff would poll after 50 ms). Read from Pebble's log timestamps (1 s resolution).

    The challenge is answered from a webroot by a responder that holds Pebble's validation
    request until certsmith has polled once, so that first poll surely sees "pending"."""
    import datetime as dt
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    ca = pebble_factory(retry_after_authz=3, retry_after_order=3)
    webroot = tmp_path / "webroot"
    webroot.mkdir()

    class Held(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            deadline = time.monotonic() + 30
            # newOrder fetches the authorization once; the next POST to it is certsmith's poll
            while ca.log_text().count("POST /authZ/") < 2 and time.monotonic() < deadline:
                time.sleep(0.02)  # polling a condition with a deadline, not a fixed wait
            body = (webroot / self.path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", ca.http_port), Held)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run_certsmith(
            "get",
            "ra.example.com",
            "--webroot",
            webroot,
            "--server",
            ca.directory,
            "--agree-tos",
            server=ca,
            check=True,
        )
    finally:
        server.shutdown()
        server.server_close()
    stamps = [
        dt.datetime.strptime(" ".join(line.split()[1:3]), "%Y/%m/%d %H:%M:%S")
        for line in ca.log_text().splitlines()
        if "POST /authZ/" in line
    ]
    assert len(stamps) == 3, stamps  # fetched with the order, polled pending, polled again
    assert (stamps[2] - stamps[1]).total_seconds() >= 2, stamps


EAB_KID = "kid-1"
EAB_KEY = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"


def test_external_account_binding(
    pebble_factory,
    run_certsmith: RunCertsmith,  # type: ignore[no-untyped-def]
    cs_home: Path,
) -> None:
    ca = pebble_factory(eab_keys={EAB_KID: EAB_KEY})
    base = [
        "get",
        "eab.example.com",
        "--standalone",
        "--http-port",
        ca.http_port,
        "--http-address",
        "127.0.0.1",
        "--server",
        ca.directory,
        "--agree-tos",
    ]
    refused = run_certsmith(*base, server=ca)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "certsmith: this CA needs External Account Binding: add --eab-kid and --eab-hmac-key"
    ]
    assert not list((cs_home / "accounts").rglob("account.json")) if cs_home.exists() else True
    wrong = run_certsmith(*base, "--eab-kid", EAB_KID, "--eab-hmac-key", "A" * 64, server=ca)
    assert wrong.returncode == 1 and "the CA refused" in wrong.stderr
    ok = run_certsmith(*base, "--eab-kid", EAB_KID, "--eab-hmac-key", EAB_KEY, server=ca)
    assert ok.returncode == 0, ok.stderr
    account = json.loads(next((cs_home / "accounts").rglob("account.json")).read_text())
    assert account["body"]["status"] == "valid"


def test_preferred_chain(
    pebble_factory,
    run_certsmith: RunCertsmith,  # type: ignore[no-untyped-def]
    cs_home: Path,
) -> None:
    """Pebble offers an alternate chain to a second root; --preferred-chain picks it."""
    ca = pebble_factory(env={"PEBBLE_ALTERNATE_ROOTS": "1"})
    alt_root = x509.load_pem_x509_certificate(ca.root_pem(1).encode())
    alt_cn = alt_root.subject.rfc4514_string().removeprefix("CN=")
    common = [
        "--standalone",
        "--http-port",
        ca.http_port,
        "--http-address",
        "127.0.0.1",
        "--server",
        ca.directory,
        "--agree-tos",
    ]
    run_certsmith("get", "default.example.com", *common, server=ca, check=True)
    run_certsmith(
        "get", "alt.example.com", *common, "--preferred-chain", alt_cn, server=ca, check=True
    )

    def top_issuer(name: str) -> str:
        chain = (cs_home / "live" / name / "chain.pem").read_bytes()
        last = x509.load_pem_x509_certificates(chain)[-1]
        return last.issuer.rfc4514_string().removeprefix("CN=")

    assert top_issuer("alt.example.com") == alt_cn
    assert top_issuer("default.example.com") != alt_cn


def test_separate_takes_more_than_100_names(
    run_certsmith: RunCertsmith, pebble: Pebble, cs_home: Path
) -> None:
    """The 100-name limit is per certificate: --separate with 101 names makes 101 certificates,
    each carrying its own name."""
    names = [f"h{i}.many.example.com" for i in range(101)]
    got = run_certsmith(
        "get",
        *names,
        "--separate",
        "--standalone",
        "--http-port",
        pebble.http_port,
        "--server",
        pebble.directory,
        "--agree-tos",
        "--json",
        timeout=600,
    )
    assert got.returncode == 0, got.stderr
    outcomes = json.loads(got.stdout)
    assert sorted(o["name"] for o in outcomes) == sorted(names)
    assert {o["action"] for o in outcomes} == {"issued"}
    for name in names:
        assert sans(cs_home / "live" / name / "cert.pem") == [name]
