"""``certsmith proxy`` sites that use DNS-01 (the way to a public wildcard), without DNS: the
configuration (``challenge = "dns-01"``, ``[site.dns]`` over the top-level ``[dns]``, ``--dns``
on the command line), the proxy's certificate job ordering each group of sites with its own
solver and keeping it in their site files, and a wildcard certificate chosen by SNI and a
request routed by Host for exactly the names one label deeper."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certsmith.base.identifiers import parse_identifiers
from certsmith.base.model import SiteSpec, WebrootSpec
from certsmith.base.sites import load_site, save_site
from certsmith.base.solverspec import DnsSpec, TlsAlpnSpec
from certsmith.base.store import open_store
from certsmith.cli import cmd_proxy
from certsmith.cli.main import build_parser
from certsmith.errors import CAError, UsageError
from certsmith.services import root
from certsmith.services.lifecycle import Bus, Message, RunDone
from certsmith.services.manager import GetRequest, Outcome
from certsmith.services.proxy import config, issuing
from certsmith.services.proxy.certs import SiteContexts, dispatch_context
from certsmith.services.proxy.runtime import Runtime

WILD = '[[site]]\nnames = ["*.example.org"]\nto = "127.0.0.1:9"\n'
HOOK = '[site.dns]\nprovider = "hook"\nhook = "/usr/local/bin/dns-hook"\n'


def load(tmp_path: Path, text: str, **overrides: Any) -> config.ProxyConfig:
    path = tmp_path / "conf" / "proxy.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return config.load(path, **overrides)


def refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(UsageError) as caught:
        load(tmp_path, text)
    line = str(caught.value)
    assert "\n" not in line and line.startswith(str(tmp_path / "conf" / "proxy.toml")), line
    return line


# -- configuration ----------------------------------------------------------------------------


def test_site_dns_table_over_the_dns_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir("/")  # relative paths are the file's, not the working directory's
    cfg = load(
        tmp_path,
        """
[dns]
provider = "rfc2136"
tsig_key_file = "keys/acme.key"
resolvers = ["127.0.0.1:5353"]
timeout = 120

[[site]]
names = ["*.example.org", "example.org"]
to = "127.0.0.1:9"
challenge = "dns-01"
[site.dns]
server = "ns1.example.org:53"
ttl = 30

[[site]]
names = ["*.apps.example.net"]
to = "127.0.0.1:9"
challenge = "dns-01"
[site.dns]
provider = "lexicon:cloudflare"
credentials = "../secrets/cloudflare.env"
alias = "Acme.Example.COM."

[[site]]
names = ["www.example.com"]
to = "127.0.0.1:9"
""",
    )
    first, second, plain = cfg.sites
    assert first.challenge == "dns-01" and first.cert_name == "_.example.org"
    assert first.dns == DnsSpec(
        provider="rfc2136",
        server="ns1.example.org:53",
        tsig_key_file=str(tmp_path / "conf" / "keys" / "acme.key"),
        resolvers=("127.0.0.1:5353",),
        timeout=120,
        ttl=30,
    )
    # Another provider: none of the defaults' rfc2136 keys, the common ones kept.
    assert second.dns == DnsSpec(
        provider="lexicon:cloudflare",
        credentials=str(tmp_path / "conf" / ".." / "secrets" / "cloudflare.env"),
        alias="acme.example.com",
        resolvers=("127.0.0.1:5353",),
        timeout=120,
    )
    assert (plain.challenge, plain.dns) == ("", None)
    assert issuing.site_solver(plain, cfg, tmp_path) == issuing.solver_spec(cfg, tmp_path)


def test_top_level_dns01_is_the_default_of_public_sites(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        f"""
challenge = "dns-01"
[dns]
provider = "hook"
hook = "/usr/local/bin/dns-hook"

{WILD}
[[site]]
names = ["app.test"]
to = "127.0.0.1:9"

