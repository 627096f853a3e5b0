"""The installer seam: detect the site for a name, plan certsmith's own files, then apply them
as one transaction (validate with the server's own check, reload gracefully — restart where a
reload cannot open a new listener —, prove the new configuration is live as a client sees it,
roll back byte for byte on any failure).

The user's files are read, never rewritten. certsmith writes only files it owns (their names
start with ``certsmith``) and, when it takes over a site the user enabled, moves that site's
enabling entry (a symlink, or a file in ``conf.d``) aside; ``uninstall`` puts it back.

Planning is pure: an installer turns a ``Detected`` value and ``SiteOptions`` into a ``Plan``
(a list of ``Change``); only ``Transaction`` touches the disk.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from certsmith.base import policy
from certsmith.base.model import FileTarget
from certsmith.errors import CertsmithError
from certsmith.services.servers.proof import Expectation, answers_http, prove, wait_serving
from certsmith.services.servers.workers import SETTLE_TIMEOUT, settle

KINDS = ("nginx", "apache", "lighttpd")
Kind = Literal["nginx", "apache", "lighttpd"]
COMMAND_TIMEOUT = 120
ACME_PREFIX = policy.ACME_CHALLENGE_PREFIX  # (TLS settings and HSTS: certsmith.base.policy)


class ServerError(CertsmithError):
    """A web server's configuration cannot be changed safely; nothing was changed."""


class AmbiguousSiteError(ServerError):
    """More than one block serves the name: certsmith will not guess."""


# -- configuration: where the server's files live and how it is driven ----------------------


@dataclass(frozen=True)
class ServerConfig:
    """Where one server's configuration lives and the commands that check and reload it.

    From the environment, so tests (and unusual installs) never touch /etc:
    ``CERTSMITH_<KIND>_ROOT`` (config root), ``CERTSMITH_<KIND>_CMD`` (the binary or control
    script, with options, used to parse and validate), ``CERTSMITH_<KIND>_RELOAD`` (a shell
    command that reloads the running server gracefully) and ``CERTSMITH_<KIND>_RESTART`` (one
    that stops and starts it, for a change a graceful reload cannot apply — a new listener on
    a server that has dropped its privileges — and to start it again if it stopped)."""

    kind: Kind
    root: Path
    cmd: tuple[str, ...]
    reload: str
    restart: str = ""

    @classmethod
    def from_env(
        cls,
        kind: Kind,
        env: dict[str, str] | None = None,
        defaults: Callable[[Path], tuple[str, str]] | None = None,
        default_root: str = "",
        default_restart: Callable[[Path], str] | None = None,
    ) -> ServerConfig:
        env = dict(os.environ) if env is None else env
        prefix = f"CERTSMITH_{kind.upper()}_"
        root = Path(env.get(prefix + "ROOT") or default_root).absolute()
        default_cmd, default_reload = defaults(root) if defaults else ("", "")
        cmd = tuple(shlex.split(env.get(prefix + "CMD") or default_cmd))
        reload = env.get(prefix + "RELOAD") or default_reload
        restart = (
            env.get(prefix + "RESTART")
            or (default_restart(root) if default_restart else "")
            or reload
        )
        return cls(kind, root, cmd, reload, restart)

    def env_vars(self) -> dict[str, str]:
        """The variables that reproduce this configuration (saved for renewals)."""
        prefix = f"CERTSMITH_{self.kind.upper()}_"
        return {
            prefix + "ROOT": str(self.root),
            prefix + "CMD": shlex.join(self.cmd),
            prefix + "RELOAD": self.reload,
            prefix + "RESTART": self.restart,
        }


