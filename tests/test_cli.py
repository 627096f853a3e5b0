"""The command line itself: every command has help, global options work on both sides."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from certsmith.cli.main import COMMANDS


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_has_help(command: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "certsmith", command, "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: certsmith {command}")
    assert "--quiet" in proc.stdout and "--home" in proc.stdout


def test_top_level_help_lists_every_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "certsmith", "--help"], capture_output=True, text=True, check=True
    )
    for command, summary in COMMANDS.items():
        assert f"    {command}" in proc.stdout and summary[:30] in proc.stdout


def test_global_options_before_or_after_the_command(tmp_path: Path) -> None:
    for argv in (
        ["--home", str(tmp_path / "a"), "-q", "renew"],
        ["renew", "--home", str(tmp_path / "a"), "--quiet"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "certsmith", *argv], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", argv


def test_unknown_command_and_option_are_one_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "certsmith", "renew", "--bogus"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "unrecognized arguments: --bogus" in proc.stderr
    assert "Traceback" not in proc.stderr
