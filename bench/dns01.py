"""Bench (dns-01): N wildcard certificates (default 10) over RFC 2136, three clients.

Each certificate is for ``*.<label>.dns.example.org`` and ``<label>.dns.example.org`` (a fresh
random label per tool and run). One BIND (tests/support/dns: primary 127.53.200.1 taking TSIG
updates, a secondary kept in step by NOTIFY, a recursive resolver 127.53.200.4) and one Pebble
validating through that resolver serve every tool:

- certsmith: ONE command, ``certsmith get '*.a' a '*.b' b ... --separate --dns rfc2136
  --tsig-key-file K --dns-resolver 127.53.200.4`` (it orders the certificates concurrently and
  polls the authoritative servers until they all have the record);
- certbot + certbot-dns-rfc2136 (from this virtualenv): one ``certbot certonly --authenticator
  dns-rfc2136`` process per certificate, twice: ``certbot-default`` with the plugin's default
  ``--dns-rfc2136-propagation-seconds`` (60: it sleeps that long per certificate, it does not
  look) and ``certbot-min`` with ``--dns-rfc2136-propagation-seconds 0`` (the smallest value
  the option accepts: it is a plain int handed to ``time.sleep``);
- lego (Debian package): one ``lego --dns rfc2136 ... run`` process per certificate, with its
  defaults (it polls the authoritative servers; RFC2136_* in its environment), except
  ``--dns.disable-cp``: lego resolves the NS names it polls through the system resolver,
  which does not know the test zones (the split-horizon case the issue describes), so its
  propagation check cannot run here and would fail every certificate.

Certificates are counted from the files each tool writes. Needs root (the DNS fixtures add
loopback addresses and run named as ``bind``).

    .venv/bin/python bench/dns01.py [--count 10] [--skip certbot-default,lego]
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path

import _common as c
from tests.support.dns import BENCH_NET, DNS_PORT, ZONE, Bind
from tests.support.pebble import Pebble

TOOLS = ("certsmith", "certbot-min", "certbot-default", "lego")


class Result:
    def __init__(self, seconds: float, obtained: int, note: str = "", failure: str = "") -> None:
        self.seconds = seconds
        self.obtained = obtained
        self.note = note
        self.failure = failure  # last lines of a failing tool's output


def tail(text: str, lines: int = 8) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def bench_certsmith(pebble: Pebble, bind: Bind, apexes: list[str], tmp: Path) -> Result:
    home = tmp / "certsmith-home"
    env = c.certsmith_env(pebble.client_env(), home)
    names = [n for a in apexes for n in (f"*.{a}", a)]
    run = c.timed(
        [
            *c.certsmith_cmd(),
            "get",
            *names,
            "--separate",
            "--dns",
            "rfc2136",
            "--tsig-key-file",
            str(bind.key_file),
            "--dns-resolver",
            bind.resolver,
            "--server",
            pebble.directory,
            "--agree-tos",
        ],
        env=env,
    )
    got = sum((home / "live" / f"_.{a}" / "cert.pem").is_file() for a in apexes)
    failure = "" if run.returncode == 0 and got == len(apexes) else tail(run.stderr + run.stdout)
    return Result(run.seconds, got, c.last_line(run.stderr) if run.returncode else "", failure)


def _certbot_ini(bind: Bind, path: Path) -> Path:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(
        f"dns_rfc2136_server = {bind.primary}\n"
        f"dns_rfc2136_port = {DNS_PORT}\n"
        f"dns_rfc2136_name = {bind.key_name}\n"
        f"dns_rfc2136_secret = {bind.key_secret}\n"
        "dns_rfc2136_algorithm = HMAC-SHA256\n"
    )
    return path


def certbot_runner(propagation: int | None) -> Callable[[Pebble, Bind, list[str], Path], Result]:
    """certbot, one process per certificate; ``propagation`` None = the plugin's default."""

    def bench(pebble: Pebble, bind: Bind, apexes: list[str], tmp: Path) -> Result:
        cmd = c.certbot_cmd()
        if cmd is None:
            return Result(0.0, 0, failure="certbot not installed")
        base = tmp / f"certbot-{'default' if propagation is None else propagation}"
        base.mkdir(mode=0o700)
        ini = _certbot_ini(bind, base / "rfc2136.ini")
        extra = (
            [] if propagation is None else ["--dns-rfc2136-propagation-seconds", str(propagation)]
        )
        env = pebble.client_env()
        total, failure = 0.0, ""
        for apex in apexes:
            run = c.timed(
                [
                    *cmd,
                    "certonly",
                    "--non-interactive",
                    "--agree-tos",
                    "--register-unsafely-without-email",
                    "--server",
                    pebble.directory,
                    "--authenticator",
                    "dns-rfc2136",
                    "--dns-rfc2136-credentials",
                    str(ini),
                    *extra,
                    "--config-dir",
                    str(base / "config"),
                    "--work-dir",
                    str(base / "work"),
                    "--logs-dir",
                    str(base / "logs"),
                    "--cert-name",
                    apex,
                    "-d",
                    f"*.{apex}",
                    "-d",
                    apex,
                ],
                env=env,
            )
            total += run.seconds
            if run.returncode != 0 and not failure:
                failure = f"{apex}: exit {run.returncode}\n" + tail(run.stderr + run.stdout)
        got = sum((base / "config" / "live" / a / "fullchain.pem").is_file() for a in apexes)
        if got < len(apexes) and not failure:
            failure = f"{len(apexes) - got} certificate files missing under {base}/config/live"
        return Result(total, got, failure=failure)

    return bench


