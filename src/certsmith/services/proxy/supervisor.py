"""The parent process of ``certsmith proxy``: sockets, certificates, workers, renewal, signals.

- Binds every listening socket itself (one per worker and port, ``SO_REUSEPORT``), so a refused
  port is reported once, before anything starts, and a respawned or reloaded worker takes over
  the same socket (no connection is refused meanwhile).
- Makes the TLS dispatch context before forking, so all workers share its session-ticket keys
  (a client resumes its session whichever worker it reaches).
- Issues local-CA certificates before the workers start; ACME orders and all renewals run in a
  short-lived child process (on start, then every ``CHECK_INTERVAL``), and the workers are told
  to reload (SIGUSR1) when it finishes. The supervisor itself never runs threads: it forks.
- Opens the access log once as the workers will (start-up and each reload), so a log that
  cannot be written is one clear line instead of workers dying and respawning forever.
- SIGHUP re-reads the configuration and replaces the workers gracefully (a file or access log
  that does not check out is refused, said once, and the running workers stay); SIGTERM/SIGINT
  drain them (in-flight requests finish, up to ``limits.drain_timeout``); SIGUSR1 reloads
  certificates.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from certsmith.errors import UsageError
from certsmith.services.lifecycle import Bus
from certsmith.services.proxy import accesslog
from certsmith.services.proxy import config as config_mod
from certsmith.services.proxy.certs import dispatch_context
from certsmith.services.proxy.config import ProxyConfig
from certsmith.services.proxy.issuing import (
    challenge_webroot,
    check_dns_files,
    ensure_local_sites,
)

CHECK_INTERVAL = float(os.environ.get("CERTSMITH_PROXY_CHECK_INTERVAL", 600))
RETRY_FIRST = 30.0  # a failed first order is retried after 30 s, 60 s, ... up to CHECK_INTERVAL
SIGNALS = {signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1}


def _say(line: str) -> None:
    sys.stderr.write(f"certsmith proxy: {line}\n")
    sys.stderr.flush()


@dataclass
class Listeners:
    """Per worker slot: its HTTP and HTTPS sockets."""

    http: list[list[socket.socket]] = field(default_factory=list)
    https: list[list[socket.socket]] = field(default_factory=list)

    def all(self) -> list[socket.socket]:
        return [s for slot in self.http + self.https for s in slot]


def _bind_one(address: str, port: int) -> list[socket.socket]:
    """Sockets for one port: dual-stack ``::`` when no address is given (else IPv4 only)."""
    candidates: list[tuple[socket.AddressFamily, str]]
    if address:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        candidates = [(family, address)]
    else:
        candidates = [(socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")]
    last: OSError | None = None
    for family, host in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6 and not address:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((host, port))
            sock.listen(4096)
            sock.setblocking(False)
            return [sock]
        except OSError as exc:
            sock.close()
            last = exc
            if exc.errno in (errno.EACCES, errno.EADDRINUSE):
                break
    assert last is not None
    raise last


def bind(config: ProxyConfig, slots: int) -> Listeners:
    """All listening sockets, or one clear error naming the port and what to do."""
    listeners = Listeners()
    try:
        for _ in range(slots):
            listeners.http.append(_bind_port(config, config.http_port, "--http-port"))
            listeners.https.append(_bind_port(config, config.https_port, "--https-port"))
    except BaseException:
        for sock in listeners.all():
            sock.close()
        raise
    return listeners


def _bind_port(config: ProxyConfig, port: int, option: str) -> list[socket.socket]:
    try:
        return _bind_one(config.address, port)
    except OSError as exc:
        if exc.errno == errno.EACCES:
            raise UsageError(
                f"no permission to listen on port {port} (ports below 1024 need root or "
                f"CAP_NET_BIND_SERVICE); use --http-port 8080 --https-port 8443"
            ) from None
        if exc.errno == errno.EADDRINUSE:
            from certsmith.core.solvers.http01 import port_owner

            owner = port_owner(port)
            raise UsageError(
                f"port {port} is already in use{' by ' + owner if owner else ''}"
                f"; stop it or choose another with {option}"
            ) from None
        raise UsageError(f"cannot listen on port {port}: {exc.strerror or exc}") from None


class Supervisor:
    def __init__(
        self,
        config: ProxyConfig,
        home: Path,
        on_ready: Callable[[ProxyConfig, list[str]], None] | None = None,
        overrides: dict[str, object] | None = None,
    ) -> None:
        self.config = config
        self.overrides = overrides or {}  # command-line settings that win over the file
        self.home = Path(home)
        self.on_ready = on_ready
        self.workers: dict[int, int] = {}  # pid -> slot
        self.retiring: set[int] = set()  # old workers draining after a reload
        self.job_pid: int | None = None
        self.next_job = 0.0
        self.job_failures = 0
        self.stopping = False
        self.listeners: Listeners | None = None

    # -- start ------------------------------------------------------------------------------------

    def prepare(self) -> list[str]:
        """Everything that can fail with a clear message, before any worker exists."""
        config = self.config
        accesslog.check(config.access_log)  # as the workers will open it (they must not die)
        check_dns_files(config)
        if any(s.uses_acme for s in config.sites):
            from certsmith.base.store import open_store
            from certsmith.core.issuers.cas import resolve_server
            from certsmith.services.accounts import AccountOptions, check_can_register

            check_can_register(
                open_store(self.home),
                resolve_server(config.acme.server),
                AccountOptions(email=config.acme.email, agree_tos=config.acme.agree_tos),
            )
            challenge_webroot(self.home)
        self.listeners = bind(config, config.worker_count)
        try:
            return ensure_local_sites(config, self.home, lambda _line: None, bus=_bus(self.home))
        except BaseException:
            for sock in self.listeners.all():
                sock.close()
            raise

    def run(self) -> int:
        _raise_fd_limit()
        issued = self.prepare()
        self.dispatch = dispatch_context()
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        for slot in range(self.config.worker_count):
            self._spawn(slot)
        if self.on_ready is not None:
            self.on_ready(self.config, issued)
        self.next_job = (
            time.monotonic()
            if any(s.uses_acme for s in self.config.sites)
            else time.monotonic() + CHECK_INTERVAL
        )
        return self._loop()

    def _spawn(self, slot: int) -> None:
        from certsmith.services.proxy.worker import run_worker, start_signals

        assert self.listeners is not None
        config = self.config
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                start_signals(SIGNALS)
                mine = self.listeners.http[slot] + self.listeners.https[slot]
                for sock in self.listeners.all():
                    if sock not in mine:
                        sock.close()
                code = run_worker(
                    config,
                    self.home,
                    self.listeners.http[slot],
                    self.listeners.https[slot],
                    self.dispatch,
                )
            except BaseException as exc:  # never return into the supervisor's code
                with contextlib.suppress(Exception):
                    _say(f"worker {os.getpid()} failed: {exc!r}")
            finally:
                os._exit(code)
        self.workers[pid] = slot

    def _start_job(self) -> None:
        from certsmith.services.proxy.issuing import run_job

        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                for sock in self.listeners.all() if self.listeners else ():
                    sock.close()
                result = run_job(self.config, self.home, _say)
                code = 2 if result.failed else 0
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    _say(f"certificate check failed: {exc}")
            finally:
                os._exit(code)
        self.job_pid = pid

    # -- the signal loop --------------------------------------------------------------------------

    def _loop(self) -> int:
        while True:
            if not self.stopping and self.job_pid is None and time.monotonic() >= self.next_job:
                self._start_job()
            wait = max(0.05, self.next_job - time.monotonic()) if self.job_pid is None else 5.0
            info = signal.sigtimedwait(SIGNALS, min(wait, 60.0))
            if info is None:
                continue
            sig = info.si_signo
            if sig == signal.SIGCHLD:
                if self._reap():
                    return 0
            elif sig in (signal.SIGTERM, signal.SIGINT):
                self._stop()
                if not self.workers and not self.retiring:
                    return 0
            elif sig == signal.SIGHUP:
                self._reload()
            elif sig == signal.SIGUSR1:
                self._tell_workers(signal.SIGUSR1)

    def _reap(self) -> bool:
        """Collect exited children; True when the supervisor should exit."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            code = os.waitstatus_to_exitcode(status)
            if pid == self.job_pid:
                self.job_pid = None
                if code == 0:
                    self.job_failures = 0
                    self.next_job = time.monotonic() + CHECK_INTERVAL
                else:
                    self.job_failures += 1
                    self.next_job = time.monotonic() + min(
                        RETRY_FIRST * 2 ** (self.job_failures - 1), CHECK_INTERVAL
                    )
                self._tell_workers(signal.SIGUSR1)
            elif pid in self.retiring:
                self.retiring.discard(pid)
            elif pid in self.workers:
                slot = self.workers.pop(pid)
                if not self.stopping:
                    _say(f"worker {pid} exited ({code}); starting a new one")
                    time.sleep(1.0)  # (a worker that cannot start must not spin)
                    self._spawn(slot)
        return self.stopping and not self.workers and not self.retiring

    def _tell_workers(self, sig: int) -> None:
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        _say("draining in-flight requests")
        self._tell_workers(signal.SIGTERM)
        if self.job_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.job_pid, signal.SIGTERM)

    def _reload(self) -> None:
        """SIGHUP: re-read the configuration, then replace the workers (old ones drain)."""
        if self.config.source is None:
            self._tell_workers(signal.SIGUSR1)
            return
        try:
            new = config_mod.load(self.config.source, **self.overrides)
            if (new.http_port, new.https_port, new.address, new.worker_count) != (
                self.config.http_port,
                self.config.https_port,
                self.config.address,
                self.config.worker_count,
            ):
                _say(
                    "ports, address and worker count change only with a restart; "
                    "keeping the old ones"
                )
                new = _with_listening(new, self.config)
            accesslog.check(new.access_log)
            check_dns_files(new)
            ensure_local_sites(new, self.home, _say, bus=_bus(self.home))
        except Exception as exc:  # a broken file must not take the running proxy down
            _say(f"reload failed, still serving the old configuration: {exc}")
            return
        self.config = new
        old = dict(self.workers)
        self.workers.clear()
        for pid in old:
            self.retiring.add(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for slot in sorted(set(old.values())):
            self._spawn(slot)
        self.next_job = time.monotonic()
        _say(f"reloaded {self.config.source}: {len(new.sites)} site(s)")


def _bus(home: Path) -> Bus:
    """Local-CA certificates issued by the supervisor itself (at start, on reload) are told to
    the same subscribers as every renewal: audit log, alerts, metrics."""
    from certsmith.services.root import subscribers

    return subscribers(home)


def _raise_fd_limit() -> None:
    """One descriptor per connection (two while proxying): use all the system allows."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _with_listening(new: ProxyConfig, old: ProxyConfig) -> ProxyConfig:
    from dataclasses import replace

    return replace(
        new,
        http_port=old.http_port,
        https_port=old.https_port,
        address=old.address,
        workers=old.worker_count,
    )
