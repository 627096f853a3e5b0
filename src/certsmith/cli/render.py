"""Rendering for the terminal: tables, progress lines, JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def progress_printer(quiet: bool) -> Any:
    """A progress callback: lines on a terminal's stderr; elsewhere (a log, a timer's journal)
    only the lines of waits a person must be able to read later (DNS-01 propagation)."""
    if quiet:
        return None
    if not sys.stderr.isatty():

        def note(name: str, step: str) -> None:
            if name in ALWAYS_SHOWN:
                sys.stderr.write(f"{name}: {step}\n")
                sys.stderr.flush()

        return note

    def show(name: str, step: str) -> None:
        sys.stderr.write(f"\033[2m{name}: {step}\033[0m\n")

    return show


# progress names whose lines are written also when stderr is not a terminal
ALWAYS_SHOWN = frozenset({"dns-01"})
