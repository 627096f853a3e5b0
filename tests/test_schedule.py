"""certsmith schedule: rendered units pass systemd-analyze, cron lines parse and run, and
install/remove/status through the real CLI, with the system directories pointed at tmp dirs."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certsmith.errors import CertsmithError
from certsmith.services import schedule
from certsmith.services.schedule import CronTime, Host
from tests.conftest import RunCertsmith
from tests.support.pebble import Pebble

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CERTSMITH_") and k != "XDG_DATA_HOME"
    }
    env.update(
        CERTSMITH_SYSTEMD_DIR=str(tmp_path / "systemd"),
        CERTSMITH_CRON_DIR=str(tmp_path / "cron.d"),
        **extra,
    )
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "certsmith", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def exec_start(unit: str) -> str:
    return next(line for line in unit.splitlines() if line.startswith("ExecStart="))[10:]


def analyze(*units: Path) -> None:
    """systemd's own parser must accept the units without a single warning."""
    assert SYSTEMD_ANALYZE, "systemd-analyze missing: run scripts/deps/schedule.sh"
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


# -- a small parser for the cron.d format, as cron reads it --------------------------------------

_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def _cron_field(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        step = 1
        if "/" in item:
            item, raw_step = item.split("/")
            step = int(raw_step)
        if item == "*":
            start, end = low, high
        elif "-" in item:
            start, end = (int(x) for x in item.split("-"))
        else:
            start = end = int(item)
        assert low <= start <= end <= high, f"{text!r} outside {low}-{high}"
        values.update(range(start, end + 1, step))
    return values


def parse_cron_d(text: str) -> list[tuple[list[set[int]], str, str]]:
    """(time fields, user, command) for each job; environment lines and comments checked."""
    assert text.endswith("\n"), "cron ignores a last line without a newline"
    jobs = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if re.match(r"^[A-Z_]+=", line):
            continue
        fields = line.split(None, 6)
        assert len(fields) == 7, line
        times = [_cron_field(f, lo, hi) for f, (lo, hi) in zip(fields[:5], _RANGES, strict=True)]
        command = fields[6]
        # An unescaped % would end the command and feed the rest to its stdin.
        assert not re.search(r"(?<!\\)%", command), command
        jobs.append((times, fields[5], command))
    return jobs


# -- pure renderers --------------------------------------------------------------------------------


def test_renew_argv_omits_home_only_for_the_default() -> None:
    assert schedule.renew_argv(["/usr/bin/certsmith"], None) == (
        "/usr/bin/certsmith",
        "--quiet",
        "renew",
    )
    assert schedule.renew_argv(["/usr/bin/certsmith"], Path("/srv/c")) == (
        "/usr/bin/certsmith",
        "--home",
        "/srv/c",
        "--quiet",
        "renew",
    )


def test_renew_argv_refuses_line_breaks() -> None:
    with pytest.raises(CertsmithError):
        schedule.renew_argv(["/usr/bin/certsmith"], Path("/srv/a\nb"))


def test_timer_is_twice_a_day_randomised_and_persistent() -> None:
    timer = schedule.render_timer()
    assert "OnCalendar=*-*-* 00,12:00:00" in timer
    assert "Persistent=true" in timer
    assert re.search(r"^RandomizedDelaySec=\d+h$", timer, re.M)
    assert "WantedBy=timers.target" in timer


@pytest.mark.parametrize(
    "home", ["/var/lib/certsmith", "/srv/my certs", "/srv/100%/$HOME", '/srv/quo"te\\d']
)
def test_units_pass_systemd_analyze(tmp_path: Path, home: str) -> None:
    exe = shutil.which("true") or "/bin/true"
    argv = schedule.renew_argv([exe], Path(home))
    (tmp_path / "certsmith.service").write_text(schedule.render_service(argv))
    (tmp_path / "certsmith.timer").write_text(schedule.render_timer())
    analyze(tmp_path / "certsmith.service", tmp_path / "certsmith.timer")
    line = exec_start(schedule.render_service(argv))
    assert line.startswith(exe + " ")
    if "%" in home:
        assert "%%" in line and "$$HOME" in line  # taken literally, not as specifiers


def test_calendar_expression_is_valid() -> None:
    assert SYSTEMD_ANALYZE, "systemd-analyze missing: run scripts/deps/schedule.sh"
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "calendar", "--iterations=3", schedule.ON_CALENDAR],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # The next three elapses are twelve hours apart, at 00:00 and 12:00.
    assert len(re.findall(r" (?:00|12):00:00 ", result.stdout)) == 3, result.stdout


