"""certsmith proxy: serve HTTPS in front of an app, with certificates obtained and renewed."""

from __future__ import annotations

import argparse
from typing import Any

DESCRIPTION = """\
Serve HTTPS for NAME... in front of the plain-HTTP app at UPSTREAM, with a certificate obtained,
renewed and swapped in without a restart: from the local CA for localhost, IP addresses and
local names (.test, .internal, .localhost, .home.arpa, .lan, .local), from an ACME CA (Let's
Encrypt by default) for public names, proving control on the proxy's own HTTP port.

The HTTP port redirects to HTTPS (308, or --redirect 301/302/307) and answers ACME HTTP-01
challenges (--challenge tls-alpn-01: the HTTPS port answers TLS-ALPN-01 instead). Requests
reach the app with X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Host; WebSockets work.

A wildcard ('*.example.org') needs DNS-01: --dns PROVIDER (rfc2136 with --tsig-key-file,
lexicon:PROVIDER, or hook with --dns-hook; the --dns-* options as for 'certsmith get'), or in
the file a site with challenge = "dns-01" and a [site.dns] table (defaults in a top-level
[dns] table). The wildcard certificate is served for every name one label deeper
(a.example.org, not a.b.example.org; example.org only if listed too), each routed to the site.

Every setting is checked before anything starts (a bad value, an unknown key or an access log
that cannot be opened for appending: one line naming it, exit 2).

signals: SIGHUP re-reads --config and replaces the workers gracefully (a file that does not
check out is refused and the running configuration keeps serving); SIGTERM finishes the
requests in flight, then exits; SIGUSR1 reloads the certificates.

examples:
  certsmith proxy localhost --to 127.0.0.1:8080 --http-port 8080 --https-port 8443
  certsmith proxy example.org,www.example.org --to 127.0.0.1:3000 --agree-tos --hsts
  certsmith proxy '*.example.org' example.org --to 127.0.0.1:3000 --agree-tos \\
      --dns rfc2136 --tsig-key-file /etc/certsmith/acme.key
  certsmith proxy --config /etc/certsmith/proxy.toml
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "proxy",
        help="serve HTTPS in front of an app (automatic certificates)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "names", nargs="*", metavar="NAME[,NAME...]", help="the site's names (one certificate)"
    )
    p.add_argument(
        "--to", metavar="UPSTREAM", help="the app: host:port, port, [::1]:port or unix:/path"
    )
    p.add_argument("--config", metavar="FILE", help="TOML file with many sites (see docs)")
    # (Values are checked by the proxy's config module, not argparse, so a bad one is the same
    # one line as in the file instead of a usage dump.)
    p.add_argument("--http-port", metavar="N", help="HTTP port (default 80)")
    p.add_argument("--https-port", metavar="N", help="HTTPS port (default 443)")
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="listen address, an IP address (default: all, IPv4 and IPv6)",
    )
    p.add_argument(
        "--redirect",
        metavar="{301,302,307,308}",
        help="status of the HTTP -> HTTPS redirect (default 308)",
    )
    p.add_argument(
        "--hsts",
        nargs="?",
        const="",
        metavar="SECONDS",
        help="send Strict-Transport-Security (default max-age two years)",
    )
    p.add_argument(
        "--workers", metavar="N", help="worker processes, up to 1024 (default: one per CPU core)"
    )
    p.add_argument(
        "--access-log",
        metavar="FILE|-",
        help="access log file (opened for appending at start-up), or - for stdout",
    )
    p.add_argument(
        "--log-format", metavar="{combined,json}", help="access log format (default combined)"
    )
    p.add_argument("--server", metavar="URL|ALIAS", help="ACME CA for public names")
    p.add_argument("--email", metavar="E", help="contact address for the ACME account")
    p.add_argument("--agree-tos", action="store_true", help="accept the CA's terms of service")
    p.add_argument(
        "--challenge",
        metavar="{http-01,tls-alpn-01,dns-01}",
        help="how public names are proven: on the HTTP port (http-01, default), "
        "on the HTTPS port (tls-alpn-01), or in DNS (dns-01, with --dns; with "
        "--config, the [dns] table)",
    )
    from certsmith.cli import dnsopts

    p.add_argument(
        "--dns",
        metavar="PROVIDER",
        help=f"DNS-01 for the site (the only way to a wildcard): "
        f"{dnsopts.PROVIDERS_HELP}; the --dns-* options below",
    )
    dnsopts.add_options(p, provider_flag=False)
    p.set_defaults(handler=run)


def _dns_spec(args: argparse.Namespace) -> Any:
    """The command-line site's DnsSpec (``--dns``), or None; ``--dns-*`` options without it
    are refused rather than ignored."""
    from certsmith.cli import dnsopts
    from certsmith.errors import UsageError

    dnsopts.refuse_stray(args)
    if not dnsopts.uses_dns(args):
        return None
    if args.config:
        raise UsageError(
            "with --config, give the DNS provider in the file: challenge = "
            '"dns-01" and a [site.dns] (or top-level [dns]) table'
        )
    return dnsopts.spec_from(args)


def run(args: argparse.Namespace) -> int:
    from certsmith.cli.main import home_from
    from certsmith.errors import UsageError
    from certsmith.services.proxy import config as proxy_config
    from certsmith.services.proxy.supervisor import Supervisor

    overrides = proxy_config.from_options(
        http_port=args.http_port,
        https_port=args.https_port,
        address=args.address,
        workers=args.workers,
        access_log=args.access_log,
        log_format=args.log_format,
        server=args.server,
        email=args.email,
        agree_tos=True if args.agree_tos else None,
        challenge=args.challenge,
    )
    dns = _dns_spec(args)
    if args.config:
        if args.names or args.to:
            raise UsageError("give either NAME --to UPSTREAM or --config FILE, not both")
        if args.hsts is not None or args.redirect is not None:
            raise UsageError("with --config, set hsts and redirect in the file")
        config = proxy_config.load(args.config, **overrides)
    else:
        if not args.names or not args.to:
            raise UsageError(
                "usage: certsmith proxy NAME[,NAME...] --to HOST:PORT (or --config FILE)"
            )
        config = proxy_config.from_cli(
            args.names, args.to, hsts=args.hsts, redirect=args.redirect, dns=dns, **overrides
        )
    home = home_from(args)
    quiet = args.quiet

    def ready(cfg: proxy_config.ProxyConfig, issued: list[str]) -> None:
        if not quiet:
            print(startup_banner(cfg, home), flush=True)

    return Supervisor(config, home, on_ready=ready, overrides=overrides).run()


def startup_banner(config: Any, home: Any) -> str:
    https = "" if config.https_port == 443 else f":{config.https_port}"
    lines = []
    local = False
    for site in config.sites:
        first = site.names[0].value
        shown = f"[{first}]" if ":" in first else first
        source = (
            "local CA"
            if not site.uses_acme
            else "ACME, DNS-01"
            if site.challenge == "dns-01"
            else "ACME"
        )
        local = local or not site.uses_acme
        lines.append(
            f"serving https://{shown}{https}/ -> http://{site.upstream} "
            f"({source} certificate for {', '.join(i.value for i in site.names)})"
        )
    where = config.address or "all addresses"
    lines.append(
        f"  listening on {where}: HTTPS port {config.https_port}, HTTP port "
        f"{config.http_port} (redirects to HTTPS); "
        f"{config.worker_count} worker(s); state in {home}"
    )
    if local:
        lines.append(
            "  to make browsers and curl trust the local CA on this machine, run: "
            "certsmith trust install"
        )
    return "\n".join(lines)
