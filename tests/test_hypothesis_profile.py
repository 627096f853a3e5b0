"""The Hypothesis profile tests/conftest.py loads: repeatable by default, random only on request.

Each case runs pytest as a developer or CI would (a subprocess, with tests/conftest.py as its
plugin) on a small property test that records what it drew and the settings it ran with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import json
import os

from hypothesis import given, settings
from hypothesis import strategies as st


@given(st.integers(), st.text(max_size=5))
def test_draw(n, s):
    with open(os.environ["PROBE_DRAWS"], "a") as out:
        out.write(json.dumps([n, s]) + "\\n")


def test_settings():
    current = settings()
    with open(os.environ["PROBE_SETTINGS"], "w") as out:
        json.dump({"derandomize": current.derandomize, "database": current.database is None,
                   "deadline": current.deadline, "print_blob": current.print_blob,
                   "max_examples": current.max_examples}, out)
"""


def run_probe(
    tmp: Path, tag: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[Any], dict[str, Any]]:
    probe = tmp / "probe" / "test_probe.py"
    probe.parent.mkdir(exist_ok=True)
    probe.write_text(PROBE)
    draws, found = tmp / f"{tag}.draws", tmp / f"{tag}.json"
    full = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CI", "CERTSMITH_HYPOTHESIS", "PYTEST_ADDOPTS")
    }
    full.update(
        PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}",
        PROBE_DRAWS=str(draws),
        PROBE_SETTINGS=str(found),
        **env,
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.conftest",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "-n",
            "0",
            "-q",
            "--rootdir",
            str(probe.parent),
            str(probe),
        ],
        cwd=tmp,
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        return done, [], {}
    lines = draws.read_text().splitlines()
    return done, [json.loads(line) for line in lines], json.loads(found.read_text())


@pytest.mark.slow  # pytest in subprocesses
def test_by_default_every_run_draws_the_same_examples_with_no_deadline(tmp_path: Path) -> None:
    first, draws1, used = run_probe(tmp_path, "first")
    assert first.returncode == 0, first.stdout + first.stderr
    second, draws2, _ = run_probe(tmp_path, "second")
    on_ci, draws3, used_on_ci = run_probe(tmp_path, "ci", CI="true")
    assert second.returncode == 0 and on_ci.returncode == 0
    assert len(draws1) >= 50 and draws1 == draws2 == draws3  # a fresh clone and CI alike
    assert (
        used
        == used_on_ci
        == {
            "derandomize": True,
            "database": True,
            "deadline": None,
            "print_blob": True,
            "max_examples": 100,
        }
    )
    assert not (tmp_path / ".hypothesis" / "examples").exists()  # no example database


@pytest.mark.slow
def test_explore_draws_at_random_and_a_typo_is_one_line(tmp_path: Path) -> None:
    explore, _, used = run_probe(tmp_path, "explore", CERTSMITH_HYPOTHESIS="explore")
    assert explore.returncode == 0, explore.stdout + explore.stderr
    assert used == {
        "derandomize": False,
        "database": False,
        "deadline": None,
        "print_blob": True,
        "max_examples": 1000,
    }
    typo, _, _ = run_probe(tmp_path, "typo", CERTSMITH_HYPOTHESIS="explor")
    assert typo.returncode == 4, typo.stdout + typo.stderr  # pytest's usage error
    assert (
        "CERTSMITH_HYPOTHESIS=explor: choose one of repeatable, explore"
        in typo.stdout + typo.stderr
    )
    assert "Traceback" not in typo.stdout + typo.stderr
