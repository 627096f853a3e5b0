"""Shared helpers for the benchmark scripts: repo imports, tool paths, timing, tables.

Each bench starts its own Pebble (tests/support/pebble.py) on free loopback ports, runs
certsmith and its peers against that same Pebble, and prints one table with ratios.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BIN = Path(sys.executable).parent


def certsmith_cmd() -> list[str]:
    """The installed console script (as users run it), else ``python -m certsmith``."""
    script = BIN / "certsmith"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "certsmith"]


def certbot_cmd() -> list[str] | None:
    script = BIN / "certbot"
    if script.exists():
        return [str(script)]
    found = shutil.which("certbot")
    return [found] if found else None


def lego_cmd() -> list[str] | None:
    found = shutil.which("lego")
    return [found] if found else None


def certsmith_env(base: Mapping[str, str], home: Path) -> dict[str, str]:
    env = dict(base)
    env["CERTSMITH_HOME"] = str(home)
    src = str(REPO / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("CERTSMITH_DEBUG", None)
    return env


@dataclass
class Run:
    seconds: float
    returncode: int
    stdout: str
    stderr: str


def timed(
    cmd: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 1800,
) -> Run:
    start = time.perf_counter()
    proc = subprocess.run(
        list(cmd),
        env=dict(env) if env is not None else None,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(time.perf_counter() - start, proc.returncode, proc.stdout, proc.stderr)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for n, row in enumerate(cells):
        out.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:.0f}"
        if value >= 10:
            return f"{value:.1f}"
        if value >= 0.1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    return str(value)


def ratio(peer: float | None, ours: float | None) -> str:
    if not peer or not ours:
        return "-"
    return f"{peer / ours:.1f}x"
