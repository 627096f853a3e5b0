"""Run ``certsmith renew`` twice a day: a systemd timer, or a cron entry where systemd is absent.

The pure half renders what gets installed (unit files, cron lines, a user crontab with our block
merged in) and parses it back; the thin I/O half (:class:`Host`, :func:`install`, :func:`remove`,
:func:`status`) writes files and calls ``systemctl`` / ``crontab``.

Three modes:

- ``systemd``: ``certsmith.service`` (oneshot) + ``certsmith.timer`` in /etc/systemd/system;
  used as root when systemd is running (``/run/systemd/system`` exists, as ``sd_booted()``).
- ``cron``: ``/etc/cron.d/certsmith``; used as root without systemd.
- ``crontab``: a marked block in the user's own crontab; used by a non-root user, who can write
  neither directory.

Nothing renews unless something runs the job: :attr:`Host.scheduler_missing` says when systemd
is not PID 1 (for the timer) or no cron daemon process runs (for cron and crontabs), and
install/status report it as a warning. Not an error: the files are right, and an image being
built or a container whose entrypoint starts cron later runs them as soon as cron is up.

Environment overrides, for tests and unusual hosts: ``CERTSMITH_INIT=systemd|cron|crontab``,
``CERTSMITH_SYSTEMD_DIR``, ``CERTSMITH_CRON_DIR``. ``systemctl`` is only called when systemd is
running and the units went to the real system directory, so a test never touches the host.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from certsmith.base.store.fs import atomic_write
from certsmith.errors import CertsmithError, UsageError

Mode = Literal["systemd", "cron", "crontab"]
MODES: tuple[Mode, ...] = ("systemd", "cron", "crontab")

SERVICE = "certsmith.service"
TIMER = "certsmith.timer"
CRON_FILE = "certsmith"  # cron.d ignores names with a dot in them
SYSTEMD_DIR = Path("/etc/systemd/system")
CRON_DIR = Path("/etc/cron.d")

# Twice a day, as Let's Encrypt recommends; the random delay spreads clients over the day so
# the CA does not see everyone at midnight.
ON_CALENDAR = "*-*-* 00,12:00:00"
RANDOMIZED_DELAY = "12h"
# Cron has no random delay: a sleep of 0..3570 s (one random byte * 14) before renewing.
# od is in coreutils; /bin/sh (dash) has no $RANDOM; '%' would need escaping in cron.
CRON_SLEEP = "sleep $(( $(od -An -N1 -tu1 /dev/urandom) * 14 ))"

MARKER = "# Written by 'certsmith schedule install'; 'certsmith schedule remove' deletes it."
BEGIN = "# BEGIN certsmith schedule (managed by 'certsmith schedule install|remove')"
END = "# END certsmith schedule"
CRON_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_CRON_TIMES = re.compile(r"^(\d{1,2}) (\d{1,2}),(\d{1,2}) \* \* \* ")


class ScheduleError(CertsmithError):
    """The timer or cron entry could not be installed, removed or read."""


# -- pure: what to run, and how it is written down ----------------------------------------------


@dataclass(frozen=True)
class CronTime:
    """Minute and first hour of the twice-daily run (the second is 12 hours later)."""

    minute: int
    hour: int

    def __post_init__(self) -> None:
        if not (0 <= self.minute <= 59 and 0 <= self.hour <= 11):
            raise ValueError(f"bad cron time {self.minute} {self.hour}")

    @classmethod
    def random(cls) -> CronTime:
        return cls(secrets.randbelow(60), secrets.randbelow(12))

    def fields(self) -> str:
        return f"{self.minute} {self.hour},{self.hour + 12} * * *"


def renew_argv(executable: Sequence[str], home: Path | None) -> tuple[str, ...]:
    """The command the timer runs; ``home=None`` means the built-in default (no ``--home``)."""
    argv = list(executable)
    if any("\n" in a or "\r" in a for a in [*argv, str(home or "")]):
        raise UsageError("a path with a line break cannot go into a timer or cron entry")
    if home is not None:
        argv += ["--home", str(home)]
    # --quiet is the global option (before the command): renew prints only failures.
    return (*argv, "--quiet", "renew")


_SAFE = re.compile(r"^[A-Za-z0-9_./:@+=,-]+$")


def systemd_quote(arg: str) -> str:
    """Quote one word for ``ExecStart=``: specifiers (%) and variables ($) are taken literally."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if _SAFE.match(arg):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def shell_command(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def cron_command(argv: Sequence[str]) -> str:
    """A cron command field: run ``argv`` after the random sleep, only while it still exists."""
    # An unescaped % in a cron command is a newline.
    exe = shlex.quote(argv[0]).replace("%", "\\%")
    run = shell_command(argv).replace("%", "\\%")
    return f"test -x {exe} && {CRON_SLEEP} && {run}"