@given(st.integers(0, 59), st.integers(0, 11))
def test_cron_file_parses_and_round_trips(minute: int, hour: int) -> None:
    when = CronTime(minute, hour)
    text = schedule.render_cron_file(("/opt/cs bin/certsmith", "--quiet", "renew"), when)
    [(times, user, command)] = parse_cron_d(text)
    assert times[0] == {minute} and times[1] == {hour, hour + 12}
    assert times[2:] == [set(range(1, 32)), set(range(1, 13)), set(range(0, 8))]
    assert user == "root"
    assert command.startswith("test -x '/opt/cs bin/certsmith' && sleep ")
    assert schedule.parse_cron_time(text) == when


def test_cron_command_escapes_percent() -> None:
    text = schedule.render_cron_file(
        schedule.renew_argv(["/usr/bin/certsmith"], Path("/s/5%")), CronTime(1, 2)
    )
    [(_, _, command)] = parse_cron_d(text)
    assert "5\\%" in command


def test_cron_command_runs_renew_after_a_bounded_random_sleep(tmp_path: Path) -> None:
    """Run the job line as cron would (sh -c, the file's PATH), with `sleep` recording its
    argument instead of sleeping, and the real certsmith renewing an empty home."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sleep").write_text(f'#!/bin/sh\necho "$1" >> {tmp_path}/slept\n')
    (fake / "sleep").chmod(0o755)
    home = tmp_path / "home"
    argv = schedule.renew_argv([sys.executable, "-m", "certsmith"], home)
    text = schedule.render_cron_file(argv, CronTime.random())
    [(_, _, command)] = parse_cron_d(text)
    path = next(line for line in text.splitlines() if line.startswith("PATH="))[5:]
    for _ in range(3):
        result = subprocess.run(
            ["/bin/sh", "-c", command.replace("\\%", "%")],
            env={"PATH": f"{fake}:{path}", "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == ""  # --quiet
    slept = [int(x) for x in (tmp_path / "slept").read_text().split()]
    assert len(slept) == 3 and all(0 <= s <= 3570 for s in slept)


_LINES = st.lists(
    st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=30).filter(
        lambda s: not s.startswith("# BEGIN certsmith") and not s.startswith("# END certsmith")
    ),
    max_size=6,
)


@given(_LINES)
def test_crontab_merge_adds_once_and_removes_exactly(lines: list[str]) -> None:
    existing = "".join(line + "\n" for line in lines)
    block = schedule.render_crontab_block(
        ("/usr/bin/certsmith", "--quiet", "renew"), CronTime(7, 3)
    )
    once = schedule.merge_crontab(existing, block)
    assert schedule.merge_crontab(once, block) == once
    assert once.count(schedule.BEGIN) == 1
    assert schedule.crontab_block(once) == block
    assert schedule.merge_crontab(once, None) == existing
    assert schedule.parse_cron_time(schedule.crontab_block(once)) == CronTime(7, 3)


# -- the I/O layer with a recording runner (systemctl must never run against this host) ----------


class Recorder:
    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.fail = fail

    def __call__(
        self, argv: Sequence[str], stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        self.calls.append(tuple(argv))
        if self.fail and self.fail in argv:
            return subprocess.CompletedProcess(list(argv), 1, "", "Access denied\nmore\n")
        out = (
            "Tue 2030-01-01 00:00:00 UTC 3h left n/a n/a certsmith.timer certsmith.service\n"
            if "list-timers" in argv
            else ""
        )
        return subprocess.CompletedProcess(list(argv), 0, out, "")


def test_systemctl_only_for_the_real_unit_directory(tmp_path: Path) -> None:
    rec = Recorder()
    host = Host("systemd", systemd_running=True, systemd_dir=tmp_path, run=rec)
    assert not host.manages_systemd
    schedule.install(host, ("/usr/bin/certsmith", "--quiet", "renew"))
    schedule.status(host)
    schedule.remove(host)
    assert rec.calls == []
    assert not Host("systemd", systemd_running=False).manages_systemd
    assert Host("systemd", systemd_running=True).manages_systemd


def test_systemctl_calls_when_systemd_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Stand-in: the real /etc/systemd/system of this machine must not be touched by a test.
    monkeypatch.setattr(schedule, "SYSTEMD_DIR", tmp_path)
    rec = Recorder()
    host = Host("systemd", systemd_running=True, systemd_dir=tmp_path, run=rec)
    report = schedule.install(host, ("/usr/bin/certsmith", "--quiet", "renew"))
    assert rec.calls == [
        ("systemctl", "daemon-reload"),
        ("systemctl", "enable", "--now", "certsmith.timer"),
    ]
    assert any("enabled" in line for line in report.lines)
    rec.calls.clear()
    status = schedule.status(host)
    assert status.installed
    assert any("next run: Tue 2030-01-01 00:00:00 UTC" in line for line in status.lines)
    rec.calls.clear()
    schedule.remove(host)
    assert rec.calls == [
        ("systemctl", "disable", "--now", "certsmith.timer"),
        ("systemctl", "daemon-reload"),
    ]
    assert list(tmp_path.iterdir()) == []


def test_systemctl_failure_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schedule, "SYSTEMD_DIR", tmp_path)
    host = Host("systemd", systemd_running=True, systemd_dir=tmp_path, run=Recorder("enable"))
    with pytest.raises(
        schedule.ScheduleError,
        match=r"^systemctl enable --now certsmith.timer "
        r"failed: Access denied$",
    ):
        schedule.install(host, ("/usr/bin/certsmith", "--quiet", "renew"))


# -- the real CLI ----------------------------------------------------------------------------------


def test_cli_systemd_install_is_idempotent_and_remove_is_exact(tmp_path: Path) -> None:
    env = _env(tmp_path, CERTSMITH_INIT="systemd")
    units = tmp_path / "systemd"
    units.mkdir()
    (units / "other.service").write_text("[Service]\nExecStart=/bin/true\n")
    home = tmp_path / "state"

    first = cli(env, "--home", str(home), "schedule", "install")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("installed: ")
    service = (units / "certsmith.service").read_text()
    timer = (units / "certsmith.timer").read_text()
    for name in ("certsmith.service", "certsmith.timer"):
        assert stat.S_IMODE((units / name).stat().st_mode) == 0o644
    argv = exec_start(service).split()
    assert os.path.isabs(argv[0]) and os.access(argv[0], os.X_OK)
    assert argv[1:] == ["--home", str(home), "--quiet", "renew"]
    analyze(units / "certsmith.service", units / "certsmith.timer")

    again = cli(env, "--home", str(home), "schedule", "install")
    assert again.returncode == 0 and again.stdout.startswith("already installed: ")
    assert (units / "certsmith.service").read_text() == service
    assert (units / "certsmith.timer").read_text() == timer

    status = cli(env, "--home", str(home), "schedule", "status")
    assert status.returncode == 0
    assert f"systemd timer: {units / 'certsmith.timer'}" in status.stdout
    assert f"--home {home} --quiet renew" in status.stdout

    removed = cli(env, "schedule", "remove")
    assert removed.returncode == 0
    assert sorted(p.name for p in units.iterdir()) == ["other.service"]
    assert "nothing to remove" in cli(env, "schedule", "remove").stdout
    assert "not installed" in cli(env, "schedule", "status").stdout


def test_cli_default_home_has_no_home_option(tmp_path: Path) -> None:
    env = _env(tmp_path, CERTSMITH_INIT="systemd")
    env["HOME"] = str(tmp_path)  # the non-root default lives below it
    assert cli(env, "schedule", "install").returncode == 0
    assert "--home" not in (tmp_path / "systemd" / "certsmith.service").read_text()
    # $CERTSMITH_HOME is not in the timer's environment: it becomes --home.
    env["CERTSMITH_HOME"] = str(tmp_path / "elsewhere")
    assert cli(env, "schedule", "install").stdout.startswith("installed: ")
    assert (
        f"--home {tmp_path / 'elsewhere'} "
        in (tmp_path / "systemd" / "certsmith.service").read_text()
    )


def test_cli_refuses_to_overwrite_a_foreign_unit(tmp_path: Path) -> None:
    env = _env(tmp_path, CERTSMITH_INIT="systemd")
    units = tmp_path / "systemd"
    units.mkdir()
    (units / "certsmith.timer").write_text("[Timer]\nOnCalendar=daily\n")
    result = cli(env, "schedule", "install")
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and "not written by certsmith" in result.stderr
    assert (units / "certsmith.timer").read_text() == "[Timer]\nOnCalendar=daily\n"
    # remove leaves it alone too
    assert cli(env, "schedule", "remove").returncode == 0
    assert (units / "certsmith.timer").exists()


def test_cli_cron_install_keeps_its_minute(tmp_path: Path) -> None:
    env = _env(tmp_path, CERTSMITH_INIT="cron")
    result = cli(env, "--home", str(tmp_path / "h"), "schedule", "install")
    assert result.returncode == 0, result.stderr
    path = tmp_path / "cron.d" / "certsmith"
    text = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # cron ignores group/other-writable files
    [(times, user, command)] = parse_cron_d(text)
    assert user == "root" and len(times[1]) == 2
    assert command.endswith(f"--home {tmp_path / 'h'} --quiet renew")
    for _ in range(3):
        assert cli(env, "--home", str(tmp_path / "h"), "schedule", "install").returncode == 0
        assert path.read_text() == text
    status = cli(env, "schedule", "status")
    assert f"cron: {path}" in status.stdout
    assert cli(env, "schedule", "remove").returncode == 0
    assert not path.exists()


FAKE_CRONTAB = """#!/bin/sh
# Stand-in for cron's crontab(1): cron is not installed here, and the real one would edit this
# account's crontab. Same interface: -l prints it (or fails with "no crontab"), - replaces it.
f="$FAKE_CRONTAB_FILE"
case "$1" in
  -l) if [ -f "$f" ]; then cat "$f"; else echo "no crontab for $(id -un)" >&2; exit 1; fi ;;
  -) cat > "$f" ;;
  *) exit 2 ;;
