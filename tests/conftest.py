"""Shared fixtures: a real Pebble CA, real lighttpd servers, and the certsmith CLI as a process.

Fixture API (see tests/support/ for the classes):

- ``pebble`` (session, one per xdist worker): a running ``Pebble`` with default settings
  (no nonce rejection, no authz reuse, 5-year certificates, ARI).
- ``pebble_factory(**kwargs) -> Pebble`` (function): a fresh, started Pebble for fault tests;
  kwargs are ``Pebble``'s (``nonce_reject=50``, ``authz_reuse=100``, ``validity=3600``,
  ``env={...}``). Stopped at the end of the test.
- ``lighttpd_factory(docroot, *, port=None, pemfile=None, privkey=None, tls_port=None,
  start=True) -> Lighttpd`` (function): a lighttpd on 127.0.0.1; pass ``port=pebble.http_port``
  to answer Pebble's http-01 requests from ``docroot``. Stopped at the end of the test.
- ``served_path`` (function): a world-traversable temporary directory for document roots and
  files the servers read as www-data (pytest's ``tmp_path`` is private to root).
- ``cs_home`` (function): an empty, not yet created state directory (a ``Path``).
- ``run_certsmith(*args, env=None, check=False, home=None, server=pebble, timeout=120)
  -> CompletedProcess[str]``: runs ``python -m certsmith`` with CERTSMITH_HOME=cs_home
  and REQUESTS_CA_BUNDLE=pebble.ca_bundle.
- ``certsmith_env`` (function): the environment ``run_certsmith`` uses (for Popen-based tests).
- ``openssl_verify(cert, chain=None, root=None) -> CompletedProcess[str]``: fixture wrapping
  ``verify_chain`` below; ``root`` defaults to the session Pebble's root.

Hypothesis runs with the ``repeatable`` profile below unless ``CERTSMITH_HYPOTHESIS=explore``.

Tiers: every test that needs a server (Pebble, nginx, Apache, lighttpd, openssl s_server,
sslyze, Chromium, a real proxy or upstream process, an SMTP/webhook/TLS server of its own...)
gets the ``servers`` marker here, in ``pytest_collection_modifyitems``: by the fixtures it uses
(``SERVER_FIXTURES``, directly or through another fixture) or by its module
(``SERVER_MODULES``, modules that start servers themselves). The few tests that need no server
but run for long (stress runs, pytest in a subprocess) carry ``@pytest.mark.slow`` themselves.
``scripts/test.sh --fast`` runs the rest (``-m "not servers and not slow"``: seconds, no
servers installed); plain ``scripts/test.sh`` runs everything, and is what CI runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from hypothesis import HealthCheck, settings

from tests.support.lighttpd import Lighttpd
from tests.support.pebble import Pebble

REPO = Path(__file__).resolve().parent.parent

# -- Hypothesis: property tests never turn the suite red by chance ---------------------------------
# ``repeatable`` (the default, on CI and on a fresh clone alike): each test draws the same
# examples on every run (derandomized), reads and writes no example database, and has no
# deadline and no too-slow check, since a loaded machine is slow, not wrong. A failure prints its
# reproduction blob; what it found is then kept in the test as an explicit ``@example``.
# ``CERTSMITH_HYPOTHESIS=explore``: random examples, ten times as many (tests that set their own
# ``max_examples`` keep it), remembered in .hypothesis/ so a failure found replays; for looking
# for new failures, never for CI. Loaded here, before any test module makes its settings.
_BASE = settings.get_profile("default")  # not Hypothesis's own "ci", which CI=true would load
_HYPOTHESIS_PROFILES = {
    "repeatable": settings(
        _BASE,
        derandomize=True,
        database=None,
        print_blob=True,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    ),
    "explore": settings(
        _BASE,
        derandomize=False,
        max_examples=1000,
        print_blob=True,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    ),
}
for _name, _profile in _HYPOTHESIS_PROFILES.items():
    settings.register_profile(_name, _profile)


def pytest_configure(config: pytest.Config) -> None:
    """Load the Hypothesis profile (before collection imports any test module)."""
    wanted = os.environ.get("CERTSMITH_HYPOTHESIS", "repeatable")
    if wanted not in _HYPOTHESIS_PROFILES:
        raise pytest.UsageError(
            f"CERTSMITH_HYPOTHESIS={wanted}: choose one of {', '.join(_HYPOTHESIS_PROFILES)}"
        )
    settings.load_profile(wanted)


# -- tiers: which tests need servers ------------------------------------------------------------
# Fixtures of this file that start a server, or may (run_certsmith and openssl_verify start the
# session Pebble on first use); any fixture depending on one (certsmith_env, a module's own
# fixtures) is caught through the test's fixture closure.
SERVER_FIXTURES = frozenset(
    {
        "pebble",
        "pebble_factory",
        "lighttpd_factory",
        "webserver",
        "run_certsmith",
        "openssl_verify",
    }
)
# Modules whose tests start servers themselves (in their own fixtures or in the test body).
SERVER_MODULES = frozenset(
    {
        "test_alerts",  # SMTP and webhook receivers
        "test_check",  # TLS and HTTP servers in threads
        "test_check_chains",  # openssl s_server
        "test_deadlines",  # trickling TCP/TLS servers
        "test_dns_providers_servers",  # named and pdns_server
        "test_localca",  # an HTTPS server in a thread, Chromium, Node
        "test_proxy_config",  # the proxy and the upstream app as processes
        "test_proxy_e2e",
        "test_proxy_headers",
        "test_proxy_memory",
        "test_proxy_pipelining",
        "test_proxy_upstream",
        "test_servers_hsts",  # nginx, Apache, lighttpd (and their validators on the stock trees)
        "test_servers_listen",
        "test_servers_render",  # nginx -t, apache2ctl configtest, lighttpd -tt
        "test_servers_tls",  # a Pebble of its own, the servers, sslyze
        "test_state_damage",  # a webhook receiver
        "test_tls_policy",  # the proxy, sslyze
    }
)


# Parameters whose value starts a server in a fixture of the test module (through
# ``request.getfixturevalue``, which the fixture closure cannot see): the PostgreSQL store of
# tests/test_store.py's contract, run on the session ``postgres``.
SERVER_PARAMS: dict[str, frozenset[object]] = {"store_kind": frozenset({"pg"})}


def needs_servers(item: pytest.Item) -> bool:
    module = getattr(item, "module", None)
    name = module.__name__.rpartition(".")[2] if module is not None else ""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return (
        name in SERVER_MODULES
        or not SERVER_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))
        or any(params.get(param) in values for param, values in SERVER_PARAMS.items())
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if needs_servers(item):
            item.add_marker(pytest.mark.servers)


def verify_chain(
    cert: Path | str, root: Path | str, chain: Path | str | None = None
) -> subprocess.CompletedProcess[str]:
    """``openssl verify -CAfile root [-untrusted chain] cert``; check ``.returncode == 0``.

    ``cert`` may be a fullchain file: openssl verifies its first certificate."""
    cmd = ["openssl", "verify", "-CAfile", str(root)]
    if chain is not None:
        cmd += ["-untrusted", str(chain)]
    cmd.append(str(cert))
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def count_orders(pebble: Pebble) -> int:
    """Orders Pebble has created since it was constructed (all runs)."""
    return pebble.count_orders()


@pytest.fixture(scope="session")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    with Pebble(tmp_path_factory.mktemp("pebble")) as server:
        yield server


class PebbleFactory(Protocol):
    def __call__(self, **kwargs: Any) -> Pebble: ...


@pytest.fixture
def pebble_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PebbleFactory]:
    started: list[Pebble] = []

    def make(**kwargs: Any) -> Pebble:
        server = Pebble(tmp_path_factory.mktemp("pebble-f"), **kwargs)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.close()


class LighttpdFactory(Protocol):
    def __call__(
        self,
        docroot: Path | str,
        *,
        port: int | None = None,
        tls_port: int | None = None,
        pemfile: Path | str | None = None,
        privkey: Path | str | None = None,
        start: bool = True,
    ) -> Lighttpd: ...


@pytest.fixture
def lighttpd_factory() -> Iterator[LighttpdFactory]:
    started: list[Lighttpd] = []

    def make(
        docroot: Path | str,
        *,
        port: int | None = None,
        tls_port: int | None = None,
        pemfile: Path | str | None = None,
        privkey: Path | str | None = None,
        start: bool = True,
    ) -> Lighttpd:
        server = Lighttpd(docroot, port=port, tls_port=tls_port, pemfile=pemfile, privkey=privkey)
        started.append(server)
        return server.start() if start else server

    yield make
    for server in started:
        server.close()


@pytest.fixture
def served_path() -> Iterator[Path]:
    """A directory the test servers' workers (www-data, as on Debian) can reach, like /var/www:
    pytest's ``tmp_path`` is private to root. Removed at the end of the test."""
    path = Path(tempfile.mkdtemp(prefix="certsmith-served-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def webserver(pebble: Pebble) -> Iterator[Callable[[str], Any]]:
    """``webserver(kind)``: a started nginx/apache/lighttpd (Debian's stock tree, see
    tests/support/webservers.py) whose HTTP port is Pebble's http-01 port."""
    from tests.support.net import free_port
    from tests.support.webservers import SERVERS, WebServer

    started: list[WebServer] = []

    def make(kind: str) -> WebServer:
        srv = SERVERS[kind](http_port=pebble.http_port, https_port=free_port())
        started.append(srv)
        return srv.start()

    yield make
    for srv in started:
        srv.close()


@pytest.fixture
def cs_home(tmp_path: Path) -> Path:
    """certsmith's state directory for this test (not created: certsmith creates it)."""
    return tmp_path / "certsmith-home"


def _certsmith_env(
    home: Path, server: Pebble | None, extra: dict[str, str] | None
) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CERTSMITH_DEBUG", None)
    env["CERTSMITH_HOME"] = str(home)
    if server is not None:
        env["REQUESTS_CA_BUNDLE"] = str(server.ca_bundle)
    src = str(REPO / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    if extra:
        env.update(extra)
    return env


@pytest.fixture
def certsmith_env(cs_home: Path, pebble: Pebble) -> dict[str, str]:
    return _certsmith_env(cs_home, pebble, None)


class RunCertsmith(Protocol):
    def __call__(
        self,
        *args: str | os.PathLike[str],
        env: dict[str, str] | None = None,
        check: bool = False,
        home: Path | None = None,
        server: Pebble | None = None,
        timeout: float = 120,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]: ...


@pytest.fixture
def run_certsmith(cs_home: Path, request: pytest.FixtureRequest) -> RunCertsmith:
    """Run the certsmith CLI as a subprocess.

    ``server`` picks the Pebble whose TLS bundle goes into REQUESTS_CA_BUNDLE (default: the
    session ``pebble``, started lazily on first use); ``env`` adds/overrides variables;
    ``check=True`` raises on a non-zero exit (with stdout/stderr in the message).
    """

    def run(
        *args: str | os.PathLike[str],
        env: dict[str, str] | None = None,
        check: bool = False,
        home: Path | None = None,
        server: Pebble | None = None,
        timeout: float = 120,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        if server is None:
            server = request.getfixturevalue("pebble")
        cmd = [sys.executable, "-m", "certsmith", *map(str, args)]
        proc = subprocess.run(
            cmd,
            env=_certsmith_env(home or cs_home, server, env),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"certsmith {' '.join(map(str, args))} exited {proc.returncode}\n"
                f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
            )
        return proc

    return run


@pytest.fixture
def openssl_verify(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[..., subprocess.CompletedProcess[str]]:
    def verify(
        cert: Path | str, chain: Path | str | None = None, root: Path | str | None = None
    ) -> subprocess.CompletedProcess[str]:
        if root is None:
            server: Pebble = request.getfixturevalue("pebble")
            root = tmp_path / "pebble-root.pem"
            Path(root).write_text(server.root_pem())
        return verify_chain(cert, root, chain)

    return verify


# -- dns-01: real DNS servers (tests/support/dns/) and Pebbles that resolve with them -------------
# ``bind_dns`` (session): a started ``Bind``: primary 127.53.N.1, secondary 127.53.N.2 (transfers
# on ``retransfer()`` only), recursive resolver 127.53.N.4, all on port 53; ``key_file`` /
# ``wrong_key_file`` are TSIG keys. ``pdns`` (session): a started ``PowerDns`` on 127.53.N.3:53
# with its API (``api_url``, ``api_key``). ``pebble_bind`` / ``pebble_pdns`` (session): Pebbles
# whose DNS is BIND's resolver (it follows CNAMEs across zones, which dns-01 delegation needs and
# an authoritative-only server does not do) / PowerDNS itself.
SERVER_FIXTURES = SERVER_FIXTURES | {"bind_dns", "pdns", "pebble_bind", "pebble_pdns"}

from tests.support.dns import DNS_PORT, Bind, PowerDns  # noqa: E402  (this section's own)


@pytest.fixture(scope="session")
def bind_dns() -> Iterator[Bind]:
    with Bind() as server:
        yield server


@pytest.fixture(scope="session")
def pdns() -> Iterator[PowerDns]:
    with PowerDns() as server:
        yield server


@pytest.fixture(scope="session")
def pebble_bind(tmp_path_factory: pytest.TempPathFactory, bind_dns: Bind) -> Iterator[Pebble]:
    with Pebble(
        tmp_path_factory.mktemp("pebble-bind"), dns_server=f"{bind_dns.resolver}:{DNS_PORT}"
    ) as server:
        yield server


@pytest.fixture(scope="session")
def pebble_pdns(tmp_path_factory: pytest.TempPathFactory, pdns: PowerDns) -> Iterator[Pebble]:
    with Pebble(
        tmp_path_factory.mktemp("pebble-pdns"), dns_server=f"{pdns.address}:{DNS_PORT}"
    ) as server:
        yield server


# -- the PostgreSQL store: a throw-away cluster (tests/support/postgres.py) ------------------------
# ``postgres`` (session): a started ``Postgres``; ``postgres.database(name)`` creates a database
# and returns its URL. While it runs, ``tests.support.postgres.node_store(where)`` (what
# ``make_store("pg", where)`` calls) opens a store on the database named after ``where``.
SERVER_FIXTURES = SERVER_FIXTURES | {"postgres"}

from tests.support import postgres as _pg  # noqa: E402  (this section's own)


@pytest.fixture(scope="session")
def postgres() -> Iterator[_pg.Postgres]:
    with _pg.Postgres() as cluster:
        _pg.RUNNING.append(cluster)
        try:
            yield cluster
        finally:
            _pg.RUNNING.remove(cluster)