[[site]]
names = ["www.example.com"]
to = "127.0.0.1:9"
challenge = "tls-alpn-01"
""",
    )
    wild, local, alpn = cfg.sites
    assert wild.dns == DnsSpec(provider="hook", hook="/usr/local/bin/dns-hook")
    assert (local.uses_acme, local.challenge, local.dns) == (False, "", None)
    assert (alpn.challenge, alpn.dns) == ("tls-alpn-01", None)
    assert isinstance(issuing.site_solver(alpn, cfg, tmp_path), TlsAlpnSpec)
    assert issuing.site_solver(wild, cfg, tmp_path) == wild.dns


def test_command_line_challenge_override_reaches_the_sites(tmp_path: Path) -> None:
    text = '[dns]\nprovider = "hook"\nhook = "x"\n' + WILD.replace("*.", "www.")
    assert load(tmp_path, text).sites[0].dns is None
    site = load(tmp_path, text, challenge="dns-01").sites[0]
    assert site.dns == DnsSpec(provider="hook", hook="x")


# (the file's text, what its one error line must say)
BAD = [
    (
        WILD,
        "site 1 (*.example.org): *.example.org: public wildcard names need DNS-01: set "
        'challenge = "dns-01" with a [site.dns] table in the site',
    ),
    (WILD + 'challenge = "http-01"\n', "public wildcard names need DNS-01"),
    (
        WILD + HOOK,
        'a [site.dns] table is used only with challenge = "dns-01" (this site\'s is http-01)',
    ),
    (
        WILD + 'challenge = "dns-01"\n',
        'site 1 (*.example.org): challenge = "dns-01" needs a DNS provider: provider = rfc2136',
    ),
    ('challenge = "dns-01"\n' + WILD, 'challenge = "dns-01" needs a DNS provider'),
    (
        WILD + 'challenge = "dns-02"\n',
        'challenge = "dns-02": expected http-01, tls-alpn-01 or dns-01',
    ),
    ('challenge = "dns"\n' + WILD, 'challenge = "dns": expected http-01, tls-alpn-01 or'),
    (
        WILD + 'challenge = "dns-01"\n' + HOOK + "tiemout = 5\n",
        'site 1 (*.example.org): [site.dns] unknown setting "tiemout"; did you mean timeout?',
    ),
    (
        WILD + HOOK + 'challenge = "dns-01"\n',
        '[site.dns] unknown setting "challenge"; it belongs in the [[site]] table',
    ),
    (
        WILD + 'challenge = "dns-01"\n[site.dns]\nnames = ["x"]\n',
        '[site.dns] unknown setting "names"; it belongs in the [[site]] table',
    ),
    (
        '[dns]\nprovider = "hook"\nchallenge = "dns-01"\n' + WILD,
        '[dns] unknown setting "challenge"; it belongs in the top level',
    ),
    ('[dns]\nprovder = "hook"\n' + WILD, '[dns] unknown setting "provder"; did you mean provider?'),
    ('provider = "hook"\n' + WILD, 'unknown setting "provider"; it belongs in [dns]'),
    (
        WILD + 'challenge = "dns-01"\nprovider = "hook"\n',
        'site 1 (*.example.org): unknown setting "provider"; it belongs in [site.dns]',
    ),
    ("dns = 5\n" + WILD, "dns = 5: expected a [dns] table"),
    (
        WILD + 'challenge = "dns-01"\ndns = "hook"\n',
        'site 1 (*.example.org): dns = "hook": expected a [site.dns] table',
    ),
    (
        WILD + 'challenge = "dns-01"\n[site.dns]\nprovider = "bind"\n',
        '[site.dns] provider = "bind": expected rfc2136, lexicon:PROVIDER',
    ),
    (
        WILD + 'challenge = "dns-01"\n[site.dns]\nprovider = "lexicon"\n',
        'provider = "lexicon": expected',
    ),
    (
        WILD + 'challenge = "dns-01"\n[site.dns]\nprovider = "rfc2136"\n',
        '[site.dns] provider = "rfc2136" needs tsig_key_file = "FILE"',
    ),
    (
        '[dns]\nprovider = "hook"\n' + WILD + 'challenge = "dns-01"\n',
        '[dns] provider = "hook" needs hook = "COMMAND"',
    ),
    (
        WILD + 'challenge = "dns-01"\n' + HOOK + 'tsig_key_file = "k"\n',
        '[site.dns] tsig_key_file = "k": not used by provider = "hook" (only by rfc2136)',
    ),
    (
        '[dns]\nprovider = "hook"\nhook = "x"\ncredentials = "c"\n'
        + WILD
        + 'challenge = "dns-01"\n',
        '[dns] credentials = "c": not used by provider = "hook"',
    ),
    (
        WILD + 'challenge = "dns-01"\n' + HOOK + "timeout = 0\n",
        "[site.dns] timeout = 0: expected a number of seconds 1-86400",
    ),
    (WILD + 'challenge = "dns-01"\n' + HOOK + "timeout = 1.5\n", "timeout = 1.5: expected"),
    (WILD + 'challenge = "dns-01"\n' + HOOK + 'ttl = "60"\n', 'ttl = "60": expected a TTL'),
    (
        WILD + 'challenge = "dns-01"\n' + HOOK + "resolvers = 5\n",
        "resolvers = 5: expected a list of resolvers",
    ),
    (
        WILD + 'challenge = "dns-01"\n' + HOOK + 'alias = "a b"\n',
        'alias = "a b": expected a DNS zone',
    ),
    (
        '[[site]]\nnames = ["app.test"]\nto = "127.0.0.1:9"\nchallenge = "dns-01"\n',
        "site 1 (app.test): app.test gets a local-CA certificate, which needs no challenge; "
        'remove challenge = "dns-01"',
    ),
    (
        '[[site]]\nnames = ["app.test"]\nto = "127.0.0.1:9"\n' + HOOK,
        "app.test gets a local-CA certificate, which needs no challenge; remove [site.dns]",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[b[1][:50] for b in BAD])
def test_bad_dns_setting_is_one_line(tmp_path: Path, text: str, expected: str) -> None:
    line = refused(tmp_path, text)
    assert expected in line, line


def test_local_wildcards_still_need_no_dns(tmp_path: Path) -> None:
    site = load(tmp_path, '[[site]]\nnames = ["*.app.test"]\nto = "127.0.0.1:9"\n').sites[0]
    assert (site.uses_acme, site.dns) == (False, None)


# -- the command line ---------------------------------------------------------------------------


def started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *argv: str) -> config.ProxyConfig:
    """``certsmith proxy ARGV`` up to the point where the supervisor would start: the
    configuration it would be given."""
    from certsmith.services.proxy import supervisor

    seen: list[config.ProxyConfig] = []

    class Supervisor:
        def __init__(self, cfg: config.ProxyConfig, *_args: Any, **_kw: Any) -> None:
            seen.append(cfg)

        def run(self) -> int:
            return 0

    monkeypatch.setattr(supervisor, "Supervisor", Supervisor)
    args = build_parser("proxy").parse_args(["--home", str(tmp_path / "home"), "proxy", *argv])
    assert cmd_proxy.run(args) == 0
    return seen[0]


def test_cli_dns_makes_the_site_use_dns01(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = started(
        monkeypatch,
        tmp_path,
        "*.example.org,example.org",
        "--to",
        "8080",
        "--dns",
        "rfc2136",
        "--tsig-key-file",
        "acme.key",
        "--dns-server",
        "ns1:53",
        "--dns-resolver",
        "127.0.0.1:5353",
        "--dns-timeout",
        "90",
    )
    (site,) = cfg.sites
    assert [i.value for i in site.names] == ["*.example.org", "example.org"]
    assert site.challenge == "dns-01"
    assert site.dns == DnsSpec(
        provider="rfc2136",
        server="ns1:53",
        tsig_key_file=str(tmp_path / "acme.key"),
        resolvers=("127.0.0.1:5353",),
        timeout=90,
    )
    assert cfg.acme.challenge == "http-01"  # (no listener needed by this site)
    assert "ACME, DNS-01 certificate for *.example.org, example.org" in cmd_proxy.startup_banner(
        cfg, tmp_path
    )


CLI_REFUSED = [
    (["*.example.org", "--to", "8080"], "public wildcard names need DNS-01"),
    (
        ["example.org", "--to", "8080", "--challenge", "dns-01"],
        "--challenge dns-01 needs --dns PROVIDER",
    ),
    (
        [
            "example.org",
            "--to",
            "8080",
            "--dns",
            "hook",
            "--dns-hook",
            "x",
            "--challenge",
            "tls-alpn-01",
        ],
        "give --dns or --challenge tls-alpn-01, not both",
    ),
    (
        ["example.org", "--to", "8080", "--dns-hook", "x"],
        "--dns-hook is a DNS-01 option: add --dns PROVIDER",
    ),
    (
        ["localhost", "--to", "8080", "--dns", "hook", "--dns-hook", "x"],
        "--dns: localhost gets a local-CA certificate",
    ),
    (["example.org", "--to", "8080", "--dns", "rfc2136"], "--dns rfc2136 needs --tsig-key-file"),
    (
        ["--config", "proxy.toml", "--dns", "hook", "--dns-hook", "x"],
        "with --config, give the DNS provider in the file",
    ),
]


@pytest.mark.parametrize(("argv", "expected"), CLI_REFUSED, ids=[c[1][:40] for c in CLI_REFUSED])
def test_cli_dns_refusals(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv: list[str], expected: str
) -> None:
    with pytest.raises(UsageError, match=expected.replace("-", r"\-").replace("*", r"\*")):
        started(monkeypatch, tmp_path, *argv)


# -- the certificate job ------------------------------------------------------------------------


class FakeManager:
    """What the proxy's job asks of the Manager: each ``get`` request, and each lineage's
    solver as its site file says when ``renew`` is asked."""

    def __init__(self, store: Any, fail: set[str] | None = None) -> None:
        self.store = store
        self.fail = fail or set()
        self.requests: list[GetRequest] = []
        self.renewed: dict[str, Any] = {}
        self.damage: list[tuple[str, str]] = []

    def get(self, request: GetRequest) -> list[Outcome]:
        self.requests.append(request)
        names = [name for name, _ in request.groups]
        if self.fail & set(names):
            raise CAError("the CA is unreachable")
        now = dt.datetime.now(dt.UTC)
        return [Outcome(name, "issued", "version 1", "01", now) for name in names]

    def renew(self, names: list[str]) -> list[Outcome]:
        for name in names:
            self.renewed[name] = load_site(self.store, name).solver
        return [Outcome(name, "skipped", "not due") for name in names]


JOB_CONFIG = """
[dns]
provider = "hook"
hook = "/usr/local/bin/dns-hook"

