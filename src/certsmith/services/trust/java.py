"""Java's ``cacerts`` keystore via ``keytool`` (used only when keytool is on PATH)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from certsmith.services.trust.base import Report, Root, first_line, run_tool

STOREPASS = "changeit"  # the JDK's default cacerts password


def find_cacerts(keytool: str) -> Path | None:
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]) / "lib" / "security" / "cacerts")
    java_home = Path(os.path.realpath(keytool)).parent.parent
    candidates += [
        java_home / "lib" / "security" / "cacerts",
        java_home / "jre" / "lib" / "security" / "cacerts",
    ]
    for path in candidates:
        if path.exists():
            return Path(os.path.realpath(path))
    return None


class JavaStore:
    kind = "java"

    def __init__(self) -> None:
        self.keytool = shutil.which("keytool")

    def _where(self) -> tuple[str, Path] | Report:
        if self.keytool is None:
            return Report("java", "-", "missing", "keytool not found")
        cacerts = find_cacerts(self.keytool)
        if cacerts is None:
            return Report("java", self.keytool, "missing", "no cacerts keystore found")
        return self.keytool, cacerts

    def _aliases(self, keytool: str, cacerts: Path, root: Root) -> list[str] | None:
        """Aliases under which the root is in the keystore (by SHA-256), None if unreadable."""
        proc = run_tool([keytool, "-list", "-keystore", str(cacerts), "-storepass", STOREPASS])
        if proc.returncode != 0:
            return None
        want = ":".join(root.sha256[i : i + 2] for i in range(0, 64, 2)).upper()
        aliases = []
        alias = ""
        for line in proc.stdout.splitlines():
            if "," in line and ("trustedCertEntry" in line or "PrivateKeyEntry" in line):
                alias = line.split(",")[0].strip()
            elif want in line.upper():
                aliases.append(alias)
        return aliases

    def status(self, root: Root) -> list[Report]:
        where = self._where()
        if isinstance(where, Report):
            return [where]
        keytool, cacerts = where
        aliases = self._aliases(keytool, cacerts, root)
        if aliases is None:
            return [Report("java", str(cacerts), "failed", "cannot read the keystore")]
        return [Report("java", str(cacerts), "trusted" if aliases else "not trusted")]

    def install(self, root: Root) -> list[Report]:
        where = self._where()
        if isinstance(where, Report):
            return [where]
        keytool, cacerts = where
        aliases = self._aliases(keytool, cacerts, root)
        if aliases:
            return [Report("java", str(cacerts), "trusted", "already")]
        if not os.access(cacerts, os.W_OK):
            return [Report("java", str(cacerts), "read-only", "not writable by this user")]
        proc = run_tool(
            [
                keytool,
                "-importcert",
                "-noprompt",
                "-trustcacerts",
                "-alias",
                root.label,
                "-file",
                str(root.path),
                "-keystore",
                str(cacerts),
                "-storepass",
                STOREPASS,
            ]
        )
        if proc.returncode != 0:
            return [Report("java", str(cacerts), "failed", first_line(proc))]
        return [Report("java", str(cacerts), "installed")]

    def uninstall(self, root: Root) -> list[Report]:
        where = self._where()
        if isinstance(where, Report):
            return [where]
        keytool, cacerts = where
        aliases = self._aliases(keytool, cacerts, root)
        if not aliases:
            return [Report("java", str(cacerts), "not trusted", "nothing to remove")]
        if not os.access(cacerts, os.W_OK):
            return [Report("java", str(cacerts), "read-only", "not writable by this user")]
        for alias in aliases:
            proc = run_tool(
                [
                    keytool,
                    "-delete",
                    "-alias",
                    alias,
                    "-keystore",
                    str(cacerts),
                    "-storepass",
                    STOREPASS,
                ]
            )
            if proc.returncode != 0:
                return [Report("java", str(cacerts), "failed", first_line(proc))]
        return [Report("java", str(cacerts), "removed")]
