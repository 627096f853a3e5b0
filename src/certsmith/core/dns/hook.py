"""``--dns hook``: a command of the user's adds and removes the TXT records.

The command line is split like a shell would (``shlex``) but run without one, with stdin
closed and this environment added to certsmith's:

- ``CERTSMITH_DNS_ACTION``: ``add`` or ``remove``
- ``CERTSMITH_DNS_NAME``: the record's name (``_acme-challenge.example.org``, no trailing dot)
- ``CERTSMITH_DNS_VALUE``: the TXT value
- ``CERTSMITH_DNS_ZONE``: the zone it is in (``example.org``)
- ``CERTSMITH_DNS_TTL``: the TTL in seconds (``0`` for ``remove``)

No ``CERTBOT_*`` variables on purpose: certbot runs a separate auth and cleanup hook and gives
neither an action, so a certbot auth hook run here for ``remove`` would add the record again;
and with a CNAME or ``alias`` the name certbot's hooks build from ``CERTBOT_DOMAIN`` is the
wrong one. A hook must remove exactly the value it is given and leave other values at the name.

A command that exits non-zero, cannot start or runs past ``timeout`` (120 s) raises one
:class:`DnsError` line with its name, exit status and the last line of its stderr; it is then
stopped with its whole process group.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
from contextlib import suppress
from pathlib import Path

from certsmith.errors import DnsError, UsageError

DEFAULT_TIMEOUT = 120.0


class HookProvider:
    appends = False  # what the command does is not known

    def __init__(self, command: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.command = command
        self.timeout = timeout

    @property
    def argv(self) -> list[str]:
        try:
            argv = shlex.split(self.command)
        except ValueError as exc:
            raise UsageError(f"cannot parse --dns-hook {self.command!r}: {exc}") from None
        if not argv:
            raise UsageError("--dns-hook needs a command")
        return argv

    @property
    def label(self) -> str:
        try:
            return f"hook {self.argv[0]}"
        except UsageError:
            return f"hook {self.command}"

    def prepare(self) -> None:
        program = self.argv[0]
        if os.sep in program:
            path = Path(program)
            if not path.is_file():
                raise UsageError(f"--dns-hook: {program} does not exist")
            if not os.access(path, os.X_OK):
                raise UsageError(f"--dns-hook: {program} is not executable (chmod +x {program})")
        elif shutil.which(program) is None:
            raise UsageError(f"--dns-hook: {program} is not found in PATH")

    def add_txt(self, zone: str, fqdn: str, value: str, ttl: int) -> None:
        self._run("add", zone, fqdn, value, ttl)

    def remove_txt(self, zone: str, fqdn: str, value: str) -> None:
        self._run("remove", zone, fqdn, value, 0)

    def list_txt(self, zone: str, fqdn: str) -> set[str] | None:
        return None

    def environment(
        self, action: str, zone: str, fqdn: str, value: str, ttl: int
    ) -> dict[str, str]:
        """The environment the command runs with (certsmith's, plus the five variables)."""
        env = dict(os.environ)
        env.update(
            {
                "CERTSMITH_DNS_ACTION": action,
                "CERTSMITH_DNS_NAME": fqdn,
                "CERTSMITH_DNS_VALUE": value,
                "CERTSMITH_DNS_ZONE": zone,
                "CERTSMITH_DNS_TTL": str(ttl),
            }
        )
        return env

    def _run(self, action: str, zone: str, fqdn: str, value: str, ttl: int) -> None:
        argv = self.argv
        name = argv[0]
        doing = f"{'adding' if action == 'add' else 'removing'} TXT at {fqdn}"
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=self.environment(action, zone, fqdn, value, ttl),
                start_new_session=True,
            )
        except OSError as exc:
            raise DnsError(f"DNS hook {name} cannot run: {exc.strerror}") from None
        try:
            _, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise DnsError(
                f"DNS hook {name} timed out after {self.timeout:g} s ({doing})"
            ) from None
        if proc.returncode != 0:
            status = (
                f"was killed by signal {-proc.returncode}"
                if proc.returncode < 0
                else f"exited {proc.returncode}"
            )
            last = _last_line(err)
            raise DnsError(f"DNS hook {name} {status} ({doing})" + (f": {last}" if last else ""))


def _last_line(data: bytes) -> str:
    for line in reversed(data.decode("utf-8", "replace").splitlines()):
        if line.strip():
            return line.strip()[:300]
    return ""