[[site]]
names = ["*.example.org", "example.org"]
to = "127.0.0.1:9"
challenge = "dns-01"

[[site]]
names = ["www.example.com"]
to = "127.0.0.1:9"

[[site]]
names = ["*.example.net"]
to = "127.0.0.1:9"
challenge = "dns-01"

[[site]]
names = ["*.other.example"]
to = "127.0.0.1:9"
challenge = "dns-01"
[site.dns]
hook = "/usr/local/bin/other-hook"
"""


def job(
    monkeypatch: pytest.MonkeyPatch,
    home: Path,
    cfg: config.ProxyConfig,
    fail: set[str] | None = None,
) -> tuple[FakeManager, list[Message], issuing.JobResult, list[str]]:
    store = open_store(home)
    manager = FakeManager(store, fail)
    heard: list[Message] = []
    bus = Bus([heard.append])
    monkeypatch.setattr(
        root, "build", lambda _home, **_kw: root.Services(home, store, bus, manager)
    )  # type: ignore[arg-type]
    said: list[str] = []
    return manager, heard, issuing.run_job(cfg, home, said.append), said


def test_sites_are_ordered_in_one_get_per_solver(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg = load(tmp_path, JOB_CONFIG)
    home = tmp_path / "home"
    manager, _heard, result, said = job(monkeypatch, home, cfg)
    shared = DnsSpec(provider="hook", hook="/usr/local/bin/dns-hook")
    other = DnsSpec(provider="hook", hook="/usr/local/bin/other-hook")
    assert [(r.solver, [name for name, _ in r.groups]) for r in manager.requests] == [
        (shared, ["_.example.org", "_.example.net"]),
        (issuing.solver_spec(cfg, home), ["www.example.com"]),
        (other, ["_.other.example"]),
    ]
    assert [i.value for i in manager.requests[0].groups[0][1]] == ["*.example.org", "example.org"]
    assert sorted(result.changed) == sorted(s.cert_name for s in cfg.sites)
    assert not result.failed
    assert "ordering certificates for *.example.org, example.org; *.example.net from " in said[
        0
    ] and said[0].endswith("(DNS-01 through hook)")


def test_a_group_that_cannot_be_ordered_fails_alone_on_the_bus(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg = load(tmp_path, JOB_CONFIG)
    manager, heard, result, said = job(
        monkeypatch, tmp_path / "home", cfg, fail={"_.other.example"}
    )
    assert len(manager.requests) == 3  # the others were still ordered
    assert result.failed == ("_.other.example",)
    runs = [m for m in heard if isinstance(m, RunDone)]
    assert [(r.what, [(o.name, o.action) for o in r.outcomes]) for r in runs] == [
        ("issuance", [("_.other.example", "failed")])
    ]
    assert "cannot order certificates for *.other.example: the CA is unreachable" in said


def test_renewal_keeps_each_site_on_its_own_solver(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg = load(tmp_path, JOB_CONFIG)
    home = tmp_path / "home"
    store = open_store(home)
    listener = issuing.solver_spec(cfg, home)
    for site in cfg.sites:  # issued earlier, all through the proxy's HTTP-01 webroot
        store.publish(site.cert_name, {"cert.pem": b"-"}, frozenset())
        save_site(
            store,
            SiteSpec(
                site.cert_name,
                site.names,
                "https://ca.invalid/dir",
                WebrootSpec(webroot=str(tmp_path / "old-webroot")),
            ),
        )
    manager, _heard, _result, _said = job(monkeypatch, home, cfg)
    assert manager.requests == []  # nothing to order: each lineage has its names
    assert manager.renewed == {
        "_.example.org": DnsSpec(provider="hook", hook="/usr/local/bin/dns-hook"),
        "www.example.com": listener,
        "_.example.net": DnsSpec(provider="hook", hook="/usr/local/bin/dns-hook"),
        "_.other.example": DnsSpec(provider="hook", hook="/usr/local/bin/other-hook"),
    }
    # Kept in the site files: 'certsmith renew' from a timer renews them the same way.
    assert load_site(open_store(home), "_.example.org").solver == DnsSpec(
        provider="hook", hook="/usr/local/bin/dns-hook"
    )


# -- serving: SNI and Host ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "wildcard"),
    [
        ("a.example.org", "*.example.org"),
        ("x-1.example.org", "*.example.org"),
        ("a.b.example.org", "*.b.example.org"),
        ("example.org", "*.org"),
        ("org", None),
        ("", None),
        (".example.org", None),
        ("*.example.org", None),
        ("a*.example.org", None),
    ],
)
def test_covering_wildcard(name: str, wildcard: str | None) -> None:
    assert config.covering_wildcard(name) == wildcard


def _certificate(names: list[str]) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


SERVE_CONFIG = """
[dns]
provider = "hook"
hook = "/usr/local/bin/dns-hook"

