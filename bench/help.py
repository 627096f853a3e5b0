"""Bench (c): start-up cost, ``certsmith --help`` vs ``certbot --help``, many runs each.

Runs alternate between the tools (so drift in machine load hits both alike) after one
warm-up run each (page cache, .pyc files). No CA is needed; a Pebble is started anyway so
every bench runs the same way (and ``REQUESTS_CA_BUNDLE`` is set as in the others).

    .venv/bin/python bench/help.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import _common as c
from tests.support.pebble import Pebble


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--no-pebble", action="store_true", help="skip starting Pebble")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-help-") as d:
        tmp = Path(d)
        pebble = None if args.no_pebble else Pebble(tmp / "pebble").start()
        try:
            base = pebble.client_env() if pebble else dict(os.environ)
            tools: dict[str, tuple[list[str], dict[str, str]]] = {
                "certsmith": (
                    [*c.certsmith_cmd(), "--help"],
                    c.certsmith_env(base, tmp / "certsmith-home"),
                ),
            }
            certbot = c.certbot_cmd()
            if certbot:
                tools["certbot"] = (
                    [
                        *certbot,
                        "--help",
                        "--config-dir",
                        str(tmp / "cb"),
                        "--work-dir",
                        str(tmp / "cbw"),
                        "--logs-dir",
                        str(tmp / "cbl"),
                    ],
                    base,
                )
            times: dict[str, list[float]] = {tool: [] for tool in tools}
            notes: dict[str, str] = {tool: "" for tool in tools}
            for cmd, env in tools.values():  # warm-up
                c.timed(cmd, env=env)
            for _ in range(args.runs):
                for tool, (cmd, env) in tools.items():
                    run = c.timed(cmd, env=env)
                    times[tool].append(run.seconds)
                    if run.returncode != 0 and not notes[tool]:
                        notes[tool] = f"exit {run.returncode}: " + c.last_line(run.stderr)
        finally:
            if pebble:
                pebble.close()

    ours = statistics.mean(times["certsmith"])
    rows = []
    for tool, ts in times.items():
        mean = statistics.mean(ts)
        rows.append(
            [
                tool,
                mean * 1000,
                min(ts) * 1000,
                statistics.median(ts) * 1000,
                "1.0x" if tool == "certsmith" else c.ratio(mean, ours),
                notes[tool],
            ]
        )
    print(f"--help, {args.runs} runs each (ratio = tool mean / certsmith mean)")
    print(c.table(["tool", "mean ms", "min ms", "median ms", "vs certsmith", "note"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
