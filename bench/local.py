#!/usr/bin/env python3
"""Whole-process time of ``certsmith local localhost 127.0.0.1 ::1`` next to mkcert.

Each tool gets its own CA (made once, before timing) and writes into its own temporary directory.
Runs alternate between the tools so that background noise hits them alike.

    bench/local.py [--runs N] [--certsmith PATH]

Needs mkcert (Debian package; scripts/deps/local-ca.sh installs it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAMES = ["localhost", "127.0.0.1", "::1"]


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        cmd, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    default = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "certsmith"
    parser.add_argument(
        "--certsmith",
        default=str(default) if default.exists() else shutil.which("certsmith") or "certsmith",
    )
    args = parser.parse_args()
    mkcert = shutil.which("mkcert")
    if mkcert is None:
        print("mkcert not found: run scripts/deps/local-ca.sh", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        work = Path(tmp)
        env = dict(
            os.environ,
            CERTSMITH_HOME=str(work / "cs-home"),
            CAROOT=str(work / "mk-ca"),
            TRUST_STORES="none",
        )
        # Time what an installed certsmith does: byte-compiled modules cached on disk.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        tools = {
            "certsmith local": [args.certsmith, "--quiet", "local", *NAMES],
            # The floor every certsmith command pays: interpreter + CLI frame (all parsers).
            "(certsmith --version)": [args.certsmith, "--version"],
            "mkcert": [mkcert, *NAMES],
            "mkcert -ecdsa": [mkcert, "-ecdsa", *NAMES],
        }
        for cmd in tools.values():  # make the CAs; warm the page cache
            timed(cmd, env, work)
        times: dict[str, list[float]] = {name: [] for name in tools}
        for _ in range(args.runs):
            for name, cmd in tools.items():
                times[name].append(timed(cmd, env, work))
    means = {name: statistics.mean(ts) for name, ts in times.items()}
    print(f"{'tool':<22}{'mean ms':>9}{'median':>9}{'min':>9}{'stdev':>9}   ({args.runs} runs)")
    for name, ts in times.items():
        print(
            f"{name:<22}{means[name] * 1000:9.1f}{statistics.median(ts) * 1000:9.1f}"
            f"{min(ts) * 1000:9.1f}{statistics.stdev(ts) * 1000:9.1f}"
        )
    cs = means["certsmith local"]
    print(f"certsmith local / mkcert        = {cs / means['mkcert']:.2f}")
    print(f"certsmith local / mkcert -ecdsa = {cs / means['mkcert -ecdsa']:.2f}")
    print(
        f"certsmith local above its CLI floor: "
        f"{(cs - means['(certsmith --version)']) * 1000:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
