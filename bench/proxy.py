"""certsmith proxy against nginx and Caddy (Debian packages) as TLS-terminating reverse proxies.

All three serve the same ECDSA P-256 certificate (made by certsmith's local CA) in front of the
same fast upstream (a one-worker nginx answering ``hello world`` from memory), with one worker
per core. wrk (Debian) measures keep-alive (``wrk -t1 -c64 -d10s --latency``) and a new TLS
connection per request (``-H 'Connection: close'``). Printed: req/s, p50/p99 latency, the
proxy's own CPU time per request (all its processes, from /proc), and ratios against the peers.
Then 10,000 idle keep-alive TLS connections are opened to each proxy and its memory read.

    .venv/bin/python bench/proxy.py [--duration 10] [--connections 64] [--skip caddy]
                                    [--idle 10000] [--testssl] [--sslyze]

Peers are configured as a careful operator would for this job: nginx with upstream keep-alive
(``keepalive 128``) and no per-connection request cap; Caddy 2.6 with its defaults. Everything
runs on this machine (loopback), so wrk competes with the proxies for the cores: compare ratios
within one run.
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from tests.support.net import free_port, port_open, stop_process, wait_until
from tests.support.proxy import run_testssl
from tests.support.sslyze import mozilla_intermediate

TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # proxy CPU time per request, microseconds
    errors: int


def _ms(text: str) -> float:
    value = float(re.sub(r"[a-z]+$", "", text))
    if text.endswith("us"):
        return value / 1000
    if text.endswith("ms"):
        return value
    return value * 1000  # seconds


def tree(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, check=True
    ).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        p, pp = map(int, line.split())
        children.setdefault(pp, []).append(p)
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


def pss_kib(pids: list[int]) -> int:
    """Proportional set size of the processes together: pages the forked workers share with
    the supervisor are counted once (a sum of RSS would count them once per process)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def wrk(url: str, pid: int, duration: int, connections: int, close: bool) -> Result:
    pids = tree(pid)
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url]
    if close:
        cmd[1:1] = ["-H", "Connection: close"]
    before = cpu_ticks(pids)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    used = cpu_ticks(pids) - before
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    return Result(rps, p50, p99, used / TICK * 1e6 / max(total, 1), errors)


class Server(abc.ABC):
    name = ""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = work / f"{self.__class__.__name__.lower()}.log"

    @abc.abstractmethod
    def command(self) -> list[str]:
        """The server's command line (it writes its config file first)."""

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self) -> Server:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env(),
                start_new_session=True,
            )
        wait_until(
            lambda: port_open(self.port),
            what=self.name,
            proc=self.proc,
            log=lambda: self.log.read_text(errors="replace"),
            timeout=30,
        )
        time.sleep(0.5)
        return self

    def stop(self) -> None:
        stop_process(self.proc, timeout=20)


class NginxUpstream(Server):
    name = "upstream"

    def command(self) -> list[str]:
        conf = self.work / "upstream.conf"
        conf.write_text(f"""
worker_processes 1; daemon off; pid {self.work}/upstream.pid;
error_log {self.work}/upstream-error.log;
events {{ worker_connections 16384; }}
http {{
  access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
  server {{ listen 127.0.0.1:{self.port} backlog=4096;
    location / {{ return 200 "hello world\\n"; }} }}
}}
""")
        return ["nginx", "-c", str(conf), "-p", str(self.work)]


class CertsmithProxy(Server):
    name = "certsmith proxy"

    def __init__(self, work: Path, upstream: int, workers: int) -> None:
        super().__init__(work)
        self.upstream = upstream
        self.workers = workers
        self.http_port = free_port()

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent / "src")
        return env

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "certsmith",
            "--home",
            str(self.work / "home"),
            "proxy",
            "localhost",
            "--to",
            f"127.0.0.1:{self.upstream}",
            "--https-port",
            str(self.port),
            "--http-port",
            str(self.http_port),
            "--workers",
            str(self.workers),
            "--hsts",
        ]

    @property
    def cert(self) -> tuple[Path, Path]:
        live = self.work / "home" / "live" / "local-localhost"
        return live / "fullchain.pem", live / "privkey.pem"


class NginxProxy(Server):
    name = "nginx"

    def __init__(self, work: Path, upstream: int, workers: int, cert: tuple[Path, Path]) -> None:
        super().__init__(work)
        self.upstream, self.workers, self.cert = upstream, workers, cert

    def command(self) -> list[str]:
        conf = self.work / "nginx-proxy.conf"
        conf.write_text(f"""
worker_processes {self.workers}; daemon off; pid {self.work}/nginx-proxy.pid;
error_log {self.work}/nginx-proxy-error.log; worker_rlimit_nofile 20000;
events {{ worker_connections 16384; }}
http {{
  access_log off; keepalive_requests 10000000;
  upstream app {{ server 127.0.0.1:{self.upstream}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{self.port} ssl backlog=4096;
    ssl_certificate {self.cert[0]}; ssl_certificate_key {self.cert[1]};
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{ proxy_pass http://app; proxy_http_version 1.1;
                 proxy_set_header Connection ""; }}
  }}
}}
""")
        return ["nginx", "-c", str(conf), "-p", str(self.work)]


class CaddyProxy(Server):
    name = "caddy"

    def __init__(self, work: Path, upstream: int, cert: tuple[Path, Path]) -> None:
        super().__init__(work)
        self.upstream, self.cert = upstream, cert

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["XDG_DATA_HOME"] = str(self.work / "caddy-data")
        env["XDG_CONFIG_HOME"] = str(self.work / "caddy-config")
        env["HOME"] = str(self.work)
        return env

    def command(self) -> list[str]:
        conf = self.work / "Caddyfile"
        conf.write_text(f"""{{
  admin off
  auto_https off
}}
https://localhost:{self.port} {{
  tls {self.cert[0]} {self.cert[1]}
  reverse_proxy 127.0.0.1:{self.upstream}
}}
""")
        return ["caddy", "run", "--config", str(conf), "--adapter", "caddyfile"]


