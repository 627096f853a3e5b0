"""What systemd does for a web server's unit, for the test servers: run the server in the
foreground and restart it on request (``systemctl restart``: stop it, start it again with the
configuration on disk, and start it if it had stopped).

It does not hide a server that exits by itself: the state file then says ``stopped`` until
the next restart, so a test sees that nothing runs. (Debian's lighttpd unit has
``Restart=on-failure``; a server restarted behind certsmith's back would only race it.)

    supervise.py run CONTROL_DIR -- ARGV...     the supervisor (the fixture's process)
    supervise.py restart CONTROL_DIR HOST PORT  the restart command: returns 0 once the new
                                                server accepts connections on HOST:PORT, 1
                                                if it exited instead

Stand-alone (no imports from the repository): certsmith runs the restart command in a shell.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SIGNALS = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
RESTART_TIMEOUT = 30.0


def _write(control: Path, text: str) -> None:
    tmp = control / "state.tmp"
    tmp.write_text(text + "\n")
    os.replace(tmp, control / "state")


def _read(control: Path) -> list[str]:
    try:
        return (control / "state").read_text().split()
    except OSError:
        return []


def _child_setup() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _stop(child: subprocess.Popen[bytes]) -> None:
    child.terminate()
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def run(control: Path, argv: list[str]) -> int:
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    generation = 0

    def start() -> subprocess.Popen[bytes]:
        nonlocal generation
        generation += 1
        child = subprocess.Popen(argv, preexec_fn=_child_setup)
        _write(control, f"running {generation} {child.pid}")
        return child

    (control / "supervisor.pid").write_text(f"{os.getpid()}\n")
    child: subprocess.Popen[bytes] | None = start()
    while True:
        signo = signal.sigwaitinfo(SIGNALS).si_signo
        if signo == signal.SIGCHLD:
            if child is not None and child.poll() is not None:
                _write(control, f"stopped {generation} {child.returncode}")
                child = None
        elif signo == signal.SIGHUP:
            if child is not None:
                _stop(child)
            child = start()
        else:
            if child is not None:
                _stop(child)
            _write(control, f"stopped {generation} 0")
            return 0


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def restart(control: Path, host: str, port: int) -> int:
    state = _read(control)
    try:
        pid = int((control / "supervisor.pid").read_text())
        seen = int(state[1])
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError, IndexError):
        print("the server's supervisor is not running", file=sys.stderr)
        return 1
    deadline = time.monotonic() + RESTART_TIMEOUT
    while time.monotonic() < deadline:
        state = _read(control)
        if len(state) >= 2 and int(state[1]) > seen:
            if state[0] == "stopped":
                print(f"the server exited (status {state[2]}) after the restart", file=sys.stderr)
                return 1
            if state[0] == "running" and _accepts(host, port):
                return 0
        time.sleep(0.02)
    print(f"the server did not start in {RESTART_TIMEOUT}s", file=sys.stderr)
    return 1


def main(args: list[str]) -> int:
    if len(args) >= 4 and args[0] == "run" and args[2] == "--":
        return run(Path(args[1]), args[3:])
    if len(args) == 4 and args[0] == "restart" and args[3].isdigit():
        return restart(Path(args[1]), args[2], int(args[3]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
