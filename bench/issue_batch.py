"""Bench (a): N separate certificates (default 20) from one Pebble, three clients.

- certsmith: ONE command, ``certsmith get n1 ... nN --separate --standalone --http-port P``
  (it orders the certificates concurrently);
- certbot (from this virtualenv): one ``certbot certonly --standalone`` process per certificate,
  as its users run it;
- lego (Debian package): one ``lego ... run`` process per certificate.

All three answer http-01 on Pebble's validation port on 127.0.0.1 and trust Pebble's listener
through REQUESTS_CA_BUNDLE / LEGO_CA_CERTIFICATES. Pebble runs with its reference settings
(no random VA sleeps, no nonce rejection, no authz reuse, Retry-After authz 3 s / order 5 s).
Success is counted from Pebble's own log (certificates issued), not from the clients.

    .venv/bin/python bench/issue_batch.py [--count 20] [--skip certbot,lego]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import _common as c
from tests.support.pebble import Pebble


def bench_certsmith(pebble: Pebble, names: list[str], tmp: Path) -> tuple[float, int, str]:
    env = c.certsmith_env(pebble.client_env(), tmp / "certsmith-home")
    before = pebble.count_issued()
    run = c.timed(
        [
            *c.certsmith_cmd(),
            "get",
            *names,
            "--separate",
            "--standalone",
            "--http-port",
            str(pebble.http_port),
            "--http-address",
            "127.0.0.1",
            "--server",
            pebble.directory,
            "--agree-tos",
        ],
        env=env,
    )
    note = "" if run.returncode == 0 else c.last_line(run.stderr or run.stdout)
    return run.seconds, pebble.count_issued() - before, note


def bench_certbot(pebble: Pebble, names: list[str], tmp: Path) -> tuple[float, int, str]:
    cmd = c.certbot_cmd()
    if cmd is None:
        return 0.0, 0, "certbot not installed"
    base = tmp / "certbot"
    env = pebble.client_env()
    before = pebble.count_issued()
    total, note = 0.0, ""
    for name in names:
        run = c.timed(
            [
                *cmd,
                "certonly",
                "--non-interactive",
                "--standalone",
                "--http-01-port",
                str(pebble.http_port),
                "--http-01-address",
                "127.0.0.1",
                "--server",
                pebble.directory,
                "--agree-tos",
                "--register-unsafely-without-email",
                "--config-dir",
                str(base / "config"),
                "--work-dir",
                str(base / "work"),
                "--logs-dir",
                str(base / "logs"),
                "-d",
                name,
            ],
            env=env,
        )
        total += run.seconds
        if run.returncode != 0 and not note:
            note = c.last_line(run.stderr or run.stdout)
    return total, pebble.count_issued() - before, note


def bench_lego(pebble: Pebble, names: list[str], tmp: Path) -> tuple[float, int, str]:
    cmd = c.lego_cmd()
    if cmd is None:
        return 0.0, 0, "lego not installed (scripts/deps/bench.sh)"
    env = pebble.client_env()
    before = pebble.count_issued()
    total, note = 0.0, ""
    for name in names:
        run = c.timed(
            [
                *cmd,
                "--server",
                pebble.directory,
                "--accept-tos",
                "--email",
                "x@example.org",
                "--http",
                "--http.port",
                f"127.0.0.1:{pebble.http_port}",
                "--path",
                str(tmp / "lego"),
                "--domains",
                name,
                "run",
            ],
            env=env,
        )
        total += run.seconds
        if run.returncode != 0 and not note:
            note = c.last_line(run.stderr or run.stdout)
    return total, pebble.count_issued() - before, note


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--skip", default="", help="comma-separated: certsmith,certbot,lego")
    parser.add_argument(
        "--retry-after",
        type=int,
        nargs=2,
        default=(0, 0),
        metavar=("AUTHZ", "ORDER"),
        help="Pebble's Retry-After for pending authorizations and processing "
        "orders (default 0 0: a fast CA that asks for no wait; Pebble's "
        "example config uses 3 5)",
    )
    args = parser.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    n = args.count

    results: dict[str, tuple[float, int, str]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-issue-") as d,
        Pebble(
            Path(d) / "pebble",
            retry_after_authz=args.retry_after[0],
            retry_after_order=args.retry_after[1],
        ) as pb,
    ):
        tmp = Path(d)
        runners = {"certsmith": bench_certsmith, "certbot": bench_certbot, "lego": bench_lego}
        for tool, fn in runners.items():
            if tool in skip:
                continue
            names = [f"{tool}-{i:02d}.bench.example" for i in range(1, n + 1)]
            print(f"{tool}: {n} certificates ...", flush=True)
            results[tool] = fn(pb, names, tmp)

    ours = results.get("certsmith", (0.0, 0, ""))[0]
    rows = []
    for tool, (secs, issued, note) in results.items():
        how = "1 command" if tool == "certsmith" else f"{n} processes"
        rows.append(
            [
                tool,
                how,
                f"{issued}/{n}",
                secs,
                secs / n if n else 0.0,
                "1.0x" if tool == "certsmith" else c.ratio(secs, ours),
                note,
            ]
        )
    print()
    print(f"{n} separate certificates, same Pebble (ratio = tool time / certsmith time)")
    print(c.table(["tool", "how", "issued", "total s", "s/cert", "vs certsmith", "note"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