esac
"""


def test_cli_user_crontab_keeps_other_lines(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "crontab").write_text(FAKE_CRONTAB)
    (bin_dir / "crontab").chmod(0o755)
    tab = tmp_path / "tab"
    env = _env(tmp_path, CERTSMITH_INIT="crontab", FAKE_CRONTAB_FILE=str(tab))
    env["PATH"] = f"{bin_dir}:{env['PATH']}"

    assert "not installed" in cli(env, "schedule", "status").stdout  # no crontab yet
    assert cli(env, "schedule", "install").returncode == 0
    assert cli(env, "schedule", "remove").returncode == 0
    assert tab.read_text() == ""

    original = "MAILTO=me@example.com\n# mine\n5 4 * * * /usr/bin/backup --all\n"
    tab.write_text(original)
    result = cli(env, "--home", str(tmp_path / "h"), "schedule", "install")
    assert result.returncode == 0, result.stderr
    installed = tab.read_text()
    assert installed.startswith(original)
    block = schedule.crontab_block(installed)
    assert block is not None
    job = [line for line in block.splitlines() if not line.startswith("#")]
    assert len(job) == 1 and len(job[0].split()) > 5
    assert cli(env, "--home", str(tmp_path / "h"), "schedule", "install").returncode == 0
    assert tab.read_text() == installed
    assert "crontab: your crontab" in cli(env, "schedule", "status").stdout
    assert cli(env, "schedule", "remove").returncode == 0
    assert tab.read_text() == original


def test_cli_unknown_init_override_is_one_line(tmp_path: Path) -> None:
    result = cli(_env(tmp_path, CERTSMITH_INIT="upstart"), "schedule", "install")
    assert result.returncode == 2
    assert result.stderr.startswith("certsmith: CERTSMITH_INIT=") and result.stderr.count("\n") == 1
    assert not (tmp_path / "systemd").exists() and not (tmp_path / "cron.d").exists()


def test_cli_help_mentions_modes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "certsmith", "schedule", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    for word in ("install", "remove", "status", "cron", "systemd"):
        assert word in result.stdout


# -- what a timer's renewal needs is stored with the site ------------------------------------------


def test_renewal_without_requests_ca_bundle_uses_the_recorded_one(
    run_certsmith: RunCertsmith, pebble: Pebble, cs_home: Path, certsmith_env: dict[str, str]
) -> None:
    """A timer has no REQUESTS_CA_BUNDLE: the bundle in effect at 'get' is kept with the site."""
    got = run_certsmith(
        "get",
        "timer.example.com",
        "--standalone",
        "--http-port",
        pebble.http_port,
        "--server",
        pebble.directory,
        "--agree-tos",
    )
    assert got.returncode == 0, got.stderr
    site = (cs_home / "sites" / "timer.example.com.toml").read_text()
    assert f'ca_bundle = "{pebble.ca_bundle}"' in site
    env = {
        k: v for k, v in certsmith_env.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
    }
    renewed = subprocess.run(
        [sys.executable, "-m", "certsmith", "renew", "--force", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr
    [outcome] = json.loads(renewed.stdout)
    assert outcome["action"] == "renewed", outcome
    assert os.readlink(cs_home / "live" / "timer.example.com") == "../archive/timer.example.com/2"


def _running_commands() -> set[str]:
    result = subprocess.run(
        ["ps", "-eo", "comm="], capture_output=True, text=True, timeout=60, check=True
    )
    return {line.strip() for line in result.stdout.splitlines()}


def test_cli_warns_when_no_cron_daemon_runs(tmp_path: Path) -> None:
    """Seen on a container: a cron file nothing reads. Install says so (and still writes it,
    ready for when cron starts); with a cron process running, no warning."""
    assert not os.path.isdir("/run/systemd/system")
    assert not _running_commands() & {"cron", "crond", "anacron", "fcron"}, (
        "this test needs a machine without a running cron daemon"
    )
    env = _env(tmp_path, CERTSMITH_INIT="cron")
    result = cli(env, "--home", str(tmp_path / "h"), "schedule", "install")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cron.d" / "certsmith").exists()
    [warning] = result.stderr.splitlines()
    assert warning.startswith("certsmith: warning: no cron daemon")
    assert "will NOT renew until one is started" in warning
    assert "will NOT renew" in cli(env, "schedule", "status").stderr
    quiet = cli(env, "--home", str(tmp_path / "h"), "--quiet", "schedule", "install")
    assert quiet.stdout == "" and "will NOT renew" in quiet.stderr

    # A real process called crond (the name is all the check reads, as ps shows it).
    fake = tmp_path / "bin" / "crond"
    fake.parent.mkdir()
    fake.symlink_to(shutil.which("sleep") or "/bin/sleep")
    daemon = subprocess.Popen([str(fake), "300"])
    try:
        assert "crond" in _running_commands()
        calm = cli(env, "--home", str(tmp_path / "h"), "schedule", "install")
        assert calm.returncode == 0 and calm.stderr == "", calm.stderr
    finally:
        daemon.kill()
        daemon.wait()


def test_cli_warns_when_systemd_is_not_running(tmp_path: Path) -> None:
    assert not os.path.isdir("/run/systemd/system")
    result = cli(_env(tmp_path, CERTSMITH_INIT="systemd"), "schedule", "install")
    assert result.returncode == 0 and result.stdout.startswith("installed: ")
    assert "systemd is not running" in result.stderr and "will NOT renew" in result.stderr
