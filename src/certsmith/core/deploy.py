"""Deploy targets: copy parts of the live bundle where an app reads them, then run commands.

Files are replaced atomically (temp in the same directory + rename) with the owner, group and
mode asked for. A ``dir`` target writes all parts into a directory: the way to reach a container,
since a single-file bind mount keeps the old inode after a rename.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from certsmith.base.crashpoints import crash_point
from certsmith.base.model import FileTarget
from certsmith.base.store.fs import atomic_write
from certsmith.errors import DeployError, UsageError

COMMAND_TIMEOUT = 300
_PART_FILES = {
    "fullchain": "fullchain.pem",
    "cert": "cert.pem",
    "chain": "chain.pem",
    "key": "privkey.pem",
}


def check_target(target: FileTarget) -> None:
    """Refuse, before any order, a target that can never work (unknown user or group)."""
    if target.owner:
        lookup_uid(target.owner)
    if target.group:
        lookup_gid(target.group)


def lookup_uid(owner: str) -> int:
    if owner.isdigit():
        return int(owner)
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise UsageError(f"unknown user {owner!r} in --deploy-to") from None


def lookup_gid(group: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise UsageError(f"unknown group {group!r} in --deploy-to") from None


@dataclass(frozen=True)
class LiveFiles:
    """The stable paths of one certificate's live version."""

    name: str
    names: tuple[str, ...]
    live_dir: Path

    def path(self, part: str) -> Path:
        return self.live_dir / _PART_FILES[part]

    def read(self, part: str) -> bytes:
        if part == "combined":
            return self.read("fullchain") + self.read("key")
        return self.path(part).read_bytes()

    def environment(self) -> dict[str, str]:
        env = {
            "CERTSMITH_NAME": self.name,
            "CERTSMITH_NAMES": " ".join(self.names),
            "CERTSMITH_LIVE_DIR": str(self.live_dir),
            "CERTSMITH_CERT": str(self.path("cert")),
            "CERTSMITH_CHAIN": str(self.path("chain")),
            "CERTSMITH_FULLCHAIN": str(self.path("fullchain")),
            "CERTSMITH_KEY": str(self.path("key")),
            # certbot deploy-hook compatibility
            "RENEWED_LINEAGE": str(self.live_dir),
            "RENEWED_DOMAINS": " ".join(self.names),
        }
        return env


def _write(path: Path, data: bytes, target: FileTarget, private: bool) -> None:
    mode = target.mode if target.mode is not None else (0o600 if private else 0o644)
    try:
        atomic_write(path, data, mode)
        if target.owner or target.group:
            uid = lookup_uid(target.owner) if target.owner else -1
            gid = lookup_gid(target.group) if target.group else -1
            os.chown(path, uid, gid)
    except OSError as exc:
        raise DeployError(f"cannot write {path}: {exc.strerror}") from exc


def deploy_file(live: LiveFiles, target: FileTarget) -> list[str]:
    """Write one target; returns the paths written."""
    dest = Path(target.path)
    if target.part == "dir":
        written = []
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeployError(f"cannot create {dest}: {exc.strerror}") from exc
        for part, filename in _PART_FILES.items():
            _write(dest / filename, live.read(part), target, private=part == "key")
            written.append(str(dest / filename))
        return written
    _write(dest, live.read(target.part), target, private=target.part in ("key", "combined"))
    return [str(dest)]


def run_command(live: LiveFiles, command: str) -> None:
    env = {**os.environ, **live.environment()}
    try:
        proc = subprocess.run(
            command,
            shell=True,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise DeployError(f"deploy command timed out after {COMMAND_TIMEOUT}s: {command}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        why = f": {tail[-1]}" if tail else ""
        raise DeployError(f"deploy command failed (exit {proc.returncode}): {command}{why}")


def deploy(live: LiveFiles, files: Sequence[FileTarget], commands: Sequence[str]) -> list[str]:
    """Write every file target, then run every command; stop at the first failure."""
    written: list[str] = []
    for target in files:
        written += deploy_file(live, target)
        crash_point("deploy:file")
    for command in commands:
        run_command(live, command)
    return written
