"""What the DNS server fixtures share: the loopback address plan, the aliases on ``lo``, TSIG
key files, and direct queries (dnspython) to one server.

Address plan: every authoritative server listens on port 53, as in real life (certsmith looks up
a zone's NS records and asks each NS address on port 53), on its own loopback address
``127.53.N.x``. ``N`` is 1 + the pytest-xdist worker number (gw0 -> 1, no xdist -> 1), so the
workers' servers never meet; benchmarks pass an explicit ``N`` (bench uses 200). Host parts:
``.1`` the BIND primary, ``.2`` the BIND secondary, ``.3`` PowerDNS, ``.4`` a recursive BIND
resolver that reaches those (what Pebble asks, as a CA asks its resolver).
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.zone

from tests.support.net import ServerDied, die_with_parent, wait_until

DNS_PORT = 53
PRIMARY_HOST = 1
SECONDARY_HOST = 2
PDNS_HOST = 3
RESOLVER_HOST = 4
BENCH_NET = 200  # the N benchmarks use, clear of any worker's

TSIG_ALGORITHM = "hmac-sha256"
QUERY_TIMEOUT = 2.0


def worker_net() -> int:
    """``N`` of this pytest-xdist worker: 1 + its number (gw0 -> 1), 1 without xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        return 1 + int(worker[2:]) % 150
    return 1


def net_address(net: int, host: int) -> str:
    """``127.53.<net>.<host>``."""
    if not (1 <= net <= 254 and 1 <= host <= 254):
        raise ValueError(f"127.53.{net}.{host}: net and host must be 1..254")
    return f"127.53.{net}.{host}"