def render_service(argv: Sequence[str]) -> str:
    return (
        f"{MARKER}\n"
        "[Unit]\n"
        "Description=Renew certsmith certificates that are due\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={' '.join(systemd_quote(a) for a in argv)}\n"
    )


def render_timer() -> str:
    return (
        f"{MARKER}\n"
        "[Unit]\n"
        "Description=Run 'certsmith renew' twice a day\n"
        "\n"
        "[Timer]\n"
        f"OnCalendar={ON_CALENDAR}\n"
        f"RandomizedDelaySec={RANDOMIZED_DELAY}\n"
        # A run missed while the machine was off happens at the next boot.
        "Persistent=true\n"
        "\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )


def render_cron_file(argv: Sequence[str], when: CronTime, user: str = "root") -> str:
    """``/etc/cron.d/certsmith``: with a user field, unlike a personal crontab."""
    return f"{MARKER}\nSHELL=/bin/sh\n{CRON_PATH}\n{when.fields()} {user} {cron_command(argv)}\n"


def render_crontab_block(argv: Sequence[str], when: CronTime) -> str:
    return f"{BEGIN}\n{when.fields()} {cron_command(argv)}\n{END}\n"


def merge_crontab(existing: str, block: str | None) -> str:
    """``existing`` without our block, then ``block`` (if any); every other line is kept as is."""
    kept: list[str] = []
    inside = False
    lines = existing.split("\n")
    if lines[-1] == "":
        lines.pop()
    for line in lines:
        if line == BEGIN:
            inside = True
        elif line == END and inside:
            inside = False
        elif not inside:
            kept.append(line)
    # A crontab whose last line lacks a newline loses that line: every kept line gets one.
    return "".join(line + "\n" for line in kept) + (block or "")


def crontab_block(text: str) -> str | None:
    """Our block inside a crontab, or None."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if BEGIN not in lines:
        return None
    start = lines.index(BEGIN)
    end = lines.index(END, start) + 1 if END in lines[start:] else len(lines)
    return "".join(line + "\n" for line in lines[start:end])


def parse_cron_time(text: str | None) -> CronTime | None:
    """The run time in a cron file or crontab block we wrote, so a re-install keeps it."""
    for line in (text or "").splitlines():
        m = _CRON_TIMES.match(line)
        if m and int(m.group(3)) == int(m.group(2)) + 12:
            try:
                return CronTime(int(m.group(1)), int(m.group(2)))
            except ValueError:
                return None
    return None


# -- I/O: the host we install on -----------------------------------------------------------------

# (argv, stdin text) -> result; tests plug in a double that records the calls.
Runner = Callable[[Sequence[str], "str | None"], "subprocess.CompletedProcess[str]"]


def _run(argv: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=60, check=False
        )
    except FileNotFoundError:
        return subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(list(argv), 124, "", f"{argv[0]}: timed out")


# Process names of the cron daemons that read /etc/cron.d and crontabs (Debian's cron, cronie's
# and dcron's crond, fcron, anacron, and busybox's applet run as "busybox crond").
CRON_DAEMONS = frozenset({"cron", "crond", "fcron", "anacron"})


def cron_daemon_running(proc: Path = Path("/proc")) -> bool:
    """Whether a cron daemon runs on this machine, from the process table."""
    try:
        pids = [p for p in proc.iterdir() if p.name.isdigit()]
    except OSError:
        return False
    for pid in pids:
        try:
            comm = (pid / "comm").read_text().strip()
            if comm in CRON_DAEMONS:
                return True
            if comm == "busybox":
                argv = (pid / "cmdline").read_bytes().split(b"\0")
                if len(argv) > 1 and argv[1] == b"crond":
                    return True
        except OSError:  # the process ended while we looked, or is not ours to read
            continue
    return False


@dataclass(frozen=True)
class Host:
    """Where and how to install; :meth:`detect` reads the real machine and the overrides."""

    mode: Mode
    systemd_running: bool
    cron_running: bool = True
    systemd_dir: Path = SYSTEMD_DIR
    cron_dir: Path = CRON_DIR
    run: Runner = field(default=_run, compare=False)

    @classmethod
    def detect(cls, env: Mapping[str, str] | None = None) -> Host:
        env = os.environ if env is None else env
        running = os.path.isdir("/run/systemd/system")
        forced = env.get("CERTSMITH_INIT", "")
        if forced and forced not in MODES:
            raise UsageError(f"CERTSMITH_INIT={forced!r}: use one of {', '.join(MODES)}")
        mode: Mode
        if forced:
            mode = forced  # type: ignore[assignment]
        elif os.geteuid() != 0:
            mode = "crontab"
        else:
            mode = "systemd" if running else "cron"
        return cls(
            mode=mode,
            systemd_running=running,
            cron_running=mode != "systemd" and cron_daemon_running(),
            systemd_dir=Path(env.get("CERTSMITH_SYSTEMD_DIR") or SYSTEMD_DIR),
            cron_dir=Path(env.get("CERTSMITH_CRON_DIR") or CRON_DIR),
        )

    @property
    def scheduler_missing(self) -> str | None:
        """Why nothing would run what :func:`install` writes, or None when something will."""
        if self.mode == "systemd":
            if self.systemd_running:
                return None
            return (
                "systemd is not running on this machine (PID 1 is not systemd): "
                "certificates will NOT renew until it runs and "
                f"'systemctl enable --now {TIMER}' has started the timer"
            )
        if self.cron_running:
            return None
        return (
            "no cron daemon (cron, crond, anacron) is running on this machine and systemd "
            "is not PID 1: certificates will NOT renew until one is started "
            "(e.g. 'service cron start', or start crond in the container's entrypoint)"
        )

    @property
    def manages_systemd(self) -> bool:
        """Whether to call systemctl: only for the real manager and its real unit directory."""
        return self.systemd_running and self.systemd_dir == SYSTEMD_DIR

    def systemctl(self, *args: str) -> None:
        result = self.run(["systemctl", *args], None)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise ScheduleError(
                f"systemctl {' '.join(args)} failed: "
                f"{detail[0] if detail else f'exit {result.returncode}'}"
            )

    def read_crontab(self) -> str:
        result = self.run(["crontab", "-l"], None)
        if result.returncode == 127:
            raise ScheduleError("no 'crontab' command: install cron, or run as root")
        if result.returncode != 0:
            # "no crontab for <user>" is the normal answer for an empty crontab.
            if "no crontab" in result.stderr:
                return ""
            raise ScheduleError(f"crontab -l failed: {result.stderr.strip() or 'error'}")
        return result.stdout

    def write_crontab(self, text: str) -> None:
        result = self.run(["crontab", "-"], text)
        if result.returncode == 127:
            raise ScheduleError("no 'crontab' command: install cron, or run as root")
        if result.returncode != 0:
            raise ScheduleError(f"crontab - failed: {result.stderr.strip() or 'error'}")

    @property
    def service_path(self) -> Path:
        return self.systemd_dir / SERVICE

    @property
    def timer_path(self) -> Path:
        return self.systemd_dir / TIMER

    @property
    def cron_path(self) -> Path:
        return self.cron_dir / CRON_FILE


def builtin_home() -> Path:
    """The state directory a timer gets without ``--home`` (no environment variables there)."""
    if os.geteuid() == 0:
        return Path("/var/lib/certsmith")
    return Path.home() / ".local" / "share" / "certsmith"


def certsmith_executable() -> tuple[str, ...]:
    """An absolute command that starts this certsmith, as the timer will run it.

    Symlinks are kept (``/usr/local/bin/certsmith`` survives the venv being rebuilt).
    """
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "certsmith" and os.access(argv0, os.X_OK):
        return (os.path.abspath(argv0),)
    # `python -m certsmith`: the console script sits next to the interpreter in a venv.
    beside = Path(sys.executable).parent / "certsmith"
    if os.access(beside, os.X_OK):
        return (str(beside.absolute()),)
    found = shutil.which("certsmith")
    if found:
        return (os.path.abspath(found),)
    return (os.path.abspath(sys.executable), "-m", "certsmith")


@dataclass(frozen=True)
class Report:
    """What install/remove did, or what status found: lines for a person to read."""

    mode: Mode
    installed: bool
    lines: tuple[str, ...]
    warnings: tuple[str, ...] = ()


def _ours(path: Path) -> bool:
    try:
        return MARKER in path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise ScheduleError(f"cannot read {path}: {exc.strerror}") from exc


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ScheduleError(f"cannot read {path}: {exc.strerror}") from exc


def _write(path: Path, text: str) -> bool:
    """Write ``text`` unless the file already says exactly that; refuse to clobber others' files."""
    current = _read(path)
    if current == text:
        return False
    if current is not None and MARKER not in current.splitlines():
        raise ScheduleError(f"{path} exists and was not written by certsmith; remove it first")
    try:
        atomic_write(path, text.encode(), 0o644)
    except OSError as exc:
        raise ScheduleError(f"cannot write {path}: {exc.strerror}") from exc
    return True


def _unlink(path: Path) -> bool:
    if not _ours(path):
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise ScheduleError(f"cannot remove {path}: {exc.strerror}") from exc
    return True


def install(host: Host, argv: Sequence[str]) -> Report:
    """Install (or bring up to date) the schedule for ``argv``; running it twice changes nothing."""
    lines: list[str] = []
    if host.mode == "systemd":
        changed = _write(host.service_path, render_service(argv))
        changed |= _write(host.timer_path, render_timer())
        verb = "installed" if changed else "already installed"
        lines.append(
            f"{verb}: {host.timer_path} + {SERVICE}, twice a day "
            f"(random delay up to {RANDOMIZED_DELAY}): {shell_command(argv)}"
        )
        if host.manages_systemd:
            host.systemctl("daemon-reload")
            host.systemctl("enable", "--now", TIMER)
            lines.append(f"enabled and started {TIMER}")
    elif host.mode == "cron":
        when = parse_cron_time(_read(host.cron_path) if _ours(host.cron_path) else None)
        when = when or CronTime.random()
        changed = _write(host.cron_path, render_cron_file(argv, when))
        verb = "installed" if changed else "already installed"
        lines.append(
            f"{verb}: {host.cron_path}, at {when.hour:02}:{when.minute:02} and "
            f"{when.hour + 12:02}:{when.minute:02} (+ up to 1 h): {shell_command(argv)}"
        )
    else:
        current = host.read_crontab()
        when = parse_cron_time(crontab_block(current)) or CronTime.random()
        new = merge_crontab(current, render_crontab_block(argv, when))
        if new != current:
            host.write_crontab(new)
        verb = "installed" if new != current else "already installed"
        lines.append(
            f"{verb}: your crontab, at {when.hour:02}:{when.minute:02} and "
            f"{when.hour + 12:02}:{when.minute:02} (+ up to 1 h): {shell_command(argv)}"
        )
    missing = host.scheduler_missing
    return Report(host.mode, True, tuple(lines), (missing,) if missing else ())


def remove(host: Host) -> Report:
    """Remove exactly what :func:`install` wrote (files carrying our marker, our crontab block)."""
    lines: list[str] = []
    if _ours(host.timer_path) and host.manages_systemd:
        # Stop first: a unit whose file is gone can no longer be disabled by name.
        host.systemctl("disable", "--now", TIMER)
    for path in (host.timer_path, host.service_path, host.cron_path):
        if _unlink(path):
            lines.append(f"removed {path}")
    if host.manages_systemd and any(str(host.systemd_dir) in line for line in lines):
        host.systemctl("daemon-reload")
    if host.mode == "crontab":
        current = host.read_crontab()
        if crontab_block(current) is not None:
            host.write_crontab(merge_crontab(current, None))
            lines.append("removed the certsmith entry from your crontab")
    if not lines:
        lines.append("nothing to remove: no certsmith schedule installed")
    return Report(host.mode, False, tuple(lines))


def _exec_start(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            return line[len("ExecStart=") :]
    return None


def status(host: Host) -> Report:
    """What is installed, and for systemd the next run when the manager can tell."""
    lines: list[str] = []
    installed = False
    service = _read(host.service_path) if _ours(host.service_path) else None
    if _ours(host.timer_path):
        installed = True
        lines.append(
            f"systemd timer: {host.timer_path} ({ON_CALENDAR}, "
            f"random delay up to {RANDOMIZED_DELAY})"
        )
        lines.append(f"  runs: {_exec_start(service) if service else f'(missing {SERVICE})'}")
        if host.manages_systemd:
            result = host.run(
                ["systemctl", "list-timers", TIMER, "--all", "--no-pager", "--no-legend"], None
            )
            row = result.stdout.strip().splitlines() if result.returncode == 0 else []
            lines.append(f"  next run: {' '.join(row[0].split()) if row else 'timer not active'}")
        elif host.systemd_dir == SYSTEMD_DIR:
            lines.append("  next run: unknown (systemd is not running)")
    cron = _read(host.cron_path) if _ours(host.cron_path) else None
    if cron is not None:
        installed = True
        when = parse_cron_time(cron)
        at = f"{when.fields()}" if when else "unreadable schedule"
        lines.append(f"cron: {host.cron_path} ({at}, + up to 1 h)")
    if host.mode == "crontab":
        block = crontab_block(host.read_crontab())
        if block is not None:
            installed = True
            when = parse_cron_time(block)
            at = f"{when.fields()}" if when else "unreadable schedule"
            lines.append(f"crontab: your crontab ({at}, + up to 1 h)")
    if not installed:
        lines.append(f"not installed (would use {host.mode}): certsmith schedule install")
    missing = host.scheduler_missing if installed else None
    return Report(host.mode, installed, tuple(lines), (missing,) if missing else ())
