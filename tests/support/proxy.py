"""``certsmith proxy`` and the test upstream app as real processes, on free loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from tests.support.net import (
    LOOPBACK,
    die_with_parent,
    free_port,
    port_open,
    stop_process,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CERTSMITH_DEBUG", None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO)])
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    env.update(extra or {})
    return env


class UpstreamApp:
    """tests/support/upstream.py in its own process (HTTP on ``port``, WebSocket echo on
    ``ws_port``)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.ws_port = free_port()
        self.log = workdir / f"upstream-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> UpstreamApp:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.support.upstream",
                    "--port",
                    str(self.port),
                    "--ws-port",
                    str(self.ws_port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=_env(),
                cwd=REPO,
                preexec_fn=die_with_parent,
            )
        wait_until(
            lambda: port_open(self.port) and port_open(self.ws_port),
            what="upstream",
            proc=self.proc,
            log=lambda: self.log.read_text(errors="replace"),
        )
        return self

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def close(self) -> None:
        stop_process(self.proc)

    def __enter__(self) -> UpstreamApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class Proxy:
    """``certsmith proxy ARGS... --http-port H --https-port S`` with its own state directory."""

    def __init__(
        self,
        home: Path,
        args: list[str],
        *,
        http_port: int | None = None,
        https_port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.home = home
        self.http_port = http_port or free_port()
        self.https_port = https_port or free_port()
        self.args = list(args)
        self.extra_env = env or {}
        self.out = home.parent / f"proxy-{self.https_port}.out"
        self.err = home.parent / f"proxy-{self.https_port}.err"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "certsmith",
            "--home",
            str(self.home),
            "proxy",
            *self.args,
            "--http-port",
            str(self.http_port),
            "--https-port",
            str(self.https_port),
        ]

    def start(self, wait: bool = True) -> Proxy:
        self.home.parent.mkdir(parents=True, exist_ok=True)
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=_env(self.extra_env),
                cwd=REPO,
                preexec_fn=die_with_parent,
            )
        if wait:
            wait_until(
                lambda: port_open(self.https_port) and "serving" in self.stdout(),
                what="certsmith proxy",
                proc=self.proc,
                log=self.logs,
                timeout=30,
            )
        return self

    def stdout(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def stderr(self) -> str:
        return self.err.read_text(errors="replace") if self.err.exists() else ""

    def logs(self) -> str:
        return self.stdout() + self.stderr()

    @property
    def root(self) -> Path:
        """The local CA root (what clients trust)."""
        return self.home / "ca" / "root.pem"

    def url(self, host: str = "localhost", path: str = "/") -> str:
        return f"https://{host}:{self.https_port}{path}"

    def workers(self) -> list[int]:
        assert self.proc is not None
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.proc.pid)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return [int(p) for p in out.split()]

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        stop_process(self.proc, timeout=15)

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def run_proxy(home: Path, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``certsmith --home HOME proxy ARGS...`` to its end, for arguments it must refuse. Killed
    (and the output kept) if it is still running after ``timeout``: a proxy that starts anyway
    fails the test instead of hanging it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "certsmith", "--home", str(home), "proxy", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=_env(),
        cwd=REPO,
        text=True,
        preexec_fn=die_with_parent,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # (its own session: the workers too)
        out, err = proc.communicate()
        err += f"\n[still running after {timeout}s: killed]"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def processes_mentioning(text: str) -> list[int]:
    """Processes whose command line contains ``text`` (a proxy's workers share its command
    line, so a home directory's path finds every process a proxy left behind)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(int(entry.name))
    return found


def client_context(root: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(root))


def tls_request(
    port: int, host: str, raw: bytes, root: Path | None = None, timeout: float = 10.0
) -> bytes:
    """Send raw bytes over TLS (SNI ``host``) and read until the server closes or goes quiet."""
    ctx = client_context(root) if root else ssl._create_unverified_context()
    with (
        socket.create_connection((LOOPBACK, port), timeout=timeout) as sock,
        ctx.wrap_socket(sock, server_hostname=host) as tls,
    ):
        tls.sendall(raw)
        chunks = []
        try:
            while True:
                data = tls.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except (TimeoutError, ssl.SSLError, ConnectionError):
            pass
        return b"".join(chunks)


def served_certificate(port: int, host: str | None, root: Path | None = None) -> bytes:
    """The DER certificate the proxy shows for SNI ``host`` (None: no SNI)."""
    ctx = client_context(root) if root else ssl._create_unverified_context()
    if host is None:
        ctx.check_hostname = False
    with (
        socket.create_connection((LOOPBACK, port), timeout=10) as sock,
        ctx.wrap_socket(sock, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der


def vm_hwm_kib(pid: int) -> int:
    """Peak resident set size of ``pid`` (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for {pid}")


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


TLS_PROTOCOLS = ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3")
BAD_SEVERITIES = ("NOT ok", "CRITICAL", "HIGH", "MEDIUM")


Findings = list[dict[str, str]]


def run_testssl(url: str, workdir: Path) -> tuple[dict[str, str], Findings, Findings, str]:
    """Run Debian's testssl.sh (protocols, ciphers, forward secrecy, server preferences,
    headers) against ``url`` on 127.0.0.1: (protocols offered, protocol/cipher findings rated
    NOT ok, MEDIUM, HIGH or CRITICAL, other such findings (headers), the HSTS finding)."""
    import json

    out = workdir / "testssl.json"
    out.unlink(missing_ok=True)
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
            url,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    findings = json.loads(out.read_text())
    protocols = {f["id"]: f["finding"] for f in findings if f["id"] in TLS_PROTOCOLS}
    bad = [
        f
        for f in findings
        if f.get("severity") in BAD_SEVERITIES or "not ok" in f.get("finding", "").lower()
    ]
    hsts = next((f["finding"] for f in findings if f["id"] in ("HSTS", "HSTS_time")), "missing")

    def about_tls(f: dict[str, str]) -> bool:  # protocols, ciphers, their order
        return f["id"] in TLS_PROTOCOLS or f["id"].startswith(
            ("cipherlist_", "cipher-", "cipher_order", "FS", "cipher_negotiated")
        )

    return (protocols, [f for f in bad if about_tls(f)], [f for f in bad if not about_tls(f)], hsts)
