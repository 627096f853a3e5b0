"""certsmith local and certsmith trust, end to end, with real clients.

Clients: curl, ``openssl s_client -verify_return_error``, Python's default ``ssl`` context,
Node's ``https`` and headless Chromium (NSS). The HTTPS server is Python's ``ssl`` on 127.0.0.1,
port 0, in a thread of the test process; it sends the leaf and the intermediate.

The system-store test changes the real store (that is the point: curl, OpenSSL, Python and the
rest read it); it needs root, checks that uninstall leaves the store as it found it, and restores
it from a snapshot in ``finally`` whatever happens. NSS and Java stores are test-owned copies
($HOME and $JAVA_HOME point into the test's temporary directory).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO = Path(__file__).resolve().parent.parent
HOSTS = ("localhost", "127.0.0.1", "www.app.test")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# -- running certsmith ------------------------------------------------------------------------


def run_cs(
    *args: str, home: Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, CERTSMITH_HOME=str(home))
    full.pop("CERTSMITH_DEBUG", None)
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "certsmith", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("certsmith: "), proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    return lines[0]


def tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its bytes (a missing path is empty)."""
    if not path.exists():
        return {}
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


@dataclass
class Env:
    tmp: Path
    home: Path  # CERTSMITH_HOME
    work: Path  # current directory for certsmith local
    user_home: Path  # $HOME: holds the test-owned NSS database

    @property
    def root(self) -> Path:
        return self.home / "ca" / "root.pem"

    def env(self, **extra: str) -> dict[str, str]:
        return {"HOME": str(self.user_home), **extra}

    def cs(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return run_cs(*args, home=self.home, cwd=self.work, env=self.env(**extra))


@pytest.fixture
def env(tmp_path: Path) -> Env:
    e = Env(tmp_path, tmp_path / "cs-home", tmp_path / "work", tmp_path / "user")
    e.work.mkdir()
    e.user_home.mkdir()
    return e


def make_nssdb(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["certutil", "-N", "--empty-password", "-d", f"sql:{directory}"],
        check=True,
        capture_output=True,
    )


# -- an HTTPS server ----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    timeout = 30

    def do_GET(self) -> None:
        body = f"<html><body><p id='t'>{self.server.token}</p></body></html>".encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext, token: str) -> None:
        self.context = context
        self.token = token
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        # Handshake in the handler thread: a client that rejects us must not stall the loop.
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that refuse our certificate hang up mid-handshake; that is expected


