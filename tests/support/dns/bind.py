"""A real BIND 9 primary and secondary on ``127.53.N.1:53`` / ``127.53.N.2:53``, configured as
Debian's bind9 package is (named.conf including named.conf.options, named.conf.local and the
stock default zones; ``named -u bind``), with only addresses, ports and paths changed, plus
``recursion no`` (an authoritative server, not the package's resolver).

The primary serves ``ZONE`` and ``DELEGATE_ZONE`` (tests/support/dns/zones.py) and accepts
RFC 2136 updates of TXT records signed with the TSIG key in ``key_file`` (``update-policy {
grant KEY zonesub TXT; }``). The secondary transfers both zones from the primary once at start
and then only when the test calls ``retransfer()``: the primary sends no NOTIFY and the SOA
refresh is one day. Each instance has a control channel (``rndc``) on its address, port 953.

A third named on ``127.53.N.4:53`` (``resolver``) is a recursive resolver for loopback clients
that reaches ``ZONE`` and ``DELEGATE_ZONE`` on the primary (only) and ``PDNS_ZONE`` on
PowerDNS's address (static-stub zones), caching nothing (named still keeps a negative answer
for about a second): Pebble asks it, as a CA asks its resolver. It is needed for dns-01
delegation: an authoritative-only server answers a query for ``DELEGATED_CHALLENGE`` with the
CNAME alone, and Pebble does not chase a CNAME itself.

Layout of the work directory (a new directory under ``/var/cache/bind``, where Debian's AppArmor
profile lets named read and write; removed by ``close()``), like ``/etc/bind``,
``/var/cache/bind``, ``/var/lib/bind`` and ``/run/named``::

    keys/<name>.key, keys/wrong.key   the TSIG keys for clients (0600, root)
    rndc.conf                         rndc's key and port (0600)
    primary/etc/ primary/cache/ primary/lib/ primary/run/ primary/named.log
    primary/supervise/                its supervisor's state (tests/support/supervise.py)
    secondary/..., resolver/...       the same for the secondary and the resolver
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tests.support.dns.common import (
    DNS_PORT,
    PDNS_HOST,
    PRIMARY_HOST,
    RESOLVER_HOST,
    SECONDARY_HOST,
    LoopbackAlias,
    answers,
    as_root,
    chown,
    make_key_file,
    net_address,
    read_key_file,
    serial,
    start_supervised,
    txt,
    wait_supervised,
    worker_net,
    zone_snapshot,
)
from tests.support.dns.zones import (
    DELEGATE_ZONE,
    PDNS_ZONE,
    ZONE,
    delegate_zone_text,
    zone_text,
)
from tests.support.net import stop_process, wait_until

NAMED_BIN = "named"
RNDC_BIN = "rndc"
RNDC_PORT = 953
KEY_NAME = "certsmith-acme"
DEBIAN_DEFAULT_ZONES = "/etc/bind/named.conf.default-zones"
# Debian's AppArmor profile for named (enforced where AppArmor is on: Debian 12, Ubuntu) lets it
# read and write under /var/cache/bind only, of all the places a test could use: the work
# directory goes there (elsewhere if the package is not installed).
WORK_PARENT = Path("/var/cache/bind")
ZONES = (ZONE, DELEGATE_ZONE)


class _Named:
    """One named process: its directories, configuration and log."""

    def __init__(self, root: Path, role: str, address: str) -> None:
        self.role = role
        self.address = address
        self.base = root / role
        self.etc = self.base / "etc"
        self.cache = self.base / "cache"
        self.lib = self.base / "lib"
        self.run = self.base / "run"
        self.log_path = self.base / "named.log"
        self.control = self.base / "supervise"
        self.alias = LoopbackAlias(address)
        self.proc: subprocess.Popen[bytes] | None = None

    def prepare(self, options: str, local: str, keys: dict[str, str]) -> None:
        """Write the directories and files (owners and modes as Debian's package sets them)."""
        for path in (self.base, self.etc, self.cache, self.lib, self.run):
            path.mkdir(parents=True, exist_ok=True)
        self.etc.chmod(0o2755)
        chown(self.etc, "root")
        for path in (self.cache, self.lib, self.run):
            path.chmod(0o775)
            chown(path, "bind")
        for name, text in keys.items():  # included by named.conf: root:bind 0640, as rndc.key
            self._write(self.etc / name, text, 0o640)
        self._write(self.etc / "named.conf.options", options, 0o644)
        self._write(self.etc / "named.conf.local", local, 0o644)
        self._write(
            self.etc / "named.conf",
            (
                "// This is the primary configuration file for the BIND DNS server named.\n"
                "//\n// As Debian's /etc/bind/named.conf, with this instance's paths.\n\n"
                f'include "{self.etc}/named.conf.options";\n'
                f'include "{self.etc}/named.conf.local";\n'
                f'include "{DEBIAN_DEFAULT_ZONES}";\n'
            ),
            0o644,
        )

    @staticmethod
    def _write(path: Path, text: str, mode: int) -> None:
        path.write_text(text)
        path.chmod(mode)
        if as_root():
            shutil.chown(path, "root", "bind")

    def start(self) -> None:
        self.alias.add()
        cmd = [NAMED_BIN, "-g", "-c", str(self.etc / "named.conf")]
        if as_root():
            cmd += ["-u", "bind"]  # as Debian's service does
        self.proc = start_supervised(cmd, self.control, self.log_path, self.base)

    def wait_ready(self, zones: tuple[str, ...], recursive: bool = False) -> None:
        wait_supervised(
            lambda: all(answers(self.address, zone, recursive=recursive) for zone in zones),
            what=f"named ({self.role}, {self.address}:{DNS_PORT})",
            control=self.control,
            proc=self.proc,
            log=self.log_text,
        )

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None
        self.alias.remove()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Bind:
    """BIND primary + secondary + resolver for this worker's ``127.53.N.0`` (``net=N`` to
    choose it).

    Attributes: ``primary``/``secondary``/``resolver`` (addresses; port ``DNS_PORT`` 53),
    ``zones``,
    ``key_file`` (the TSIG key the primary accepts updates with, tsig-keygen's format for
    ``nsupdate -k``), ``wrong_key_file`` (same key name, another secret), ``key_name``,
    ``key_algorithm``, ``rndc_conf``, ``workdir``.
    """

    def __init__(
        self, *, net: int | None = None, workdir: Path | str | None = None, notify: bool = False
    ) -> None:
        # notify=True: the primary sends NOTIFY to the secondary at once (a zone kept in step,
        # as in production; for benchmarks); default: the secondary lags until retransfer()
        self.notify = notify
        self.net = worker_net() if net is None else net
        self.primary = net_address(self.net, PRIMARY_HOST)
        self.secondary = net_address(self.net, SECONDARY_HOST)
        self.port = DNS_PORT
        self.zones = ZONES
        self._own_tmp = workdir is None
        parent = WORK_PARENT if WORK_PARENT.is_dir() else None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="certsmith-test-", dir=parent))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)  # named runs as bind: it must reach its directories
        keys = self.workdir / "keys"
        keys.mkdir(mode=0o700, exist_ok=True)
        self.key_name = KEY_NAME
        self.key_file = make_key_file(keys / f"{KEY_NAME}.key", KEY_NAME)
        self.wrong_key_file = make_key_file(keys / "wrong.key", KEY_NAME)
        _name, self.key_algorithm, _secret = read_key_file(self.key_file)
        self._rndc_key = subprocess.run(
            ["tsig-keygen", "-a", "hmac-sha256", "rndc-key"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        self.rndc_conf = self.workdir / "rndc.conf"
        self.rndc_conf.touch(mode=0o600)
        self.rndc_conf.write_text(
            self._rndc_key + (f'options {{ default-key "rndc-key"; default-port {RNDC_PORT}; }};\n')
        )
        self._primary = _Named(self.workdir, "primary", self.primary)
        self._secondary = _Named(self.workdir, "secondary", self.secondary)
        self.resolver = net_address(self.net, RESOLVER_HOST)
        self._resolver = _Named(self.workdir, "resolver", self.resolver)
        self._prepare()

    @property
    def key_secret(self) -> str:
        """The base64 secret of ``key_file`` (for configurations that take it inline)."""
        return read_key_file(self.key_file)[2]

    # ----------------------------------------------------------------- configuration
    def _options(self, named: _Named, extra: str, recursion: str = "\trecursion no;\n") -> str:
        # Debian's named.conf.options (directory, dnssec-validation auto, listen-on-v6) with
        # this instance's paths and addresses; recursion off: an authoritative server.
        return (
            "options {\n"
            f'\tdirectory "{named.cache}";\n'
            f'\tpid-file "{named.run}/named.pid";\n'
            f'\tsession-keyfile "{named.run}/session.key";\n'
            "\tdnssec-validation auto;\n"
            f"\tlisten-on port {DNS_PORT} {{ {named.address}; }};\n"
            "\tlisten-on-v6 { none; };\n"
            f"{recursion}"
            "\tnotify no;\n"
            f"{extra}"
            "};\n\n"
            f'include "{named.etc}/rndc.key";\n'
            f"controls {{ inet {named.address} port {RNDC_PORT} allow {{ 127.0.0.0/8; }} "
            'keys { "rndc-key"; }; };\n'
        )

    def _prepare(self) -> None:
        key_text = self.key_file.read_text()
        keys = {"rndc.key": self._rndc_key, f"{KEY_NAME}.key": key_text}
        p, s = self._primary, self._secondary
        local = f'include "{p.etc}/{KEY_NAME}.key";\n'
        for zone in self.zones:
            local += (
                f'\nzone "{zone}" {{\n'
                "\ttype primary;\n"
                f'\tfile "{p.lib}/db.{zone}";\n'
                f"\tupdate-policy {{ grant {KEY_NAME} zonesub TXT; }};\n"
                f'\tallow-transfer {{ {s.address}; key "{KEY_NAME}"; }};\n'
                + (
                    f"\tnotify explicit;\n\talso-notify {{ {s.address}; }};\n\tnotify-delay 0;\n"
                    if self.notify
                    else "\tnotify no;\n"
                )
                + "};\n"
            )
        # NOTIFY leaves from the primary's own address: on ``lo`` the kernel would pick the
        # destination's, and the secondary refuses a NOTIFY from anyone but its primary
        p.prepare(self._options(p, f"\tnotify-source {p.address};\n"), local, keys)
        texts = {ZONE: zone_text(self.primary, self.secondary), DELEGATE_ZONE: delegate_zone_text()}
        for zone, text in texts.items():
            path = p.lib / f"db.{zone}"
            path.write_text(text)
            path.chmod(0o644)
            chown(path, "bind")  # named writes the journal's changes back into it

        local = f'include "{s.etc}/{KEY_NAME}.key";\n'
        for zone in self.zones:
            local += (
                f'\nzone "{zone}" {{\n'
                "\ttype secondary;\n"
                f"\tprimaries {{ {p.address}; }};\n"
                f'\tfile "{s.cache}/db.{zone}";\n'
                f'\tallow-transfer {{ key "{KEY_NAME}"; }};\n'
                "};\n"
            )
        extra = f"\ttransfer-source {s.address};\n\tnotify-source {s.address};\n"
        s.prepare(self._options(s, extra), local, keys)

        # The resolver: recursion for loopback clients, our zones reached through static-stub
        # zones (as a CA's resolver reaches them through the delegations), no DNSSEC validation
        # for the test names (unsigned zones under signed parents) and no caching, so a
        # record is seen as soon as the authoritative server has it.
        r = self._resolver
        # Only the primary: the secondary lags until retransfer(), and which one a resolver
        # asks is its choice, so Pebble's answer would depend on chance.
        stubs = {
            ZONE: p.address,
            DELEGATE_ZONE: p.address,
            PDNS_ZONE: net_address(self.net, PDNS_HOST),
        }
        local = ""
        for zone, servers in stubs.items():
            local += (
                f'\nzone "{zone}" {{\n\ttype static-stub;\n'
                f"\tserver-addresses {{ {servers}; }};\n}};\n"
            )
        recursion = (
            "\trecursion yes;\n\tallow-recursion { 127.0.0.0/8; };\n"
            f'\tvalidate-except {{ "{ZONE}"; "{DELEGATE_ZONE}"; "{PDNS_ZONE}"; }};\n'
            "\tmax-cache-ttl 0;\n\tmax-ncache-ttl 0;\n"
        )
        r.prepare(
            self._options(r, f"\tquery-source address {r.address};\n", recursion), local, keys
        )

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> Bind:
        """Start the primary, then the secondary; returns when both serve every zone."""
        try:
            for named in (self._primary, self._secondary, self._resolver):
                if named.proc is None or named.proc.poll() is not None:
                    named.start()
                    named.wait_ready(self.zones, recursive=named is self._resolver)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self._resolver.stop()
        self._secondary.stop()
        self._primary.stop()

    def close(self) -> None:
        """Stop both servers, remove the loopback addresses we added and our work directory."""
        self.stop()
        if self._own_tmp:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Bind:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- control
    def rndc(self, server: str, *args: str) -> str:
        """``rndc -c rndc.conf -s SERVER -p 953 ARGS...``; returns its output."""
        proc = subprocess.run(
            [RNDC_BIN, "-c", str(self.rndc_conf), "-s", server, "-p", str(RNDC_PORT), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"rndc {' '.join(args)} on {server} exited {proc.returncode}: "
                f"{proc.stdout}{proc.stderr}"
            )
        return proc.stdout

    def retransfer(self, zone: str | None = None) -> None:
        """Make the secondary transfer ``zone`` (default: every zone) from the primary now, and
        return when that transfer has completed with the primary's serial.

        named drops a retransfer asked for while a transfer of the zone is running, so it is
        asked again (once a second) until a transfer completes with the serial wanted."""
        for name in self.zones if zone is None else (zone,):
            self._retransfer_one(name)

    def _retransfer_one(self, zone: str) -> None:
        wanted = serial(self.primary, zone)
        done_before = self._transfers_completed(zone)
        asked = time.monotonic()
        self.rndc(self.secondary, "retransfer", zone)

        def transferred() -> bool:
            nonlocal asked
            if (
                self._transfers_completed(zone) > done_before
                and serial(self.secondary, zone) >= wanted
            ):
                return True
            if time.monotonic() - asked > 1.0:
                asked = time.monotonic()
                self.rndc(self.secondary, "retransfer", zone)
            return False

        wait_until(
            transferred,
            what=f"secondary's transfer of {zone} (serial {wanted})",
            proc=self._secondary.proc,
            log=self._secondary.log_text,
        )

    def _transfers_completed(self, zone: str) -> int:
        return self._secondary.log_text().count(
            f"transfer of '{zone}/IN' from {self.primary}#{DNS_PORT}: Transfer completed"
        )

    # ----------------------------------------------------------------- queries
    def primary_serial(self, zone: str = ZONE) -> int:
        return serial(self.primary, zone)

    def secondary_serial(self, zone: str = ZONE) -> int:
        return serial(self.secondary, zone)

    def txt(self, server: str, name: str) -> list[str]:
        """TXT strings ``server`` (``self.primary``, ``self.secondary`` or ``self.resolver``,
        asked with recursion desired) answers for ``name``."""
        return txt(server, name, recursive=server == self.resolver)

    def zone_snapshot(self, zone: str = ZONE, server: str | None = None) -> list[str]:
        """``zone_snapshot`` of ``zone`` on ``server`` (default the primary), TSIG-signed."""
        return zone_snapshot(zone, server or self.primary, key_file=self.key_file)

    # ----------------------------------------------------------------- logs
    def log_text(self) -> str:
        return "\n".join(
            f"--- {named.role}\n{named.log_text()}"
            for named in (self._primary, self._secondary, self._resolver)
        )