class LoopbackAlias:
    """An address on ``lo`` (``ip addr add ADDR/32 dev lo``) for as long as a server needs it:
    named listens only on addresses an interface has. An address that was already there (a
    crashed earlier run, another fixture) is used as it is and left in place at the end."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.added = False

    def add(self) -> None:
        if self.added:
            return
        proc = subprocess.run(
            ["ip", "addr", "add", f"{self.address}/32", "dev", "lo"],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0:
            self.added = True
        elif "exists" not in proc.stderr and "already assigned" not in proc.stderr:
            raise RuntimeError(
                f"ip addr add {self.address}/32 dev lo failed (the DNS fixtures "
                f"need root): {proc.stderr.strip()}"
            )

    def remove(self) -> None:
        if not self.added:
            return
        subprocess.run(
            ["ip", "addr", "del", f"{self.address}/32", "dev", "lo"],
            capture_output=True,
            check=False,
        )
        self.added = False


def as_root() -> bool:
    return os.geteuid() == 0


def chown(path: Path, user: str) -> None:
    """Give ``path`` to ``user`` (and its group) when we are root; otherwise leave it ours."""
    if as_root():
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


# -- processes ----------------------------------------------------------------------------------
SUPERVISE = Path(__file__).resolve().parent.parent / "supervise.py"


def start_supervised(
    argv: list[str], control: Path, log_path: Path, cwd: Path
) -> subprocess.Popen[bytes]:
    """Run a server under tests/support/supervise.py (a stand-in for its systemd unit) in
    ``control``: named and pdns_server drop to their users, and a change of user clears the
    kernel's parent-death signal, so it is the supervisor, staying root, that dies with the
    test run and stops the server. Output goes to ``log_path``."""
    control.mkdir(parents=True, exist_ok=True)
    (control / "state").unlink(missing_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, str(SUPERVISE), "run", str(control), "--", *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            preexec_fn=die_with_parent,
        )


def wait_supervised(
    probe: Callable[[], bool],
    *,
    what: str,
    control: Path,
    proc: subprocess.Popen[bytes] | None,
    log: Callable[[], str],
    timeout: float = 30.0,
) -> None:
    """``wait_until(probe)``, reporting at once (with the log) a server that exited."""

    def ready() -> bool:
        if probe():
            return True
        state = (control / "state").read_text().split() if (control / "state").exists() else []
        if state[:1] == ["stopped"]:
            raise ServerDied(f"{what}: process exited with {state[2]}\n{log()[-3000:]}")
        return False

    wait_until(ready, what=what, timeout=timeout, proc=proc, log=log)


# -- TSIG keys ------------------------------------------------------------------------------------
_KEY_RE = re.compile(
    r'key\s+"?([^"\s]+)"?\s*\{\s*algorithm\s+"?([\w-]+)"?;\s*'
    r'secret\s+"([^"]+)";',
    re.S,
)


def make_key_file(path: Path, name: str) -> Path:
    """``tsig-keygen -a hmac-sha256 NAME > path``, mode 0600."""
    out = subprocess.run(
        ["tsig-keygen", "-a", TSIG_ALGORITHM, name], capture_output=True, text=True, check=True
    ).stdout
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(out)
    return path


def read_key_file(path: Path | str) -> tuple[str, str, str]:
    """(name, algorithm, base64 secret) of a BIND ``key`` clause file (tsig-keygen's output)."""
    match = _KEY_RE.search(Path(path).read_text())
    if match is None:
        raise ValueError(f"{path}: no key clause")
    name, algorithm, secret = match.groups()
    return name, algorithm, secret


def keyring(path: Path | str) -> tuple[dict[dns.name.Name, dns.tsig.Key], dns.name.Name]:
    """dnspython keyring and key name for a key file (for ``dns.message.make_query(...)``'s
    ``use_tsig`` / ``dns.query.xfr(keyring=..., keyname=...)``)."""
    name, algorithm, secret = read_key_file(path)
    key_name = dns.name.from_text(name)
    ring = dns.tsigkeyring.from_text({name: (algorithm, secret)})
    return ring, key_name


# -- direct queries -------------------------------------------------------------------------------
def query(
    server: str,
    name: str,
    rdtype: str,
    *,
    port: int = DNS_PORT,
    timeout: float = QUERY_TIMEOUT,
    recursive: bool = False,
) -> dns.message.Message:
    """One query straight to ``server`` (recursion desired only if ``recursive``); UDP, TCP
    when truncated."""
    request = dns.message.make_query(name, rdtype)
    if not recursive:
        request.flags &= ~dns.flags.RD
    response, _tcp = dns.query.udp_with_fallback(request, server, timeout=timeout, port=port)
    return response


def answers(server: str, name: str, *, port: int = DNS_PORT, recursive: bool = False) -> bool:
    """Readiness probe: ``server`` answers an SOA query for zone ``name`` (authoritatively,
    unless ``recursive``: then as a resolver)."""
    try:
        response = query(server, name, "SOA", port=port, timeout=0.5, recursive=recursive)
    except (OSError, dns.exception.DNSException):
        return False
    authoritative = bool(response.flags & dns.flags.AA) or recursive
    return response.rcode() == dns.rcode.NOERROR and authoritative and bool(response.answer)


def txt(server: str, name: str, *, port: int = DNS_PORT, recursive: bool = False) -> list[str]:
    """The TXT strings ``server`` answers for ``name`` (sorted; each record's strings joined;
    a CNAME chain the server follows included), ``[]`` for NXDOMAIN or no TXT. ``recursive``
    for a resolver (``Bind.resolver``): an authoritative server does not follow a CNAME into
    another zone."""
    response = query(server, name, "TXT", port=port, recursive=recursive)
    found = []
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.TXT:
            found += [b"".join(rdata.strings).decode() for rdata in rrset]
    return sorted(found)


def serial(server: str, zone: str, *, port: int = DNS_PORT) -> int:
    """The SOA serial ``server`` has for ``zone``."""
    response = query(server, zone, "SOA", port=port)
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.SOA:
            return int(rrset[0].serial)
    raise LookupError(
        f"{server} has no SOA for {zone} (rcode {dns.rcode.to_text(response.rcode())})"
    )


def zone_snapshot(
    zone: str, server: str, *, key_file: Path | str | None = None, port: int = DNS_PORT
) -> list[str]:
    """The zone as ``server`` serves it (AXFR, TSIG-signed with ``key_file`` if given), as sorted
    master-file lines ``name ttl IN type data`` with absolute names, WITHOUT the SOA record (its
    serial moves on every update), so a test can assert a zone is the same before and after."""
    ring: dict[dns.name.Name, dns.tsig.Key] | None = None
    key_name: dns.name.Name | None = None
    if key_file is not None:
        ring, key_name = keyring(key_file)
    xfr = dns.query.xfr(
        server,
        zone,
        port=port,
        keyring=ring,
        keyname=key_name,
        timeout=QUERY_TIMEOUT,
        lifetime=10.0,
        relativize=False,
    )
    loaded = dns.zone.from_xfr(xfr, relativize=False)
    lines: Iterable[str] = (
        f"{name} {rdataset.ttl} IN {dns.rdatatype.to_text(rdataset.rdtype)} {rdata.to_text()}"
        for name, node in loaded.nodes.items()
        for rdataset in node.rdatasets
        if rdataset.rdtype != dns.rdatatype.SOA
        for rdata in rdataset
    )
    return sorted(lines)