def run(argv: Sequence[str], what: str) -> subprocess.CompletedProcess[str]:
    """Run a server command; a missing binary is a clear error, not a traceback."""
    try:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            check=False,
            timeout=COMMAND_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise ServerError(
            f"cannot run {what}: {argv[0]} not found (is the server installed?)"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise ServerError(f"{what} did not finish in {COMMAND_TIMEOUT}s") from exc


def run_shell(command: str, what: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command,
            shell=True,
            capture_output=True,
            text=True,
            check=False,
            timeout=COMMAND_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise ServerError(f"{what} did not finish in {COMMAND_TIMEOUT}s: {command}") from exc


def last_lines(proc: subprocess.CompletedProcess[str], n: int = 3) -> str:
    lines = [
        ln.strip()
        for ln in (proc.stderr + "\n" + proc.stdout).splitlines()
        if ln.strip()
        and "syntax is ok" not in ln
        and "test is successful" not in ln
        and ln.strip() != "Syntax OK"
    ]
    errors = [ln for ln in lines if "emerg" in ln or "rror" in ln or "fail" in ln.lower()]
    return " | ".join((errors or lines)[-n:]) or f"exit {proc.returncode}"


def last_lines_text(text: str, n: int = 3) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) or "no output"


# -- what an installer sees and produces ------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One server block / virtual host / conditional in the user's configuration."""

    file: str
    line: int
    names: tuple[str, ...]
    ports: tuple[int, ...] = ()
    tls: bool = False
    body: str = ""  # its content, re-rendered for carrying over (nginx, Apache)
    listens: tuple[str, ...] = ()  # its listen addresses as written (nginx: with parameters)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Detected:
    """What the server's configuration says about the names, before any change."""

    blocks: tuple[Block, ...] = ()  # the user's blocks serving one of the names
    default: Block | None = None  # the block answering unmatched names on the HTTP port
    takeover: str | None = None  # the enabling entry of the user's site certsmith replaces
    version: str = ""
    facts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SiteOptions:
    """What ``certsmith install`` (or ``get --SERVER``) asks for one certificate."""

    name: str
    names: tuple[str, ...]
    live_dir: str
    tls: bool = True  # False: HTTP only, to answer the first challenge
    redirect: int | None = None  # 301 | 302 | 307 | 308
    hsts: int | None = None  # max-age seconds
    proxy_to: str | None = None
    http_port: int = 80
    https_port: int = 443
    listen_addresses: tuple[str, ...] = ()  # --listen-address; empty: as the user's site
    challenge_dir: str = ""  # empty: no HTTP-01 mapping (a dns-01 lineage needs none)
    ocsp: bool = False  # the certificate names an OCSP responder
    server_user: str = ""
    server_group: str = ""

    def https_base(self, host_expr: str) -> str:
        port = "" if self.https_port == 443 else f":{self.https_port}"
        return f"https://{host_expr}{port}"


@dataclass(frozen=True)
class Change:
    """One path certsmith writes (``data``), links (``link``) or moves aside (``move_to``);
    with none of them set, the path is removed."""

    path: str
    data: bytes | None = None
    link: str | None = None
    move_to: str | None = None
    mode: int = 0o644

    @property
    def removes(self) -> bool:
        return self.data is None and self.link is None and self.move_to is None


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    notes: tuple[str, ...] = ()
    deploy_files: tuple[FileTarget, ...] = ()
    http_listens: tuple[str, ...] = ()  # where the site answers after the change (host:port)
    https_listens: tuple[str, ...] = ()

    def owned(self) -> list[str]:
        """Paths certsmith creates (what uninstall removes)."""
        out = [c.path for c in self.changes if c.data is not None or c.link is not None]
        return out + [t.path for t in self.deploy_files]

    def moved(self) -> dict[str, str]:
        return {c.path: c.move_to for c in self.changes if c.move_to}


class Installer(Protocol):
    kind: Kind
    config: ServerConfig

    def version(self) -> str: ...

    def check(self) -> None:
        """Run the server's own configuration check; raise ServerError with its message."""

    def detect(self, names: Sequence[str], http_port: int, https_port: int) -> Detected: ...

    def plan(self, detected: Detected, opts: SiteOptions) -> Plan:
        """Pure: certsmith's files for this site."""

    def server_identity(self) -> tuple[str, str]:
        """(user, group) the server's workers run as, '' where unknown."""

    def listeners(self) -> frozenset[str]:
        """The addresses the configuration on disk listens on, where a graceful reload cannot
        open new ones (the server has dropped its privileges): a change that adds one needs
        a restart. Empty where the reloading process binds as root (nginx, Apache)."""

    def accepting_workers(self) -> frozenset[int]:
        """Worker processes that take new connections for the running configuration and
        may go on doing so for a moment after a graceful reload returns (nginx; see
        ``workers``). After a reload the transaction waits until none of those seen before
        it still accepts. Empty where a reload leaves no such window."""


# -- the transaction --------------------------------------------------------------------------


@dataclass
class _Saved:
    path: Path
    kind: Literal["missing", "file", "link"]
    data: bytes = b""
    link: str = ""
    mode: int = 0o644
    uid: int = -1
    gid: int = -1


def _snapshot(path: Path) -> _Saved:
    if path.is_symlink():
        return _Saved(path, "link", link=os.readlink(path))
    if not path.exists():
        return _Saved(path, "missing")
    st = path.stat()
    return _Saved(
        path, "file", data=path.read_bytes(), mode=st.st_mode & 0o7777, uid=st.st_uid, gid=st.st_gid
    )


def _restore(saved: _Saved) -> None:
    path = saved.path
    if path.is_symlink() or path.is_file():
        path.unlink()
    if saved.kind == "link":
        path.symlink_to(saved.link)
    elif saved.kind == "file":
        tmp = path.with_name(f".{path.name}.certsmith-restore")
        tmp.write_bytes(saved.data)
        os.chown(tmp, saved.uid, saved.gid)
        os.chmod(tmp, saved.mode)
        os.replace(tmp, path)


def _write(change: Change) -> None:
    path = Path(change.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if change.link is not None:
        if path.is_symlink() or path.exists():
            path.unlink()
        path.symlink_to(change.link)
    elif change.data is not None:
        tmp = path.with_name(f".{path.name}.certsmith-tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, change.mode)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), change.mode)
            fh.write(change.data)
        os.replace(tmp, path)
    elif change.move_to is not None:
        dest = Path(change.move_to)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(path, dest)
    elif path.is_symlink() or path.exists():
        path.unlink()


class Transaction:
    """Apply a plan: snapshot every path it touches, write, validate, reload (restart when the
    change adds a listener a graceful reload cannot open), then prove the new configuration
    is live (``expect``: one per address the site listens on, all must hold). On any failure
    put every path back byte for byte, bring the server back to it, and check it serves again
    (on the first address): the message says what is true."""

    def __init__(self, installer: Installer, expect: Sequence[Expectation] = ()) -> None:
        self.installer = installer
        self.expect = tuple(expect)

    def apply(
        self, plan: Plan, prepare: Callable[[], None] | None = None, also_save: Sequence[str] = ()
    ) -> None:
        """``prepare`` runs first (it may write ``also_save`` paths, restored on failure)."""
        paths: list[Path] = [Path(p) for p in also_save]
        for change in plan.changes:
            paths.append(Path(change.path))
            if change.move_to:
                paths.append(Path(change.move_to))
        saved = [_snapshot(p) for p in dict.fromkeys(paths)]
        created_dirs = _missing_dirs(paths)
        before = self.installer.listeners()
        activated = False
        try:
            if prepare:
                prepare()
            for change in plan.changes:
                _write(change)
            self.installer.check()
            restart = bool(self.installer.listeners() - before)
            activated = True
            self._activate(restart)
        except (CertsmithError, OSError) as exc:
            _rollback_files(saved, created_dirs)
            if isinstance(exc, OSError):
                detail = f"cannot write {exc.filename}: {exc.strerror}"
            else:
                detail = str(exc)
            if not activated:  # the running server never saw the new files
                tail = (
                    "nothing was changed"
                    if isinstance(exc, OSError)
                    else "the previous configuration was restored"
                )
                raise ServerError(f"{detail}; {tail}") from exc
            raise ServerError(f"{detail}; {self._recover()}") from exc

    def _activate(self, restart: bool) -> None:
        cfg = self.installer.config
        command, verb = (cfg.restart, "restart") if restart else (cfg.reload, "reload")
        old_workers = self.installer.accepting_workers()
        proc = run_shell(command, f"{cfg.kind} {verb}")
        if proc.returncode != 0:
            raise ServerError(f"{cfg.kind} {verb} failed ({command}): {last_lines(proc)}")
        if not self.expect:
            return
        shortfall = prove(self.expect)
        if shortfall is not None:
            raise ServerError(
                f"{cfg.kind} {verb}ed, but the new configuration is not live: {shortfall}"
            )
        # Live for new workers; old ones may still take a connection for a moment (a CA
        # validating at once would see the old configuration): wait until they stop.
        if not settle(self.installer.accepting_workers, old_workers):
            raise ServerError(
                f"{cfg.kind} {verb}ed, but workers of the previous configuration "
                f"still accept connections after {SETTLE_TIMEOUT:.0f}s"
            )

    def _recover(self) -> str:
        """Bring the running server back to the restored files (a reload; a restart if it
        no longer answers) and say whether it serves again."""
        cfg = self.installer.config
        if not self.expect:  # nothing to ask the server: only the files are known
            with contextlib.suppress(CertsmithError):
                run_shell(cfg.reload, f"{cfg.kind} reload")
            return "the previous configuration was restored"
        expect = self.expect[0]
        commands = [cfg.reload] if answers_http(expect.host, expect.http_port) else []
        if cfg.restart not in commands:
            commands.append(cfg.restart)
        for command in commands:
            with contextlib.suppress(CertsmithError):
                if run_shell(command, f"{cfg.kind} rollback").returncode == 0 and wait_serving(
                    expect.host, expect.http_port
                ):
                    return (
                        f"the previous configuration was restored and {cfg.kind} answers "
                        f"on {expect.http_where} again (verified)"
                    )
        if answers_http(expect.host, expect.http_port):
            return (
                f"the previous configuration was restored on disk; {cfg.kind} answers on "
                f"{expect.http_where}, but could not be reloaded ({cfg.reload})"
            )
        return (
            f"the previous configuration was restored, but {cfg.kind} is not running "
            f"(nothing answers on {expect.http_where}): start it with '{cfg.restart}'"
        )


def _rollback_files(saved: Sequence[_Saved], created_dirs: Sequence[Path]) -> None:
    for item in reversed(saved):
        with contextlib.suppress(OSError):
            _restore(item)
    for d in created_dirs:
        with contextlib.suppress(OSError):
            d.rmdir()


def _missing_dirs(paths: Sequence[Path]) -> list[Path]:
    """Directories that do not exist yet, deepest first (removed again on rollback)."""
    out: list[Path] = []
    for p in paths:
        d = p.parent
        while not d.exists() and d not in out:
            out.append(d)
            d = d.parent
    return sorted(out, key=lambda x: len(x.parts), reverse=True)


# -- presenting a plan ------------------------------------------------------------------------


def describe(plan: Plan) -> str:
    """The files a plan writes and the unified diff against what is there now."""
    out: list[str] = []
    for change in plan.changes:
        path = Path(change.path)
        if change.link is not None:
            out.append(f"link {change.path} -> {change.link}")
            continue
        if change.move_to is not None:
            out.append(f"move {change.path} -> {change.move_to} (disabled; uninstall restores)")
            continue
        old = ""
        if path.is_file():
            try:
                old = path.read_text()
            except (OSError, UnicodeDecodeError):
                old = "<unreadable>\n"
        new = change.data.decode() if change.data is not None else ""
        if change.removes:
            out.append(f"remove {change.path}")
        diff = difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=change.path if old else "/dev/null",
            tofile=change.path if new else "/dev/null",
        )
        text = "".join(diff)
        if text:
            out.append(text.rstrip("\n"))
        elif not change.removes:
            out.append(f"unchanged {change.path}")
    for target in plan.deploy_files:
        out.append(f"deploy {target.part} -> {target.path}")
    for note in plan.notes:
        out.append(f"note: {note}")
    return "\n".join(out)


def which(name: str, fallback: str) -> str:
    return shutil.which(name) or fallback


def snapshot_tree(root: Path) -> dict[str, tuple[str, bytes | str, int]]:
    """Every file and link under ``root`` (for tests and for 'nothing changed' checks)."""
    out: dict[str, tuple[str, bytes | str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in sorted(dirnames + filenames):
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p), 0)
            elif p.is_file():
                out[rel] = ("file", p.read_bytes(), p.stat().st_mode & 0o7777)
            elif p.is_dir():
                out[rel] = ("dir", "", p.stat().st_mode & 0o7777)
    return out
