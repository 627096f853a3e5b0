"""certsmith get: obtain certificates from an ACME CA."""

from __future__ import annotations

import argparse
from typing import Any

HELP = """\
Obtain a certificate for NAME... (DNS names or IP addresses) from an ACME CA, prove control with
HTTP-01 (--webroot of a running web server, --standalone on our own listener, or --nginx,
--apache, --lighttpd: through the running server, with no downtime: certsmith adds a small
include of its own mapping /.well-known/acme-challenge/ to its challenge directory, checks it
with the server's own validator, reloads gracefully before the order and lists the files it
changed; while that mapping is in place, --webroot for a name it answers is refused, since the
CA would find nothing there), store it under
live/<cert-name>/ (fullchain.pem, privkey.pem, cert.pem, chain.pem) and run the deploy targets.
Or with DNS-01 (--dns), the only way to a wildcard ('*.example.org'): TXT records written through
RFC 2136 with TSIG, a dns-lexicon provider or a hook command, then seen on every authoritative
server of the zone before the CA is asked (no fixed sleep), and removed afterwards (only
certsmith's values; after a crash, by the next run). 'certsmith dns check NAME ...' tries the
same options without the CA. The site is remembered: 'certsmith renew' renews it the same way.
A second 'get' of the same site started while one runs waits for it and then reports the
certificate it got as skipped.

deploy targets (--deploy-to, repeatable): PART=PATH[,owner=USER][,group=GROUP][,mode=0640]
  PART is fullchain, cert, chain, key, combined (cert+chain+key in one PEM, as lighttpd < 1.4.53
  and HAProxy want) or dir (all four files into the directory PATH; use this for a directory
  bind-mounted into a container: a single-file bind mount keeps the old certificate).
deploy commands (--deploy-command, repeatable) run with CERTSMITH_NAME, CERTSMITH_NAMES,
  CERTSMITH_LIVE_DIR, CERTSMITH_CERT, CERTSMITH_CHAIN, CERTSMITH_FULLCHAIN, CERTSMITH_KEY (and
  certbot's RENEWED_LINEAGE, RENEWED_DOMAINS) in the environment.

CA (--server): letsencrypt (default), letsencrypt-staging, zerossl, google, google-staging, or a
directory URL. A private ACME CA's HTTPS is verified with --ca-bundle FILE (or
$REQUESTS_CA_BUNDLE); the file's path is recorded with the site, so renewals from a timer, which
has no such variable, verify the CA the same way.

examples:
  certsmith get allsky.example.org --webroot /var/www/html --agree-tos \\
    --deploy-to combined=/etc/lighttpd/allsky.pem,mode=0600 \\
    --deploy-command 'systemctl reload lighttpd'
  certsmith get notebook.example.org --standalone --agree-tos \\
    --deploy-command 'systemctl restart jupyter'
  certsmith get '*.home.example.org' home.example.org --dns rfc2136 \\
    --tsig-key-file /etc/certsmith/acme-update.key --agree-tos
  certsmith get terrax9.se www.terrax9.se --nginx --agree-tos && \\
    certsmith install nginx terrax9.se --redirect 301 --hsts --proxy-to http://127.0.0.1:8080
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "get",
        help="obtain certificates from an ACME CA",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("names", nargs="+", metavar="NAME", help="DNS names or IP addresses")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--webroot", metavar="DIR", help="document root of a running web server")
    how.add_argument("--standalone", action="store_true", help="answer on our own listener")
    for server in ("nginx", "apache", "lighttpd"):
        how.add_argument(
            f"--{server}",
            dest="web_server",
            action="store_const",
            const=server,
            help=f"answer through the running {server} (reloaded, no downtime)",
        )
    from certsmith.cli import dnsopts

    how.add_argument(
        "--dns",
        metavar="PROVIDER",
        help=f"DNS-01 (wildcards): {dnsopts.PROVIDERS_HELP}; see DNS-01 below",
    )
    dnsopts.add_options(p, provider_flag=False)
    p.add_argument(
        "--http-port",
        type=int,
        default=80,
        metavar="N",
        help="port for --standalone, or the web server's HTTP port (default 80)",
    )
    p.add_argument(
        "--http-address",
        "--listen-address",
        dest="http_address",
        action="append",
        default=[],
        metavar="ADDR",
        help="address for --standalone (default: all); with --nginx, --apache, "
        "--lighttpd: the addresses of certsmith's HTTP listener (repeat, or "
        "separate with commas; default: exactly those your site listens on)",
    )
    p.add_argument("--cert-name", metavar="NAME", help="certificate name (default: first NAME)")
    p.add_argument(
        "--separate",
        action="store_true",
        help="one certificate per name (as many names as given: the limit of 100 "
        "is per certificate); a wildcard and its apex share one",
    )
    p.add_argument("--server", metavar="URL|ALIAS", help="ACME CA (default letsencrypt)")
    p.add_argument(
        "--ca-bundle",
        metavar="FILE",
        help="CA certificates verifying a private ACME CA (default "
        "$REQUESTS_CA_BUNDLE); remembered for renewals",
    )
    p.add_argument("--email", metavar="E", help="contact address for the account")
    p.add_argument("--agree-tos", action="store_true", help="accept the CA's terms of service")
    p.add_argument("--eab-kid", metavar="KID", help="External Account Binding key id")
    p.add_argument("--eab-hmac-key", metavar="KEY", help="External Account Binding HMAC key")
    p.add_argument(
        "--key-type",
        default="ecdsa-p256",
        help="ecdsa-p256 (default), ecdsa-p384, rsa2048, rsa3072, rsa4096",
    )
    p.add_argument("--reuse-key", action="store_true", help="keep the private key on renewal")
    p.add_argument("--profile", metavar="NAME", help="ACME profile (e.g. classic, shortlived)")
    p.add_argument("--preferred-chain", metavar="ISSUER_CN", help="pick this alternate chain")
    p.add_argument(
        "--deploy-to",
        action="append",
        default=[],
        metavar="SPEC",
        help="copy a part of the certificate somewhere (see above)",
    )
    p.add_argument(
        "--deploy-command",
        action="append",
        default=[],
        metavar="CMD",
        help="run after every issuance/renewal (e.g. 'systemctl reload nginx')",
    )
    from certsmith.cli import ocsp

    ocsp.add_option(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import os

    from certsmith.base.identifiers import (
        Identifier,
        check_cert_name,
        default_cert_name,
        parse_identifiers,
    )
    from certsmith.base.keytypes import check_key_type
    from certsmith.base.model import FileTarget, StandaloneSpec, WebrootSpec
    from certsmith.cli.main import home_from
    from certsmith.cli.render import progress_printer
    from certsmith.core.issuers.cas import resolve_server
    from certsmith.errors import UsageError
    from certsmith.services.accounts import AccountOptions
    from certsmith.services.manager import GetRequest
    from certsmith.services.root import build
    from certsmith.services.servers.listen import parse_addresses

    idents = parse_identifiers(args.names, one_certificate=not args.separate)
    groups: tuple[tuple[str, tuple[Identifier, ...]], ...]
    if args.separate:
        if args.cert_name:
            raise UsageError("--cert-name and --separate do not go together")
        groups = _separate(idents, default_cert_name)
    else:
        name = check_cert_name(args.cert_name) if args.cert_name else default_cert_name(idents[0])
        groups = ((name, idents),)
    deploy_commands = tuple(args.deploy_command)
    from certsmith.cli import dnsopts

    dnsopts.refuse_stray(args)
    if dnsopts.uses_dns(args):
        solver = dnsopts.spec_from(args)
    elif args.web_server:
        solver, reload = _through_server(args, groups, resolve_server(args.server))
        deploy_commands = (*tuple(c for c in deploy_commands if c != reload), reload)
    elif args.webroot:
        _check_webroot_reachable(args, [name for name, _ in groups])
        solver = WebrootSpec(webroot=os.path.abspath(args.webroot))
    else:
        addresses = parse_addresses(args.http_address, "--http-address")
        if len(addresses) > 1:
            raise UsageError("--standalone listens on one address; give --http-address once")
        solver = StandaloneSpec(http_port=args.http_port, address=addresses[0] if addresses else "")
    req = GetRequest(
        groups=groups,
        server=resolve_server(args.server),
        solver=solver,
        account=AccountOptions(
            email=args.email,
            agree_tos=args.agree_tos,
            eab_kid=args.eab_kid,
            eab_hmac_key=args.eab_hmac_key,
        ),
        key_type=check_key_type(args.key_type),
        reuse_key=args.reuse_key,
        profile=args.profile,
        preferred_chain=args.preferred_chain,
        deploy_files=tuple(FileTarget.parse(s) for s in args.deploy_to),
        deploy_commands=deploy_commands,
        ca_bundle=_ca_bundle(args.ca_bundle or os.environ.get("REQUESTS_CA_BUNDLE")),
    )
    services = build(home_from(args), progress=progress_printer(args.quiet or args.json))
    manager = services.manager
    outcomes = manager.get(req)
    from certsmith.cli.cmd_renew import report

    status = report(outcomes, args, manager.store.live_path, services.bus.failures)
    if args.staple_ocsp and not (args.quiet or args.json):
        from certsmith.cli import ocsp

        for outcome in outcomes:
            if outcome.action in ("issued", "renewed"):
                print(ocsp.note(manager.home, outcome.name))
    return status


def _ca_bundle(path: str | None) -> str | None:
    """The CA bundle (a file, or a directory as requests allows) to record with the site."""
    import os

    from certsmith.errors import UsageError

    if not path:
        return None
    if not os.path.exists(path):
        raise UsageError(f"CA bundle {path!r} does not exist")
    return os.path.abspath(path)


def _through_server(args: argparse.Namespace, groups: Any, server: str) -> tuple[Any, str]:
    """Install the challenge mapping into the running web server for every certificate;
    returns the solver (certsmith's challenge directory) and the server's reload command."""
    from certsmith.base.model import ServerSpec, SiteSpec
    from certsmith.cli.main import home_from
    from certsmith.services.servers import challenge_dir, prepare_challenge
    from certsmith.services.servers.listen import parse_addresses

    home = home_from(args)
    placeholder = ServerSpec(webroot=str(challenge_dir(home)), server=args.web_server)
    reload = ""
    addresses = parse_addresses(args.http_address, "--http-address")
    for name, idents in groups:
        spec = SiteSpec(name=name, identifiers=idents, server=server, solver=placeholder)
        setup = prepare_challenge(
            home, args.web_server, spec, http_port=args.http_port, listen_addresses=addresses
        )
        directory, reload = setup.directory, setup.reload
        if setup.files and not (args.quiet or args.json):
            print(
                f"{name}: {args.web_server} answers HTTP-01 from {directory}; changed "
                "('certsmith uninstall' undoes it):"
            )
            for line in setup.files:
                print(f"  {line}")
    return ServerSpec(webroot=str(directory), server=args.web_server), reload


def _separate(idents: Any, name_of: Any) -> Any:
    """--separate: one certificate per name, but ``*.example.org`` and ``example.org`` (both
    given) share one, named after the first of them."""
    groups: dict[str, list[Any]] = {}
    for i in idents:
        base = i.value[2:] if i.is_wildcard else i.value
        groups.setdefault(base, []).append(i)
    return tuple((name_of(members[0]), tuple(members)) for members in groups.values())


def _check_webroot_reachable(args: argparse.Namespace, names: list[str]) -> None:
    """A server certsmith set up maps the challenge path to certsmith's own directory: tokens
    written into --webroot would never be served, and the CA would see 404."""
    from certsmith.cli.main import home_from
    from certsmith.errors import UsageError
    from certsmith.services.servers import challenge_capture

    capture = challenge_capture(home_from(args), names)
    if capture is None:
        return
    kind, owner = capture
    raise UsageError(
        f"{kind} serves /.well-known/acme-challenge/ from certsmith's own directory (set up "
        f"for {owner} by 'certsmith get --{kind}' or 'install'), so files written into "
        f"{args.webroot} would answer 404: use --{kind} instead of --webroot, or "
        f"'certsmith uninstall {kind} {owner}' first"
    )