async def _idle_connections(port: int, count: int, root: Path) -> list[asyncio.StreamWriter]:
    ctx = ssl.create_default_context(cafile=str(root))
    writers: list[asyncio.StreamWriter] = []
    sem = asyncio.Semaphore(200)

    async def one() -> None:
        async with sem:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=ctx, server_hostname="localhost"
            )
            writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            await reader.readuntil(b"hello world\n")
            writers.append(writer)

    results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        print(f"  ({len(failed)} idle connections failed: {failed[0]!r})")
    return writers


def idle_memory(proxy: Server, count: int, root: Path) -> tuple[int, int, int]:
    """(connections held, memory (PSS) of all the proxy's processes before, after) in KiB."""
    assert proxy.proc is not None
    pids = tree(proxy.proc.pid)
    before = pss_kib(pids)

    async def hold() -> tuple[int, int]:
        writers = await _idle_connections(proxy.port, count, root)
        await asyncio.sleep(2)
        after = pss_kib(pids)
        for w in writers:
            w.close()
        return len(writers), after

    held, after = asyncio.run(hold())
    return held, before, after


def report_testssl(proxy_port: int, work: Path) -> int:
    protocols, bad, other, hsts = run_testssl(f"https://localhost:{proxy_port}/", work)
    print(f"testssl.sh: protocols {protocols}")
    print(f"  HSTS: {hsts}")
    print(f"  protocol/cipher findings rated NOT ok/MEDIUM/HIGH/CRITICAL: {len(bad)}")
    for f in bad + other:
        print(f"    {f['id']}: {f['severity']}: {f['finding']}")
    return len(bad)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip", default="", help="comma-separated: nginx,caddy")
    parser.add_argument("--idle", type=int, default=10000, help="idle connections (0: skip)")
    parser.add_argument("--testssl", action="store_true", help="also run testssl.sh")
    parser.add_argument(
        "--sslyze", action="store_true", help="also run sslyze's Mozilla intermediate check"
    )
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    missing = [
        tool for tool in ("wrk", "nginx", "caddy") if not shutil.which(tool) and tool not in skip
    ]
    if missing:
        print(f"missing: {', '.join(missing)} (run scripts/deps/proxy.sh)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    started: list[Server] = []
    try:
        upstream = NginxUpstream(work).start()
        started.append(upstream)
        ours = CertsmithProxy(work, upstream.port, args.workers)
        ours.start()
        started.append(ours)
        servers: list[Server] = [ours]
        if "nginx" not in skip:
            servers.append(NginxProxy(work, upstream.port, args.workers, ours.cert).start())
        if "caddy" not in skip:
            servers.append(CaddyProxy(work, upstream.port, ours.cert).start())
        started += servers[1:]
        results: dict[tuple[str, str], Result] = {}
        for mode, close in (("keep-alive", False), ("new connection", True)):
            for server in servers:
                assert server.proc is not None
                url = f"https://localhost:{server.port}/"
                wrk(url, server.proc.pid, 2, args.connections, close)  # warm-up
                results[(server.name, mode)] = wrk(
                    url, server.proc.pid, args.duration, args.connections, close
                )
        print(
            f"TLS reverse proxies, {args.workers} worker(s) each, wrk -t1 "
            f"-c{args.connections} -d{args.duration}s, same ECDSA P-256 certificate, "
            f"same upstream ({os.cpu_count()} cores shared with wrk and the upstream)"
        )
        print(
            f"{'proxy':<16}{'mode':<16}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'CPU us/req':>12}{'errors':>8}"
        )
        for (name, mode), r in results.items():
            print(
                f"{name:<16}{mode:<16}{r.rps:>10.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}"
                f"{r.cpu_us:>12.1f}{r.errors:>8}"
            )
        for mode in ("keep-alive", "new connection"):
            ours_r = results[(ours.name, mode)]
            for peer in servers[1:]:
                r = results[(peer.name, mode)]
                print(
                    f"{mode}: certsmith/{peer.name} req/s {ours_r.rps / r.rps:.2f}x, "
                    f"p99 {ours_r.p99_ms / r.p99_ms:.2f}x, CPU/req "
                    f"{ours_r.cpu_us / r.cpu_us:.2f}x"
                )
        if args.idle:
            root = ours.work / "home" / "ca" / "root.pem"
            for server in servers:
                held, before, after = idle_memory(server, args.idle, root)
                print(
                    f"idle: {server.name}: {held} keep-alive TLS connections held; memory "
                    f"(PSS, all its processes) {before / 1024:.0f} MiB before, "
                    f"{after / 1024:.0f} MiB with them "
                    f"({(after - before) / max(held, 1):.1f} KiB per connection)"
                )
        if args.testssl:
            report_testssl(ours.port, work)
        if args.sslyze:
            verdict = mozilla_intermediate(
                "localhost", ours.port, ours.work / "home" / "ca" / "root.pem"
            )
            print(
                f"sslyze Mozilla intermediate: {'compliant' if verdict.compliant else 'NOT'}"
                f" compliant {verdict.issues or ''}"
            )
    finally:
        for server in reversed(started):
            if server.proc is not None and server.proc.poll() is None:
                server.proc.send_signal(signal.SIGTERM)
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
