"""NSS databases (Chrome/Chromium on Linux, Firefox, Thunderbird) via ``certutil``.

Firefox keeps one database per profile and does not read the system store by default, so every
profile is changed, including the snap and flatpak locations. Chrome/Chromium on Linux read
``~/.pki/nssdb``, which a fresh or headless profile never creates: ``install`` creates it (empty
password, as Chromium would) so that one command is enough.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from certsmith.services.trust.base import Report, Root, first_line, run_tool

# Relative to $HOME. Profile roots hold one directory per profile.
CHROME_DB = ".pki/nssdb"
SHARED_DBS = (CHROME_DB, "snap/chromium/current/.pki/nssdb")
PROFILE_ROOTS = (
    ".mozilla/firefox",
    "snap/firefox/common/.mozilla/firefox",
    ".var/app/org.mozilla.firefox/.mozilla/firefox",
    ".thunderbird",
    "snap/thunderbird/common/.thunderbird",
    ".var/app/org.mozilla.Thunderbird/.thunderbird",
)


def _db_spec(directory: Path) -> str | None:
    if (directory / "cert9.db").is_file():
        return f"sql:{directory}"
    if (directory / "cert8.db").is_file():
        return f"dbm:{directory}"
    return None


def find_databases(home: Path | None = None) -> list[tuple[Path, str]]:
    """Every NSS database under ``home`` (default: $HOME) as (directory, certutil -d value)."""
    home = home or Path(os.environ.get("HOME") or Path.home())
    found: list[tuple[Path, str]] = []
    candidates = [home / rel for rel in SHARED_DBS]
    for rel in PROFILE_ROOTS:
        try:
            candidates += sorted(p for p in (home / rel).iterdir() if p.is_dir())
        except OSError:
            continue
    for directory in candidates:
        spec = _db_spec(directory)
        if spec is not None:
            found.append((directory, spec))
    return found


class NssStore:
    kind = "nss"

    def __init__(self, home: Path | None = None) -> None:
        self.home = home
        self.certutil = shutil.which("certutil")

    def _each(self) -> list[tuple[Path, str]] | Report:
        dbs = find_databases(self.home)
        if not dbs:
            return Report(
                "nss",
                str((self.home or Path.home()) / ".pki/nssdb"),
                "missing",
                "no NSS database (start Chrome/Chromium or Firefox once)",
            )
        if self.certutil is None:
            return Report(
                "nss",
                str(dbs[0][0]),
                "missing",
                "certutil not found (Debian/Ubuntu: libnss3-tools, Fedora: nss-tools)",
            )
        return dbs

    def _has(self, spec: str, root: Root) -> bool:
        assert self.certutil is not None
        proc = run_tool([self.certutil, "-L", "-d", spec, "-n", root.label, "-a"])
        if proc.returncode != 0:
            return False
        body = b"".join(root.pem.splitlines()[1:-1]).decode()
        return body in "".join(proc.stdout.split())

    def status(self, root: Root) -> list[Report]:
        dbs = self._each()
        if isinstance(dbs, Report):
            return [dbs]
        return [
            Report("nss", str(d), "trusted" if self._has(spec, root) else "not trusted")
            for d, spec in dbs
        ]

    def _create_chrome_db(self) -> Path | Report | None:
        """Create ``~/.pki/nssdb`` where Chrome/Chromium look for it, if it is missing and
        certutil is here; returns its directory, a failure, or None (nothing to do)."""
        if self.certutil is None:
            return None
        directory = (self.home or Path(os.environ.get("HOME") or Path.home())) / CHROME_DB
        if _db_spec(directory) is not None:
            return None
        try:
            directory.parent.mkdir(mode=0o700, exist_ok=True)
            directory.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            return Report("nss", str(directory), "failed", f"cannot create: {exc.strerror}")
        proc = run_tool([self.certutil, "-N", "--empty-password", "-d", f"sql:{directory}"])
        if proc.returncode != 0 or _db_spec(directory) is None:
            return Report("nss", str(directory), "failed", first_line(proc))
        return directory

    def install(self, root: Root) -> list[Report]:
        created = self._create_chrome_db()
        out = [created] if isinstance(created, Report) else []  # Firefox's are still done
        dbs = self._each()
        if isinstance(dbs, Report):
            return out or [dbs]
        assert self.certutil is not None
        for directory, spec in dbs:
            if self._has(spec, root):
                out.append(Report("nss", str(directory), "trusted", "already"))
                continue
            if not _writable(directory):
                out.append(Report("nss", str(directory), "read-only", "not writable by this user"))
                continue
            proc = run_tool(
                [
                    self.certutil,
                    "-A",
                    "-d",
                    spec,
                    "-t",
                    "C,,",
                    "-n",
                    root.label,
                    "-i",
                    str(root.path),
                ]
            )
            if proc.returncode != 0 or not self._has(spec, root):
                out.append(Report("nss", str(directory), "failed", first_line(proc)))
            else:
                out.append(
                    Report(
                        "nss",
                        str(directory),
                        "installed",
                        "created the database (Chrome/Chromium)" if directory == created else "",
                    )
                )
        return out

    def uninstall(self, root: Root) -> list[Report]:
        dbs = self._each()
        if isinstance(dbs, Report):
            return [dbs]
        assert self.certutil is not None
        out = []
        for directory, spec in dbs:
            if not self._has(spec, root):
                out.append(Report("nss", str(directory), "not trusted", "nothing to remove"))
                continue
            if not _writable(directory):
                out.append(Report("nss", str(directory), "read-only", "not writable by this user"))
                continue
            proc = run_tool([self.certutil, "-D", "-d", spec, "-n", root.label])
            if proc.returncode != 0 or self._has(spec, root):
                out.append(Report("nss", str(directory), "failed", first_line(proc)))
            else:
                out.append(Report("nss", str(directory), "removed"))
        return out


def _writable(directory: Path) -> bool:
    files = [directory / n for n in ("cert9.db", "key4.db", "cert8.db") if (directory / n).exists()]
    return os.access(directory, os.W_OK) and all(os.access(f, os.W_OK) for f in files)
