"""One TLS handshake with ``openssl s_client``, as a user would probe a server: which key
exchange group and cipher it chose, and whether it resumed a saved session."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.net import LOOPBACK


@dataclass(frozen=True)
class Handshake:
    ok: bool
    protocol: str  # TLSv1.2 / TLSv1.3, "" if none
    cipher: str  # OpenSSL's name, "" if none
    temp_key: str  # "Server Temp Key" as s_client prints it, e.g. "X25519, 253 bits"
    reused: bool
    output: str

    def __str__(self) -> str:
        return self.output[-3000:]


def handshake(
    port: int,
    servername: str,
    *options: str,
    sess_out: Path | None = None,
    sess_in: Path | None = None,
    ca_file: Path | None = None,
    host: str = LOOPBACK,
) -> Handshake:
    """Connect, send one HTTP/1.1 request (``Connection: close``) and read until the server
    closes, so the TLS 1.3 session tickets sent after the handshake are read (and saved with
    ``sess_out``). ``options``: further s_client options, e.g. ``-tls1_3 -groups X448``."""
    argv = [
        "openssl",
        "s_client",
        "-connect",
        f"{host}:{port}",
        "-servername",
        servername,
        "-ign_eof",
        *options,
    ]
    if ca_file is not None:
        argv += ["-CAfile", str(ca_file), "-verify_return_error"]
    if sess_out is not None:
        argv += ["-sess_out", str(sess_out)]
    if sess_in is not None:
        argv += ["-sess_in", str(sess_in)]
    request = f"GET / HTTP/1.1\r\nHost: {servername}\r\nConnection: close\r\n\r\n"
    proc = subprocess.run(
        argv, input=request, capture_output=True, text=True, timeout=60, check=False
    )
    out = proc.stdout + proc.stderr
    m = re.search(r"^(New|Reused), (TLSv[\d.]+), Cipher is (\S+)$", out, re.M)
    key = re.search(r"^Server Temp Key: (.+)$", out, re.M)
    ok = proc.returncode == 0 and m is not None and m.group(3) != "(NONE)"
    return Handshake(
        ok,
        m.group(2) if ok and m else "",
        m.group(3) if ok and m else "",
        key.group(1) if key else "",
        ok and m is not None and m.group(1) == "Reused",
        out,
    )


def resumes(
    port: int, servername: str, version: str, workdir: Path, ca_file: Path | None = None
) -> tuple[Handshake, Handshake]:
    """A full handshake saving its session, then one offering it back (``version``: "-tls1_2"
    or "-tls1_3")."""
    saved = workdir / f"session-{port}{version}.pem"
    saved.unlink(missing_ok=True)
    first = handshake(port, servername, version, sess_out=saved, ca_file=ca_file)
    second = handshake(port, servername, version, sess_in=saved, ca_file=ca_file)
    return first, second