@contextlib.contextmanager
def https_server(cert: Path, key: Path) -> Iterator[tuple[int, str]]:
    """Serve ``cert`` (leaf + chain) on 127.0.0.1; yields (port, token in the page)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    token = "certsmith-" + os.urandom(6).hex()
    server = _TLSServer(context, token)  # bound and listening before anyone connects
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server.server_address[1], token
    finally:
        server.shutdown()
        server.server_close()


# -- clients ------------------------------------------------------------------------------------


def url(host: str, port: int) -> str:
    return f"https://{host}:{port}/"


def curl(host: str, port: int, *, cacert: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = ["curl", "-sS", "--max-time", "30", "--noproxy", "*"]
    if host != "127.0.0.1":
        cmd += ["--resolve", f"{host}:{port}:127.0.0.1"]
    if cacert:
        cmd += ["--cacert", str(cacert)]
    return subprocess.run([*cmd, url(host, port)], capture_output=True, text=True, check=False)


def openssl_client(
    host: str, port: int, *, cafile: Path | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-verify_return_error", "-brief"]
    if host == "127.0.0.1":
        cmd += ["-verify_ip", host]
    else:
        cmd += ["-servername", host, "-verify_hostname", host]
    if cafile:
        cmd += ["-CAfile", str(cafile)]
    return subprocess.run(cmd, input="", capture_output=True, text=True, timeout=60, check=False)


def python_client(host: str, port: int, token: str, *, cafile: Path | None = None) -> str:
    """'ok' or the verification error, with Python's default context."""
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            tls.sendall(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    except ssl.SSLCertVerificationError as exc:
        return f"rejected: {exc.verify_message}"
    return "ok" if token.encode() in data else f"unexpected answer {data[:200]!r}"


NODE_CLIENT = r"""
const https = require('https');
const [host, port] = process.argv.slice(1);
const lookup = (h, o, cb) => (o && o.all) ? cb(null, [{address: '127.0.0.1', family: 4}])
                                          : cb(null, '127.0.0.1', 4);
https.get({host, port: Number(port), path: '/', lookup, timeout: 30000}, (res) => {
  let body = ''; res.on('data', (c) => body += c);
  res.on('end', () => { process.stdout.write(body); process.exit(0); });
}).on('error', (e) => { process.stderr.write(String(e.code || e.message)); process.exit(1); });
"""


def node_client(
    host: str, port: int, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    node_env = {k: v for k, v in os.environ.items() if k != "NODE_EXTRA_CA_CERTS"}
    node_env.update(extra_env or {})
    return subprocess.run(
        ["node", "-e", NODE_CLIENT, host, str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        env=node_env,
        check=False,
    )


_chromium_runs = iter(range(10**6))


def chromium(host: str, port: int, user_home: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    """Headless Chromium's DOM for the page; Chromium finds its NSS database in $HOME."""
    profile = tmp / f"chromium-profile-{next(_chromium_runs)}"
    cmd = [
        "chromium",
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP *.app.test 127.0.0.1, MAP *.example.com 127.0.0.1, "
        "MAP example.com 127.0.0.1",
        "--dump-dom",
        url(host, port),
    ]
    browser_env = dict(os.environ, HOME=str(user_home))
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=120, env=browser_env, check=False
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def chromium_error(proc: subprocess.CompletedProcess[str]) -> str:
    found = re.search(r"Page load failed: (net::ERR_[A-Z_]+)", proc.stderr)
    return found.group(1) if found else ""


def assert_all_accept(e: Env, port: int, token: str, node_env: dict[str, str]) -> None:
    for host in HOSTS:
        c = curl(host, port)
        assert c.returncode == 0 and token in c.stdout, (host, c.stderr)
        o = openssl_client(host, port)
        assert o.returncode == 0, (host, o.stdout, o.stderr)
        assert python_client(host, port, token) == "ok", host
        n = node_client(host, port, node_env)
        assert n.returncode == 0 and token in n.stdout, (host, n.stderr)
        b = chromium(host, port, e.user_home, e.tmp)
        assert token in b.stdout, (host, chromium_error(b), b.stderr[-2000:])


def assert_all_reject(e: Env, port: int, token: str) -> None:
    for host in HOSTS:
        c = curl(host, port)
        assert c.returncode == 60 and token not in c.stdout, (host, c.returncode, c.stderr)
        o = openssl_client(host, port)
        assert o.returncode != 0 and "unable to get local issuer" in o.stdout + o.stderr, host
        assert python_client(host, port, token).startswith("rejected"), host
        n = node_client(host, port)  # the hint's variable is gone with the CA
        assert n.returncode != 0 and "UNABLE_TO_GET_ISSUER_CERT" in n.stderr, (host, n.stderr)
        b = chromium(host, port, e.user_home, e.tmp)
        assert token not in b.stdout
        assert chromium_error(b) == "net::ERR_CERT_AUTHORITY_INVALID", b.stderr[-2000:]


# -- certsmith local ----------------------------------------------------------------------------


def load_chain(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def test_local_writes_mkcert_style_files_with_safe_modes(env: Env) -> None:
    out = ok(env.cs("local", "localhost", "127.0.0.1", "::1", "*.app.test"))
    assert "localhost, 127.0.0.1, ::1, *.app.test" in out.stdout
    cert, key = env.work / "localhost.pem", env.work / "localhost-key.pem"
    assert sorted(p.name for p in env.work.iterdir()) == ["localhost-key.pem", "localhost.pem"]
    assert key.stat().st_mode & 0o777 == 0o600
    ca = env.home / "ca"
    assert ca.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in ca.iterdir()) == ["intermediate.pem", "root-key.pem", "root.pem"]
    for private in ("root-key.pem", "intermediate.pem"):
        assert (ca / private).stat().st_mode & 0o777 == 0o600

    leaf, inter = load_chain(cert)
    root = x509.load_pem_x509_certificate(env.root.read_bytes())
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(env.root), "-untrusted", str(cert), str(cert)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(days=90)
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert leaf.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "*.app.test"]
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    nc = inter.extensions.get_extension_for_class(x509.NameConstraints)
    assert nc.critical
    assert x509.DNSName("test") in (nc.value.permitted_subtrees or [])
    assert inter.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert NameOID.COMMON_NAME in [a.oid for a in root.subject]
    key_obj = serialization.load_pem_private_key(key.read_bytes(), None)
    assert key_obj.public_key() == leaf.public_key()

    # --ca-root: where the CA lives (like mkcert -CAROOT)
    assert ok(env.cs("local", "--ca-root")).stdout.strip() == str(env.home / "ca")
    # a second certificate reuses the CA
    before = tree(env.home / "ca")
    ok(env.cs("-q", "local", "*.app.test"))
    assert tree(env.home / "ca") == before
    assert (env.work / "_wildcard.app.test.pem").exists()


def test_local_options(env: Env) -> None:
    ok(
        env.cs(
            "local",
            "--days",
            "30",
            "--key-type",
            "rsa2048",
            "--client",
            "--pkcs12",
            "--cert-file",
            "c.pem",
            "--key-file",
            "k.pem",
            "--p12-file",
            "b.p12",
            "api.internal",
            "10.1.2.3",
        )
    )
    leaf, _ = load_chain(env.work / "c.pem")
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(days=30)
    assert leaf.public_key().key_size == 2048  # type: ignore[union-attr]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in list(eku)
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment
    bundle = pkcs12.load_pkcs12((env.work / "b.p12").read_bytes(), b"changeit")
    assert bundle.cert is not None and bundle.cert.certificate == leaf
    assert len(bundle.additional_certs) == 1
    assert (env.work / "b.p12").stat().st_mode & 0o777 == 0o600


def test_local_signs_a_csr_and_writes_no_key(env: Env) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored.test")]))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("svc.home.arpa"), x509.DNSName("*.svc.home.arpa")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (env.work / "req.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    ok(env.cs("local", "--csr", "req.csr"))
    assert sorted(p.name for p in env.work.iterdir()) == ["req.csr", "svc.home.arpa.pem"]
    leaf, _ = load_chain(env.work / "svc.home.arpa.pem")
    assert leaf.public_key() == key.public_key()
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["svc.home.arpa", "*.svc.home.arpa"]


BAD_INPUT = [
    (["example.com"], "outside the local CA's name constraints"),
    (["localhost", "8.8.8.8"], "8.8.8.8 is outside"),
    (["a..test"], "invalid name"),
    (["-q", "exa_mple.test"], "invalid name"),
    (["--csr", "missing.csr"], "cannot read CSR"),
    (["--csr", "garbage.csr"], "cannot read CSR"),
    (["--days", "400", "localhost"], "--days 400"),
    (["--key-type", "dsa", "localhost"], "unknown key type"),
    (["--allow-domain", "com", "x.com"], "too broad"),
    (["--cert-file", "no/such/dir/c.pem", "localhost"], "does not exist"),
    ([], "give at least one name"),
]


@pytest.mark.parametrize("fresh", [True, False], ids=["no-ca-yet", "existing-ca"])
@pytest.mark.parametrize(("args", "message"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_one_line_nothing_written(
    env: Env, fresh: bool, args: list[str], message: str
) -> None:
    (env.work / "garbage.csr").write_bytes(b"-----BEGIN CERTIFICATE REQUEST-----\nxx\n")
    if not fresh:
        ok(env.cs("-q", "local", "--cert-file", "../c.pem", "--key-file", "../k.pem", "seed.test"))
    home_before, work_before = tree(env.home), tree(env.work)
    extra = [a for a in args if a == "-q"]
    line = one_line_error(env.cs(*extra, "local", *[a for a in args if a != "-q"]))
    assert message in line
    assert tree(env.home) == home_before and tree(env.work) == work_before
    if fresh:
        assert not env.home.exists()


def test_allow_domain_makes_a_new_intermediate_under_the_same_root(env: Env) -> None:
    ok(env.cs("-q", "local", "--cert-file", "old.pem", "--key-file", "old-key.pem", "old.test"))
    root_before = env.root.read_bytes()
    one_line_error(env.cs("local", "app.example.dev"))

    out = ok(env.cs("local", "--allow-domain", "example.dev", "app.example.dev"))
    assert "example.dev" in out.stdout and "new intermediate" in out.stdout
    assert env.root.read_bytes() == root_before  # trust stores need no change
    for cert in ("app.example.dev.pem", "old.pem"):  # the old leaf still chains to the root
        v = subprocess.run(
            [
                "openssl",
                "verify",
                "-CAfile",
                str(env.root),
                "-untrusted",
                str(env.work / cert),
                str(env.work / cert),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert v.returncode == 0, (cert, v.stderr)
    new_inter = load_chain(env.work / "app.example.dev.pem")[1]
    assert new_inter != load_chain(env.work / "old.pem")[1]
    nc = new_inter.extensions.get_extension_for_class(x509.NameConstraints).value
    assert x509.DNSName("example.dev") in (nc.permitted_subtrees or [])
    # recorded: the next run needs no flag
    ok(env.cs("-q", "local", "--cert-file", "x.pem", "--key-file", "x-key.pem", "*.example.dev"))
    # and undone
    ok(env.cs("-q", "local", "--forget-domain", "example.dev"))
    assert "outside" in one_line_error(env.cs("local", "x.example.dev"))
    assert "built-in" in one_line_error(env.cs("local", "--forget-domain", "test"))


def forge_leaf(e: Env, name: str) -> tuple[Path, Path]:
    """What an attacker holding the intermediate key would do: sign a leaf for ``name``."""
    data = (e.home / "ca" / "intermediate.pem").read_bytes()
    inter_key = serialization.load_pem_private_key(data, None)
    inter = x509.load_pem_x509_certificate(data)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ski = inter.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(inter.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(inter_key, hashes.SHA256())
    )  # type: ignore[arg-type]
    cert_path, key_path = e.tmp / "forged.pem", e.tmp / "forged-key.pem"
    cert_path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + inter.public_bytes(serialization.Encoding.PEM)
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_name_constraints_stop_a_forged_leaf_for_a_public_name(env: Env) -> None:
    """Every client trusts our root here, accepts our own leaf, and rejects example.com
    signed with the intermediate's key: the name constraints, not trust, make the difference."""
    make_nssdb(env.user_home / ".pki" / "nssdb")
    ok(env.cs("-q", "local", "www.app.test"))
    ok(env.cs("-q", "trust", "install", "--store", "nss"))
    forged_cert, forged_key = forge_leaf(env, "example.com")

    with https_server(env.work / "www.app.test.pem", env.work / "www.app.test-key.pem") as (
        port,
        token,
    ):
        assert token in ok(curl("www.app.test", port, cacert=env.root)).stdout
        assert openssl_client("www.app.test", port, cafile=env.root).returncode == 0
        assert python_client("www.app.test", port, token, cafile=env.root) == "ok"
        assert token in chromium("www.app.test", port, env.user_home, env.tmp).stdout

    with https_server(forged_cert, forged_key) as (port, token):
        c = curl("example.com", port, cacert=env.root)
        assert c.returncode == 60 and "permitted subtree violation" in c.stderr, c.stderr
        o = openssl_client("example.com", port, cafile=env.root)
        assert o.returncode != 0 and "permitted subtree violation" in o.stdout + o.stderr
        assert python_client("example.com", port, token, cafile=env.root) == (
            "rejected: permitted subtree violation"
        )
        b = chromium("example.com", port, env.user_home, env.tmp)
        assert token not in b.stdout
        # Chromium reports a constraint violation on a chain to a known root as ERR_CERT_INVALID
        # (ERR_CERT_AUTHORITY_INVALID would mean it never found our root: a different failure).
        assert chromium_error(b) in (
            "net::ERR_CERT_INVALID",
            "net::ERR_CERT_NAME_CONSTRAINT_VIOLATION",
        ), b.stderr[-2000:]


# -- trust stores -------------------------------------------------------------------------------


def nss_listing(db: Path) -> str:
    return subprocess.run(
        ["certutil", "-L", "-d", f"sql:{db}"], capture_output=True, text=True, check=True
    ).stdout


def java_entries(cacerts: Path) -> list[str]:
    out = subprocess.run(
        ["keytool", "-list", "-keystore", str(cacerts), "-storepass", "changeit"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(line for line in out.splitlines() if "fingerprint" in line.lower())


def status_json(e: Env, **extra: str) -> list[dict[str, str]]:
    data = json.loads(ok(e.cs("trust", "status", "--json", **extra)).stdout)
    return list(data["stores"])


def test_trust_nss_profiles_and_java_are_idempotent_and_reversible(env: Env) -> None:
    dbs = [
        env.user_home / ".pki" / "nssdb",
        env.user_home / ".mozilla" / "firefox" / "abcd.default-release",
        env.user_home / "snap" / "firefox" / "common" / ".mozilla" / "firefox" / "x.default",
        env.user_home
        / ".var"
        / "app"
        / "org.mozilla.firefox"
        / ".mozilla"
        / "firefox"
        / "y.default",
    ]
    for db in dbs:
        make_nssdb(db)
    listings = [nss_listing(db) for db in dbs]
    extra: dict[str, str] = {}
    keytool = shutil.which("keytool")
    cacerts_copy = None
    if keytool:  # a test-owned copy of the JDK's cacerts, found through $JAVA_HOME
        java_home = env.tmp / "jdk"
        (java_home / "lib" / "security").mkdir(parents=True)
        real = Path(os.path.realpath(keytool)).parent.parent / "lib" / "security" / "cacerts"
        cacerts_copy = java_home / "lib" / "security" / "cacerts"
        shutil.copyfile(os.path.realpath(real), cacerts_copy)
        extra["JAVA_HOME"] = str(java_home)
        java_before = java_entries(cacerts_copy)

    out = ok(env.cs("trust", "install", "--store", "nss", "--store", "java", **extra))
    assert "Created a new local CA" in out.stdout
    assert f"NODE_EXTRA_CA_CERTS={env.root}" in out.stdout
    stores = status_json(env, **extra)
    nss = [s for s in stores if s["store"] == "nss"]
    assert sorted(s["location"] for s in nss) == sorted(map(str, dbs))
    assert all(s["state"] == "trusted" for s in nss)
    java = [s for s in stores if s["store"] == "java"]
    if keytool:
        assert java == [
            {"store": "java", "location": str(cacerts_copy), "state": "trusted", "detail": ""}
        ]
    else:
        assert java[0]["state"] == "missing"

    again = ok(env.cs("trust", "install", "--json", "--store", "nss", "--store", "java", **extra))
    assert {s["detail"] for s in json.loads(again.stdout)["stores"] if s["state"] == "trusted"} == {
        "already"
    }

    ok(env.cs("trust", "uninstall", "--store", "nss", "--store", "java", **extra))
    assert all(s["state"] in ("not trusted", "missing") for s in status_json(env, **extra))
    assert [nss_listing(db) for db in dbs] == listings
    if cacerts_copy is not None:
        assert java_entries(cacerts_copy) == java_before


def test_trust_missing_and_broken_stores_are_reported_not_fatal(env: Env) -> None:
    # No NSS database and no certutil to make one: reported, skipped, success.
    no_certutil = env.tmp / "no-certutil"
    no_certutil.mkdir()
    out = ok(env.cs("trust", "install", "--store", "nss", PATH=str(no_certutil)))
    assert re.search(r"nss .*missing \(skipped\)", out.stdout), out.stdout
    assert not (env.user_home / ".pki").exists()
    # One damaged database next to a good one: the good one is still done; exit non-zero.
    good, bad = env.user_home / ".pki" / "nssdb", env.user_home / ".mozilla" / "firefox" / "p"
    make_nssdb(good)
    bad.mkdir(parents=True)
    (bad / "cert9.db").write_bytes(b"this is not an sqlite database" * 100)
    proc = env.cs("trust", "install", "--store", "nss")
    assert "some stores failed" in one_line_error(proc)
    assert re.search(rf"{re.escape(str(good))}\s+installed", proc.stdout), proc.stdout
    assert re.search(rf"{re.escape(str(bad))}\s+failed", proc.stdout), proc.stdout


def test_trust_install_creates_chromiums_missing_database(env: Env) -> None:
    """A fresh or headless Chromium never creates ~/.pki/nssdb; one 'trust install' is enough:
    the database is made, holds the root, and Chromium then accepts a local certificate."""
    db = env.user_home / ".pki" / "nssdb"
    assert not db.exists()
    ok(env.cs("-q", "local", "www.app.test"))
    out = ok(env.cs("trust", "install", "--store", "nss", "--json"))
    [report] = json.loads(out.stdout)["stores"]
    assert report == {
        "store": "nss",
        "location": str(db),
        "state": "installed",
        "detail": "created the database (Chrome/Chromium)",
    }
    root_der = load_chain(env.root)[0].public_bytes(serialization.Encoding.DER)
    label = f"certsmith-local-ca-{hashlib.sha256(root_der).hexdigest()[:16]}"
    assert re.search(rf"^{label}\s+C,,", nss_listing(db), re.M), nss_listing(db)
    assert stat_mode(db) == 0o700
    with https_server(env.work / "www.app.test.pem", env.work / "www.app.test-key.pem") as (
        port,
        token,
    ):
        b = chromium("www.app.test", port, env.user_home, env.tmp)
        assert token in b.stdout, (chromium_error(b), b.stderr[-2000:])
    again = json.loads(ok(env.cs("trust", "install", "--store", "nss", "--json")).stdout)
    assert [(r["state"], r["detail"]) for r in again["stores"]] == [("trusted", "already")]


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_trust_without_a_ca_changes_nothing(env: Env) -> None:
    out = ok(env.cs("trust", "uninstall"))
    assert "no local CA" in out.stdout
    assert "no local CA" in ok(env.cs("trust", "status")).stdout
    assert not env.home.exists()


# -- the system store, with every client --------------------------------------------------------

SYSTEM_DIRS = (Path("/etc/ssl/certs"), Path("/usr/local/share/ca-certificates"))
SYSTEM_LOCK = Path("/tmp/certsmith-test-system-trust.lock")


def snapshot(dirs: tuple[Path, ...] = SYSTEM_DIRS) -> dict[str, tuple[str, bytes]]:
    """Exact state: each entry is a link (target) or a file (bytes). Java's keystore, which
    Debian's hook rewrites, is compared by its entries instead."""
    out: dict[str, tuple[str, bytes]] = {}
    for base in dirs:
        for path in sorted(base.rglob("*")):
            if "java" in path.relative_to(base).parts:
                continue
            if path.is_symlink():
                out[str(path)] = ("link", os.readlink(path).encode())
            elif path.is_file():
                out[str(path)] = ("file", path.read_bytes())
    return out


def content_view(snap: dict[str, tuple[str, bytes]]) -> dict[str, str]:
    """What a TLS client sees: names and the bytes behind them (a link and a regular file with
    the same bytes are the same to OpenSSL)."""
    view = {}
    for name in snap:
        try:
            view[name] = hashlib.sha256(Path(name).read_bytes()).hexdigest()
        except OSError:
            view[name] = "dangling"
    return view


def restore(snap: dict[str, tuple[str, bytes]]) -> None:
    now = snapshot()
    for name in set(now) - set(snap):
        os.unlink(name)
    for name, (kind, data) in snap.items():
        if now.get(name) == (kind, data):
            continue
        path = Path(name)
        if path.is_symlink() or path.exists():
            path.unlink()
        if kind == "link":
            os.symlink(data.decode(), path)
        else:
            path.write_bytes(data)
            path.chmod(0o644)


def test_system_trust_install_then_uninstall_with_every_client(env: Env) -> None:
    if os.geteuid() != 0:
        pytest.skip("changes the system trust store: needs root (the CI runs as root)")
    make_nssdb(env.user_home / ".pki" / "nssdb")
    ok(env.cs("-q", "local", *HOSTS))
    java_cacerts = Path("/etc/ssl/certs/java/cacerts")
    with open(SYSTEM_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one test run at a time changes the system store
        if shutil.which("update-ca-certificates"):
            # Settle the distribution's own state first: a machine whose anchors were added
            # without the hooks (a sandbox's egress CA, seen on a fresh machine here) has a
            # Java keystore behind /etc/ssl/certs, and the first refresh of any kind (ours
            # included) catches it up. The comparison below must see only certsmith's changes.
            subprocess.run(["update-ca-certificates"], capture_output=True, check=False)
        before = snapshot()
        before_view = {k: v for k, v in content_view(before).items()}
        java_before = java_entries(java_cacerts) if java_cacerts.exists() else []
        try:
            with https_server(env.work / "localhost.pem", env.work / "localhost-key.pem") as (
                port,
                token,
            ):
                assert_all_reject(env, port, token)  # nobody trusts us yet

                out = ok(env.cs("trust", "install", "--store", "system", "--store", "nss"))
                assert "system (debian)" in out.stdout and "installed" in out.stdout
                hint = re.search(r"export (NODE_EXTRA_CA_CERTS)=(\S+)", out.stdout)
                assert hint is not None, out.stdout
                assert_all_accept(env, port, token, {hint.group(1): hint.group(2)})

                out = ok(env.cs("trust", "uninstall", "--store", "system", "--store", "nss"))
                assert out.stdout.count("removed") == 2, out.stdout
                assert_all_reject(env, port, token)
            after = snapshot()
            assert content_view(after) == before_view
            if java_cacerts.exists():
                assert java_entries(java_cacerts) == java_before
        finally:
            label = "certsmith-local-ca-"
            leftovers = [
                p
                for p in Path("/usr/local/share/ca-certificates").iterdir()
                if p.name.startswith(label)
            ]
            if leftovers:
                env.cs("trust", "uninstall", "--store", "system")
            restore(before)
            if java_cacerts.exists():
                for line in subprocess.run(
                    ["keytool", "-list", "-keystore", str(java_cacerts), "-storepass", "changeit"],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout.splitlines():
                    if label in line:
                        subprocess.run(
                            [
                                "keytool",
                                "-delete",
                                "-alias",
                                line.split(",")[0],
                                "-keystore",
                                str(java_cacerts),
                                "-storepass",
                                "changeit",
                            ],
                            capture_output=True,
                            check=False,
                        )
        assert snapshot() == before


def test_concurrent_first_use_makes_one_ca(env: Env) -> None:
    """Several ``certsmith local`` at once on a fresh home: one root, every leaf chains to it."""
    full = dict(os.environ, CERTSMITH_HOME=str(env.home), HOME=str(env.user_home))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "certsmith",
                "-q",
                "local",
                "--cert-file",
                f"c{i}.pem",
                "--key-file",
                f"k{i}.pem",
                f"n{i}.test",
            ],
            cwd=env.work,
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    for i in range(4):
        cert = env.work / f"c{i}.pem"
        v = subprocess.run(
            ["openssl", "verify", "-CAfile", str(env.root), "-untrusted", str(cert), str(cert)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert v.returncode == 0, v.stderr


def test_a_removed_root_means_a_new_ca_not_a_broken_chain(env: Env) -> None:
    ok(env.cs("-q", "local", "--allow-domain", "example.dev", "a.test"))
    env.root.unlink()
    ok(env.cs("-q", "local", "b.example.dev"))
    cert = env.work / "b.example.dev.pem"
    v = subprocess.run(
        ["openssl", "verify", "-CAfile", str(env.root), "-untrusted", str(cert), str(cert)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert v.returncode == 0, v.stderr


def test_root_key_can_live_offline(env: Env) -> None:
    """Issuing needs only the intermediate; the root key is needed to change the intermediate."""
    ok(env.cs("-q", "local", "a.test"))
    offline = env.tmp / "root-key.pem"
    shutil.move(env.home / "ca" / "root-key.pem", offline)
    ok(env.cs("-q", "local", "b.test"))
    before = tree(env.home), tree(env.work)
    line = one_line_error(env.cs("local", "--allow-domain", "example.dev", "c.example.dev"))
    assert "root key" in line and "missing" in line
    assert (tree(env.home), tree(env.work)) == before
