"""The operating system's trust store: anchor file + the distribution's refresh command.

OpenSSL (curl, Python's ``ssl``, wget, git...) reads the bundle this produces.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from certsmith.base.store.fs import atomic_write
from certsmith.services.trust.base import Report, Root, first_line, run_tool


@dataclass(frozen=True)
class Flavour:
    name: str
    anchors: Path
    suffix: str
    refresh: tuple[str, ...]
    bundle: Path
    # Debian's update-ca-certificates links each anchor into this directory (name and hash
    # links) and, without --fresh, never removes the links of a deleted anchor. We remove ours
    # ourselves rather than use --fresh, which rebuilds every link on the machine.
    links: Path | None = None
    # ...and tells these hooks (Java's cacerts) "+link" / "-link"; for the removal it cannot
    # see, we tell them ourselves.
    hooks: Path | None = None


FLAVOURS = (
    Flavour(
        "debian",
        Path("/usr/local/share/ca-certificates"),
        ".crt",
        ("update-ca-certificates",),
        Path("/etc/ssl/certs/ca-certificates.crt"),
        Path("/etc/ssl/certs"),
        Path("/etc/ca-certificates/update.d"),
    ),
    Flavour(
        "fedora",
        Path("/etc/pki/ca-trust/source/anchors"),
        ".pem",
        ("update-ca-trust", "extract"),
        Path("/etc/pki/tls/certs/ca-bundle.crt"),
    ),
    Flavour(
        "arch",
        Path("/etc/ca-certificates/trust-source/anchors"),
        ".crt",
        ("update-ca-trust",),
        Path("/etc/ssl/certs/ca-certificates.crt"),
    ),
    Flavour(
        "suse",
        Path("/etc/pki/trust/anchors"),
        ".pem",
        ("update-ca-certificates",),
        Path("/etc/ssl/ca-bundle.pem"),
    ),
)


def detect() -> Flavour | None:
    for flavour in FLAVOURS:
        if flavour.anchors.is_dir() and shutil.which(flavour.refresh[0]):
            return flavour
    return None


def bundle_has(bundle: Path, root: Root) -> bool:
    try:
        data = bundle.read_bytes()
    except OSError:
        return False
    body = b"".join(root.pem.splitlines()[1:-1])
    return body in b"".join(data.split())


class SystemStore:
    kind = "system"

    def __init__(self, flavour: Flavour | None = None, *, use_trust_cmd: bool = True) -> None:
        self.flavour = flavour or detect()
        # Without a known anchors directory, p11-kit's ``trust anchor`` still works (Arch & co).
        self.trust_cmd = shutil.which("trust") if use_trust_cmd and not self.flavour else None

    def _name(self) -> str:
        return f"system ({self.flavour.name})" if self.flavour else "system (p11-kit)"

    def _anchor(self, root: Root) -> Path:
        assert self.flavour is not None
        return self.flavour.anchors / f"{root.label}{self.flavour.suffix}"

    def _missing(self) -> Report:
        return Report(
            "system",
            "-",
            "missing",
            "no update-ca-certificates, update-ca-trust or trust command found",
        )

    def status(self, root: Root) -> list[Report]:
        if self.flavour is None:
            if self.trust_cmd is None:
                return [self._missing()]
            proc = run_tool([self.trust_cmd, "list", "--filter=ca-anchors"])
            found = root.label in proc.stdout or _cn_listed(proc.stdout, root)
            return [Report(self._name(), "p11-kit", "trusted" if found else "not trusted")]
        anchor = self._anchor(root)
        trusted = anchor.is_file() and bundle_has(self.flavour.bundle, root)
        return [
            Report(
                self._name(),
                str(anchor if anchor.exists() else self.flavour.anchors),
                "trusted" if trusted else "not trusted",
            )
        ]

    def install(self, root: Root) -> list[Report]:
        if self.flavour is None:
            return self._trust_anchor(root, remove=False)
        anchor = self._anchor(root)
        where = str(anchor)
        if (
            anchor.is_file()
            and anchor.read_bytes() == root.pem
            and bundle_has(self.flavour.bundle, root)
        ):
            return [Report(self._name(), where, "trusted", "already")]
        if not os.access(self.flavour.anchors, os.W_OK):
            return [Report(self._name(), where, "read-only", "run as root to change it")]
        try:
            atomic_write(anchor, root.pem, 0o644)
        except OSError as exc:
            return [Report(self._name(), where, "failed", f"cannot write: {exc.strerror}")]
        proc = run_tool(self.flavour.refresh)
        if proc.returncode != 0 or not bundle_has(self.flavour.bundle, root):
            return [Report(self._name(), where, "failed", first_line(proc))]
        return [Report(self._name(), where, "installed")]

    def uninstall(self, root: Root) -> list[Report]:
        if self.flavour is None:
            return self._trust_anchor(root, remove=True)
        anchor = self._anchor(root)
        where = str(anchor)
        if not anchor.exists() and not bundle_has(self.flavour.bundle, root):
            return [Report(self._name(), where, "not trusted", "nothing to remove")]
        if not os.access(self.flavour.anchors, os.W_OK):
            return [Report(self._name(), where, "read-only", "run as root to change it")]
        try:
            anchor.unlink(missing_ok=True)
            if self.flavour.links is not None:
                _remove_links(self.flavour.links, anchor)
        except OSError as exc:
            return [Report(self._name(), where, "failed", f"cannot remove: {exc.strerror}")]
        proc = run_tool(self.flavour.refresh)
        if proc.returncode != 0 or bundle_has(self.flavour.bundle, root):
            return [Report(self._name(), where, "failed", first_line(proc))]
        if self.flavour.hooks is not None and self.flavour.links is not None:
            for hook in _hooks(self.flavour.hooks):
                removed = f"-{self.flavour.links / (anchor.stem + '.pem')}\n"
                proc = run_tool([str(hook)], stdin=removed)
                if proc.returncode != 0:
                    return [Report(self._name(), where, "failed", first_line(proc))]
        return [Report(self._name(), where, "removed")]

    def _trust_anchor(self, root: Root, *, remove: bool) -> list[Report]:
        if self.trust_cmd is None:
            return [self._missing()]
        current = self.status(root)[0].state == "trusted"
        if current != remove:
            return [
                Report(
                    self._name(),
                    "p11-kit",
                    "trusted" if current else "not trusted",
                    "already" if current else "nothing to remove",
                )
            ]
        proc = run_tool(
            [self.trust_cmd, "anchor", "--remove" if remove else "--store", str(root.path)]
        )
        if proc.returncode != 0:
            return [Report(self._name(), "p11-kit", "failed", first_line(proc))]
        return [Report(self._name(), "p11-kit", "removed" if remove else "installed")]


def _hooks(directory: Path) -> list[Path]:
    """What ``run-parts --test`` lists: executable files with plain names, sorted."""
    import re

    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return []
    return [
        p
        for p in entries
        if re.fullmatch(r"[A-Za-z0-9_-]+", p.name) and p.is_file() and os.access(p, os.X_OK)
    ]


def _remove_links(directory: Path, anchor: Path) -> None:
    """Remove the links update-ca-certificates made for ``anchor``: ``<stem>.pem`` -> anchor,
    and the OpenSSL hash link ``xxxxxxxx.N`` -> ``<stem>.pem``."""
    name_link = directory / f"{anchor.stem}.pem"
    for entry in os.scandir(directory):
        if entry.is_symlink():
            target = os.readlink(entry.path)
            if target in (str(anchor), name_link.name, str(name_link)):
                os.unlink(entry.path)
    if name_link.is_symlink():
        name_link.unlink()


def _cn_listed(listing: str, root: Root) -> bool:
    from certsmith.base import certder

    subject = certder.parse(root.der).subject
    return any(part and part in listing for part in [_cn(subject)])


def _cn(subject: bytes) -> str:
    from certsmith.base import der

    for _t, rdn, _r in der.children(der.read(subject)[1]):
        for _t2, atv, _r2 in der.children(rdn):
            items = list(der.children(atv))
            if items[0][2] == der.oid("2.5.4.3"):
                return items[1][1].decode("utf-8", "replace")
    return ""
