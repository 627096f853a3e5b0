"""testssl.sh (Debian's package) against a site certsmith installed into each real server
(nginx, Apache, lighttpd) with Pebble: protocols, cipher categories, forward secrecy, server
preferences and HTTP headers. Prints testssl's findings that are not OK and whether HSTS is
present; exits non-zero if a protocol or cipher is rated NOT ok or HSTS is missing.

    .venv/bin/python bench/testssl_servers.py [nginx] [apache] [lighttpd]

Takes about a minute per server (testssl's own checks dominate).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from tests.conftest import _certsmith_env
from tests.support.pebble import Pebble
from tests.support.webservers import Apache, Lighttpd, Nginx, WebServer

SERVERS: dict[str, type[WebServer]] = {"nginx": Nginx, "apache": Apache, "lighttpd": Lighttpd}
BAD = ("NOT ok", "CRITICAL", "HIGH", "MEDIUM")


def run_one(kind: str, pebble: Pebble) -> bool:
    name = f"testssl-{kind}.test"
    with SERVERS[kind](http_port=pebble.http_port) as srv:
        env = _certsmith_env(srv.workdir / "certsmith", pebble, srv.certsmith_env())

        def cs(*args: object) -> None:
            subprocess.run(
                [sys.executable, "-m", "certsmith", *map(str, args)],
                env=env,
                check=True,
                capture_output=True,
            )

        cs(
            "get",
            name,
            f"--{kind}",
            "--http-port",
            srv.http_port,
            "--http-address",
            "127.0.0.1",
            "--server",
            pebble.directory,
            "--agree-tos",
        )
        cs(
            "install",
            kind,
            name,
            "--redirect",
            "308",
            "--hsts",
            "--http-port",
            srv.http_port,
            "--https-port",
            srv.https_port,
            "--listen-address",
            "127.0.0.1",
        )
        out = Path(tempfile.mkdtemp()) / "testssl.json"
        subprocess.run(
            [
                "testssl",
                "--quiet",
                "--color",
                "0",
                "--warnings",
                "off",
                "--ip",
                "127.0.0.1",
                "--nodns",
                "min",
                "--sneaky",
                "-p",
                "-s",
                "-f",
                "-P",
                "-h",
                "--jsonfile",
                str(out),
                f"https://{name}:{srv.https_port}/",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        findings = json.loads(out.read_text())

    def about_tls(f: dict[str, str]) -> bool:  # protocols and ciphers (the bar)
        return f["id"] in ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3") or f[
            "id"
        ].startswith(("cipherlist_", "cipher-", "FS", "cipher_negotiated"))

    bad = [
        f for f in findings if f.get("severity") in BAD or "not ok" in f.get("finding", "").lower()
    ]
    rated = [f for f in bad if about_tls(f)]
    other = [f for f in bad if not about_tls(f)]
    protocols = {
        f["id"]: f["finding"]
        for f in findings
        if f["id"] in ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3")
    }
    hsts = next((f["finding"] for f in findings if f["id"] in ("HSTS", "HSTS_time")), "missing")
    has_hsts = hsts != "missing" and "not offered" not in hsts.lower()
    print(f"== {kind}: protocols {protocols}")
    print(f"   HSTS: {hsts}")
    print(f"   protocol/cipher findings rated NOT ok/MEDIUM/HIGH/CRITICAL: {len(rated)}")
    for f in rated + other:
        print(f"     {f['id']}: {f['severity']}: {f['finding']}")
    return not rated and has_hsts


def main() -> int:
    kinds = sys.argv[1:] or list(SERVERS)
    with Pebble() as pebble:
        results = {kind: run_one(kind, pebble) for kind in kinds}
    print("summary:", ", ".join(f"{k} {'ok' if v else 'NOT ok'}" for k, v in results.items()))
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