[[site]]
names = ["*.example.org"]
to = "127.0.0.1:9001"
challenge = "dns-01"

[[site]]
names = ["shop.example.org"]
to = "127.0.0.1:9002"

[[site]]
names = ["*.example.net", "example.net"]
to = "127.0.0.1:9003"
challenge = "dns-01"
"""


@pytest.fixture
def served(tmp_path: Path) -> tuple[config.ProxyConfig, SiteContexts, Path]:
    """The sites above, each with a certificate published into the store as the job would,
    loaded as a worker loads them; the trust bundle of all three."""
    cfg = load(tmp_path, SERVE_CONFIG)
    home = tmp_path / "home"
    store = open_store(home)
    bundle = b""
    for site in cfg.sites:
        cert, key = _certificate([i.value for i in site.cert_identifiers])
        store.publish(
            site.cert_name, {"fullchain.pem": cert, "privkey.pem": key}, frozenset({"privkey.pem"})
        )
        bundle += cert
    (tmp_path / "bundle.pem").write_bytes(bundle)
    contexts = SiteContexts(home, cfg.sites)
    assert sorted(contexts.refresh()) == sorted(s.cert_name for s in cfg.sites)
    return cfg, contexts, tmp_path / "bundle.pem"


def handshake(contexts: SiteContexts, bundle: Path, name: str) -> list[str]:
    """A TLS handshake in memory to the proxy's dispatch context with SNI ``name``: the names
    on the certificate served (the client checks it covers ``name``)."""
    server_ctx = dispatch_context()
    contexts.install(server_ctx)
    client_ctx = ssl.create_default_context(cafile=str(bundle))
    pipes = [ssl.MemoryBIO() for _ in range(4)]
    server = server_ctx.wrap_bio(pipes[0], pipes[1], server_side=True)
    client = client_ctx.wrap_bio(pipes[2], pipes[3], server_hostname=name)
    done = {"client": False, "server": False}
    for _ in range(20):
        for side, obj, out, into in (
            ("client", client, pipes[3], pipes[0]),
            ("server", server, pipes[1], pipes[2]),
        ):
            if not done[side]:
                try:
                    obj.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLError:
                    if side == "client":
                        raise  # (what the client is told: the server's alert)
                    done[side] = True  # refused: its alert goes to the client
            into.write(out.read())
        if all(done.values()):
            break
    der = client.getpeercert(binary_form=True)
    assert der is not None
    san = (
        x509.load_der_x509_certificate(der)
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    return list(san.get_values_for_type(x509.DNSName))


@pytest.mark.parametrize(
    ("name", "certificate"),
    [
        ("a.example.org", ["*.example.org"]),
        ("www.example.org", ["*.example.org"]),
        ("shop.example.org", ["shop.example.org"]),  # a site of its own wins
        ("A.Example.ORG", ["*.example.org"]),
        ("x.example.net", ["*.example.net", "example.net"]),
        ("example.net", ["*.example.net", "example.net"]),  # the apex is on that certificate
    ],
)
def test_wildcard_certificate_is_chosen_by_sni(
    served: tuple[config.ProxyConfig, SiteContexts, Path], name: str, certificate: list[str]
) -> None:
    _cfg, contexts, bundle = served
    assert handshake(contexts, bundle, name) == certificate


@pytest.mark.parametrize(
    "name", ["a.b.example.org", "example.org", "a.shop.example.org", "a.b.example.net"]
)
def test_names_the_wildcard_does_not_cover_are_refused_by_sni(
    served: tuple[config.ProxyConfig, SiteContexts, Path], name: str
) -> None:
    _cfg, contexts, bundle = served
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        handshake(contexts, bundle, name)


def test_requests_are_routed_to_the_wildcard_site(
    served: tuple[config.ProxyConfig, SiteContexts, Path],
) -> None:
    cfg, loaded, _bundle = served
    contexts = SiteContexts(loaded.home, cfg.sites)  # as a worker starts: attached, then loaded

    async def build() -> Runtime:
        return Runtime(cfg, contexts)

    loop = asyncio.new_event_loop()
    try:
        runtime = loop.run_until_complete(build())
    finally:
        loop.close()
    wild, shop, net = runtime.sites

    def upstream(host: str, tls_site: Any = None) -> str | None:
        site = runtime.route(host, tls_site)
        return str(site.site.upstream) if site is not None else None

    assert upstream("a.example.org") == "127.0.0.1:9001"
    assert upstream("a.example.org", wild) == "127.0.0.1:9001"
    assert upstream("shop.example.org") == "127.0.0.1:9002"
    assert upstream("example.net", net) == upstream("x.example.net", net) == "127.0.0.1:9003"
    for host in ("a.b.example.org", "example.org", "a.shop.example.org"):
        assert upstream(host) is None, host
    # A connection whose certificate is another site's gets 421, not that site's app.
    assert upstream("shop.example.org", wild) is None
    assert upstream("a.example.org", shop) is None
    # The certificate a worker chose for the connection is the routed site's.
    assert contexts.by_name["*.example.org"].site is wild  # type: ignore[attr-defined]


def test_parse_options_accept_dns01() -> None:
    assert config.from_options(challenge="dns-01") == {"challenge": "dns-01"}
    with pytest.raises(UsageError, match="--challenge dns-01 needs --dns PROVIDER"):
        config.from_cli(["example.org"], "8080", challenge="dns-01")
    site = config.from_cli(["*.example.org"], "8080", dns=DnsSpec(provider="hook", hook="x")).sites[
        0
    ]
    assert site.names == parse_identifiers(["*.example.org"])
    assert site.dns == DnsSpec(provider="hook", hook="x")


def test_unreadable_dns_files_are_refused_before_anything_starts(tmp_path: Path) -> None:
    from certsmith.services.proxy.supervisor import Supervisor

    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "keys").mkdir()
    text = WILD + 'challenge = "dns-01"\n[site.dns]\nprovider = "rfc2136"\n'
    for key_file, reason in (("missing.key", "No such file or directory"), ("keys", "not a file")):
        cfg = load(tmp_path, text + f'tsig_key_file = "{key_file}"\n')
        with pytest.raises(UsageError) as caught:
            Supervisor(cfg, tmp_path / "home").prepare()
        assert str(caught.value) == (
            f"*.example.org: DNS-01 tsig_key_file {tmp_path / 'conf' / key_file}: {reason}"
        )