def bench_lego(pebble: Pebble, bind: Bind, apexes: list[str], tmp: Path) -> Result:
    cmd = c.lego_cmd()
    if cmd is None:
        return Result(0.0, 0, failure="lego not installed (scripts/deps/bench.sh)")
    path = tmp / "lego"
    env = pebble.client_env()
    env.update(
        {
            "RFC2136_NAMESERVER": f"{bind.primary}:{DNS_PORT}",
            "RFC2136_TSIG_KEY": f"{bind.key_name}.",
            "RFC2136_TSIG_SECRET": bind.key_secret,
            "RFC2136_TSIG_ALGORITHM": "hmac-sha256.",
        }
    )
    total, failure = 0.0, ""
    for apex in apexes:
        run = c.timed(
            [
                *cmd,
                "--server",
                pebble.directory,
                "--accept-tos",
                "--email",
                "x@example.org",
                "--path",
                str(path),
                "--dns",
                "rfc2136",
                "--dns.resolvers",
                f"{bind.resolver}:{DNS_PORT}",
                "--dns.disable-cp",
                "--domains",
                f"*.{apex}",
                "--domains",
                apex,
                "run",
            ],
            env=env,
        )
        total += run.seconds
        if run.returncode != 0 and not failure:
            failure = f"{apex}: exit {run.returncode}\n" + tail(run.stderr + run.stdout)
    got = sum((path / "certificates" / f"_.{a}.crt").is_file() for a in apexes)
    if got < len(apexes) and not failure:
        failure = f"{len(apexes) - got} certificate files missing under {path}/certificates"
    return Result(total, got, failure=failure)


RUNNERS: dict[str, Callable[[Pebble, Bind, list[str], Path], Result]] = {
    "certsmith": bench_certsmith,
    "certbot-min": certbot_runner(0),
    "certbot-default": certbot_runner(None),
    "lego": bench_lego,
}
HOW = {
    "certsmith": "1 command",
    "certbot-min": "{n} processes, propagation 0 s",
    "certbot-default": "{n} processes, propagation 60 s (default)",
    "lego": "{n} processes, defaults",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--skip", default="", help="comma-separated: " + ",".join(TOOLS))
    args = parser.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(TOOLS)
    if unknown:
        parser.error(f"--skip: unknown tool(s) {', '.join(sorted(unknown))}")
    if os.geteuid() != 0:
        parser.error("needs root: the DNS fixtures add loopback addresses and run named")
    n = args.count
    run_id = secrets.token_hex(3)

    results: dict[str, Result] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-dns01-") as d,
        Bind(net=BENCH_NET, notify=True) as bind,
        Pebble(Path(d) / "pebble", dns_server=f"{bind.resolver}:{DNS_PORT}") as pb,
    ):
        tmp = Path(d)
        for tool in TOOLS:  # certbot-default last: it sleeps a minute per certificate
            if tool in skip:
                continue
            prefix = tool[0] if tool != "certbot-min" else "m"
            apexes = [f"{prefix}{i:02d}-{run_id}.{ZONE}" for i in range(1, n + 1)]
            print(f"{tool}: {n} certificates (*.X and X) ...", flush=True)
            results[tool] = RUNNERS[tool](pb, bind, apexes, tmp)
            print(f"  {results[tool].seconds:.1f} s, {results[tool].obtained}/{n}", flush=True)

    ours = results["certsmith"].seconds if "certsmith" in results else None
    rows = []
    for tool, r in results.items():
        rows.append(
            [
                tool,
                HOW[tool].format(n=n),
                f"{r.obtained}/{n}",
                r.seconds,
                r.seconds / n if n else 0.0,
                "1.0x" if tool == "certsmith" else c.ratio(r.seconds, ours),
                r.note or ("FAILED" if r.failure else ""),
            ]
        )
    print()
    print(
        f"{n} wildcard+apex certificates over RFC 2136, same BIND and Pebble "
        "(ratio = tool time / certsmith time)"
    )
    print(c.table(["tool", "how", "obtained", "total s", "s/cert", "vs certsmith", "note"], rows))
    if ours:
        print()
        for tool in ("certbot-default", "certbot-min", "lego"):
            if tool in results:
                print(f"{tool} / certsmith: {c.ratio(results[tool].seconds, ours)}")
    failed = {t: r for t, r in results.items() if r.failure or r.obtained < n}
    for tool, r in failed.items():
        print(
            f"\n{tool} did not get all {n} certificates ({r.obtained}/{n}):\n"
            f"{r.failure or '(no output)'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
