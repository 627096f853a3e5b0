"""A real Pebble ACME CA plus pebble-challtestsrv as its DNS, on loopback ports.

Debian 13's ``pebble`` package (2.6) is used: it offers ARI (the directory has ``renewalInfo``,
served under ``/draft-ietf-acme-ari-03/renewalInfo``) and a configurable certificate lifetime
(``certificateValidityPeriod`` in seconds; 2.6 has no ACME profiles yet). The package ships no
test certificates, so a throw-away CA and a 127.0.0.1/localhost certificate for Pebble's own
HTTPS listener are generated here; ``ca_bundle`` names that CA for ``REQUESTS_CA_BUNDLE``.

pebble-challtestsrv answers every A query with 127.0.0.1 (``-defaultIPv4``) and no AAAA, so
Pebble validates http-01 against ``127.0.0.1:<http_port>`` and tls-alpn-01 against
``127.0.0.1:<tls_port>``: that is where the certsmith standalone listener or a lighttpd serving
the webroot must listen.

Pebble keeps all state in memory: ``stop()`` then ``start()`` gives a NEW CA (new root,
intermediate, accounts, orders) on the same ports and directory URL. Clients must register
again; certificates issued before the restart no longer chain to ``root_pem()``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.net import LOOPBACK, die_with_parent, free_port, stop_process, wait_until

PEBBLE_BIN = shutil.which("pebble") or "/usr/bin/pebble"
CHALLTESTSRV_BIN = shutil.which("pebble-challtestsrv") or "/usr/bin/pebble-challtestsrv"

FIVE_YEARS = 157766400  # Pebble's own default certificate lifetime, in seconds

# Pebble 2.6 log lines (checked against the Debian 13 package), one per event:
#   Pebble 2026/11/23 19:41:41 Added order "YfcX5Q1S...ZV4" to the db
#   Pebble 2026/11/23 19:41:41 Issued certificate serial 7da174924a1dcec4 for order YfcX5Q1S...
#   Pebble 2026/11/23 19:41:41 Attempting to validate w/ HTTP: http://app.example.org:25520/...
# "Added order" appears only for orders really created (a newOrder POST rejected with badNonce
# logs "POST /order-plz -> calling handler()" but adds nothing), so it counts orders.
ORDER_ADDED = re.compile(r'Added order "([^"]+)" to the db')
CERT_ISSUED = re.compile(r"Issued certificate serial ([0-9a-f]+) for order (\S+)")


def _write_tls_material(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a leaf for 127.0.0.1/localhost. Returns (ca_cert, leaf_cert, leaf_key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certsmith test TLS CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=29))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "tls-ca.pem"
    cert_path = directory / "tls-cert.pem"
    key_path = directory / "tls-key.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


def _dns_query(name: str) -> bytes:
    header = struct.pack(">HHHHHH", 0x5EED, 0x0100, 1, 0, 0, 0)
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return header + qname + struct.pack(">HH", 1, 1)  # A, IN


class Pebble:
    """Pebble + pebble-challtestsrv on free loopback ports.

    ``env`` adds or overrides Pebble's environment (e.g. ``{"PEBBLE_CHAIN_LENGTH": "2"}``).
    ``nonce_reject`` is PEBBLE_WFE_NONCEREJECT (percentage of good nonces rejected; Pebble's own
    default is 5, ours 0). ``authz_reuse`` is PEBBLE_AUTHZREUSE (Pebble's default 50, ours 0 so
    every order is really validated). ``validity`` is the certificate lifetime in seconds.
    ``eab_keys`` ({kid: base64url HMAC key}) makes External Account Binding required.
    ``retry_after_authz``/``retry_after_order`` are the Retry-After seconds Pebble sends for a
    pending authorization / processing order (its example config: 3 and 5; ours 0, a fast CA).
    ``ocsp_url`` (default none, as Let's Encrypt today) goes into the certificates' AIA.
    ``dns_server`` (``"host:port"``, e.g. a real resolver from tests/support/dns) is the DNS
    Pebble resolves and validates dns-01 with instead of challtestsrv, which is then not started
    (``add_a_record`` needs challtestsrv).
    """

    def __init__(
        self,
        workdir: Path | str | None = None,
        *,
        nonce_reject: int = 0,
        authz_reuse: int = 0,
        validity: int = FIVE_YEARS,
        retry_after_authz: int = 0,
        retry_after_order: int = 0,
        env: Mapping[str, str] | None = None,
        eab_keys: Mapping[str, str] | None = None,
        ocsp_url: str = "",
        dns_server: str | None = None,
    ) -> None:
        self._own_tmp = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="pebble-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.nonce_reject = nonce_reject
        self.authz_reuse = authz_reuse
        self.validity = validity
        self.retry_after_authz = retry_after_authz
        self.retry_after_order = retry_after_order
        self.extra_env = dict(env or {})
        self.eab_keys = dict(eab_keys or {})
        self.ocsp_url = ocsp_url
        self._dns_server = dns_server

        self.port = free_port()
        self.management_port = free_port()
        self.http_port = free_port()
        self.tls_port = free_port()
        self.dns_port = free_port()
        self.challtestsrv_management_port = free_port()

        self.ca_bundle: Path
        self.tls_cert: Path
        self.tls_key: Path
        self.ca_bundle, self.tls_cert, self.tls_key = _write_tls_material(self.workdir)
        self.config_path = self.workdir / "pebble-config.json"
        self._write_config()

        self._proc: subprocess.Popen[bytes] | None = None
        self._dns_proc: subprocess.Popen[bytes] | None = None
        self._runs = 0
        self._ssl = ssl.create_default_context(cafile=str(self.ca_bundle))

    # ----------------------------------------------------------------- addresses
    @property
    def directory(self) -> str:
        return f"https://{LOOPBACK}:{self.port}/dir"

    @property
    def management(self) -> str:
        return f"https://{LOOPBACK}:{self.management_port}"

    @property
    def challtestsrv_management(self) -> str:
        return f"http://{LOOPBACK}:{self.challtestsrv_management_port}"

    @property
    def dns_server(self) -> str:
        """The DNS Pebble asks: challtestsrv's, or the ``dns_server`` given."""
        return self._dns_server or f"{LOOPBACK}:{self.dns_port}"

    @property
    def log_path(self) -> Path:
        """Log of the current (or last) run; see ``log_text`` for all runs."""
        return self.workdir / f"pebble-{max(self._runs, 1)}.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def env(self) -> dict[str, str]:
        """Pebble's process environment."""
        env = dict(os.environ)
        env.update(
            PEBBLE_VA_NOSLEEP="1",
            PEBBLE_WFE_NONCEREJECT=str(self.nonce_reject),
            PEBBLE_AUTHZREUSE=str(self.authz_reuse),
        )
        env.update(self.extra_env)
        return env

    def client_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for an ACME client run against this Pebble (Python and Go clients)."""
        env = dict(os.environ if base is None else base)
        env["REQUESTS_CA_BUNDLE"] = str(self.ca_bundle)
        env["LEGO_CA_CERTIFICATES"] = str(self.ca_bundle)
        return env

    # ----------------------------------------------------------------- lifecycle
    def _write_config(self) -> None:
        config = {
            "pebble": {
                "listenAddress": f"{LOOPBACK}:{self.port}",
                "managementListenAddress": f"{LOOPBACK}:{self.management_port}",
                "certificate": str(self.tls_cert),
                "privateKey": str(self.tls_key),
                "httpPort": self.http_port,
                "tlsPort": self.tls_port,
                "ocspResponderURL": self.ocsp_url,
                "externalAccountBindingRequired": bool(self.eab_keys),
                "externalAccountMACKeys": self.eab_keys,
                "domainBlocklist": ["blocked-domain.example"],
                "retryAfter": {"authz": self.retry_after_authz, "order": self.retry_after_order},
                "certificateValidityPeriod": self.validity,
            }
        }
        self.config_path.write_text(json.dumps(config, indent=2))

    def start(self) -> Pebble:
        """Start challtestsrv (once, unless ``dns_server`` was given) and Pebble; returns when
        both answer. Restartable."""
        if self._dns_server is None and (
            self._dns_proc is None or self._dns_proc.poll() is not None
        ):
            self._start_challtestsrv()
        if self.running:
            return self
        self._runs += 1
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                [PEBBLE_BIN, "-config", str(self.config_path), "-dnsserver", self.dns_server],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=self.workdir,
                preexec_fn=die_with_parent,
            )
        wait_until(self._pebble_ready, what="pebble", proc=self._proc, log=self._current_log)
        return self

    def _start_challtestsrv(self) -> None:
        with open(self.workdir / "challtestsrv.log", "ab") as log:
            self._dns_proc = subprocess.Popen(
                [
                    CHALLTESTSRV_BIN,
                    "-defaultIPv4",
                    LOOPBACK,
                    "-defaultIPv6",
                    "",
                    "-dns01",
                    f"{LOOPBACK}:{self.dns_port}",
                    "-management",
                    f"{LOOPBACK}:{self.challtestsrv_management_port}",
                    "-http01",
                    "",
                    "-https01",
                    "",
                    "-tlsalpn01",
                    "",
                    "-doh",
                    "",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                preexec_fn=die_with_parent,
            )
        wait_until(
            self._dns_ready,
            what="pebble-challtestsrv",
            proc=self._dns_proc,
            log=lambda: (self.workdir / "challtestsrv.log").read_text(errors="replace"),
        )

    def _dns_ready(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            try:
                s.sendto(_dns_query("ready.example"), (LOOPBACK, self.dns_port))
                reply = s.recv(512)
            except OSError:
                return False
        return reply[:2] == b"\x5e\xed"

    def _get(self, url: str, timeout: float = 5.0) -> bytes:
        with urllib.request.urlopen(url, context=self._ssl, timeout=timeout) as resp:
            data: bytes = resp.read()
            return data

    def _pebble_ready(self) -> bool:
        try:
            self._get(self.directory, timeout=1.0)
            self._get(f"{self.management}/roots/0", timeout=1.0)
        except OSError:
            return False
        return True

    def stop(self) -> None:
        """Stop Pebble (challtestsrv keeps running, so ``start()`` is quick)."""
        stop_process(self._proc)
        self._proc = None

    def close(self) -> None:
        """Stop both servers and remove the work directory if we created it."""
        self.stop()
        stop_process(self._dns_proc)
        self._dns_proc = None
        if self._own_tmp:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Pebble:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- CA data
    def directory_json(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self._get(self.directory))
        return data

    def root_pem(self, index: int = 0) -> str:
        """The issuing root (regenerated on every start)."""
        return self._get(f"{self.management}/roots/{index}").decode()

    def intermediate_pem(self, index: int = 0) -> str:
        return self._get(f"{self.management}/intermediates/{index}").decode()

    def write_root(self, path: Path | str | None = None) -> Path:
        """Write ``root_pem()`` to a file (default: in the work dir) and return its path."""
        target = Path(path) if path else self.workdir / f"root-{self._runs}.pem"
        target.write_text(self.root_pem())
        return target

    def cert_status(self, serial: int | str) -> dict[str, object]:
        """Pebble's view of a certificate: {"Status": "Valid"|"Revoked", ...}."""
        hexserial = serial if isinstance(serial, str) else format(serial, "x")
        data: dict[str, object] = json.loads(
            self._get(f"{self.management}/cert-status-by-serial/{hexserial}")
        )
        return data

    def add_a_record(self, host: str, addresses: list[str]) -> None:
        """Point ``host`` somewhere else than 127.0.0.1 in challtestsrv's DNS."""
        body = json.dumps({"host": host, "addresses": addresses}).encode()
        req = urllib.request.Request(
            f"{self.challtestsrv_management}/add-a", data=body, method="POST"
        )
        with urllib.request.urlopen(req, timeout=5):
            pass

    # ----------------------------------------------------------------- logs
    def _current_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_text(self, all_runs: bool = True) -> str:
        """Pebble's output: of every run since construction, or of the current run only."""
        if not all_runs:
            return self._current_log()
        parts = []
        for run in range(1, self._runs + 1):
            path = self.workdir / f"pebble-{run}.log"
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    def count_orders(self, all_runs: bool = True) -> int:
        """Orders Pebble created (one per accepted newOrder), counted from its log."""
        return len(ORDER_ADDED.findall(self.log_text(all_runs)))

    def order_ids(self, all_runs: bool = True) -> list[str]:
        return ORDER_ADDED.findall(self.log_text(all_runs))

    def issued_serials(self, all_runs: bool = True) -> list[str]:
        """Hex serials (lowercase, as Pebble logs them) of every certificate issued."""
        return [serial for serial, _order in CERT_ISSUED.findall(self.log_text(all_runs))]

    def count_issued(self, all_runs: bool = True) -> int:
        return len(self.issued_serials(all_runs))
