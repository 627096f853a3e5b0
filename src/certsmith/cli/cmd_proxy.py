"""certsmith proxy: serve HTTPS in front of an app, with certificates obtained and renewed."""

from __future__ import annotations

import argparse
from typing import Any

DESCRIPTION = """\
Serve HTTPS for NAME... in front of the plain-HTTP app at UPSTREAM, with a certificate obtained,
renewed and swapped in without a restart: from the local CA for localhost, IP addresses and
local names (.test, .internal, .localhost, .home.arpa, .lan, .local), from an ACME CA (Let's
Encrypt by default) for public names, proving control on the proxy's own HTTP port.

The HTTP port redirects to HTTPS (308, or --redirect 301) and answers ACME HTTP-01 challenges
(--challenge tls-alpn-01: the HTTPS port answers TLS-ALPN-01 instead). Requests
reach the app with X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Host; WebSockets work.

signals: SIGHUP re-reads --config and replaces the workers gracefully; SIGTERM finishes the
requests in flight, then exits; SIGUSR1 reloads the certificates.

examples:
  certsmith proxy localhost --to 127.0.0.1:8080 --http-port 8080 --https-port 8443
  certsmith proxy example.org,www.example.org --to 127.0.0.1:3000 --agree-tos --hsts
  certsmith proxy --config /etc/certsmith/proxy.toml
"""


def register(sub: Any) -> None:
    p = sub.add_parser("proxy", help="serve HTTPS in front of an app (automatic certificates)",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", metavar="NAME[,NAME...]",
                   help="the site's names (one certificate)")
    p.add_argument("--to", metavar="UPSTREAM",
                   help="the app: host:port, port, [::1]:port or unix:/path")
    p.add_argument("--config", metavar="FILE", help="TOML file with many sites (see docs)")
    p.add_argument("--http-port", type=int, metavar="N", help="HTTP port (default 80)")
    p.add_argument("--https-port", type=int, metavar="N", help="HTTPS port (default 443)")
    p.add_argument("--address", metavar="ADDR", help="listen address (default: all)")
    p.add_argument("--redirect", type=int, choices=(301, 308),
                   help="status of the HTTP -> HTTPS redirect (default 308)")
    p.add_argument("--hsts", nargs="?", const="", metavar="SECONDS",
                   help="send Strict-Transport-Security (default max-age two years)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker processes (default: one per CPU core)")
    p.add_argument("--access-log", metavar="FILE|-", help="access log file, or - for stdout")
    p.add_argument("--log-format", choices=("combined", "json"),
                   help="access log format (default combined)")
    p.add_argument("--server", metavar="URL|ALIAS", help="ACME CA for public names")
    p.add_argument("--email", metavar="E", help="contact address for the ACME account")
    p.add_argument("--agree-tos", action="store_true", help="accept the CA's terms of service")
    p.add_argument("--challenge", choices=("http-01", "tls-alpn-01"),
                   help="how public names are proven: on the HTTP port (http-01, default) or "
                        "on the HTTPS port (tls-alpn-01)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from certsmith.cli.main import home_from
    from certsmith.errors import UsageError
    from certsmith.services.proxy import config as proxy_config
    from certsmith.services.proxy.supervisor import Supervisor

    overrides: dict[str, Any] = {
        "http_port": args.http_port, "https_port": args.https_port, "address": args.address,
        "workers": args.workers, "access_log": args.access_log, "log_format": args.log_format,
        "server": args.server, "email": args.email,
        "agree_tos": True if args.agree_tos else None, "challenge": args.challenge,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.config:
        if args.names or args.to:
            raise UsageError("give either NAME --to UPSTREAM or --config FILE, not both")
        if args.hsts is not None or args.redirect is not None:
            raise UsageError("with --config, set hsts and redirect in the file")
        config = proxy_config.load(args.config, **overrides)
    else:
        if not args.names or not args.to:
            raise UsageError("usage: certsmith proxy NAME[,NAME...] --to HOST:PORT "
                             "(or --config FILE)")
        config = proxy_config.from_cli(args.names, args.to, hsts=args.hsts,
                                       redirect=args.redirect, **overrides)
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
        source = "local CA" if not site.uses_acme else "ACME"
        local = local or not site.uses_acme
        lines.append(f"serving https://{shown}{https}/ -> http://{site.upstream} "
                     f"({source} certificate for {', '.join(i.value for i in site.names)})")
    where = config.address or "all addresses"
    lines.append(f"  listening on {where}: HTTPS port {config.https_port}, HTTP port "
                 f"{config.http_port} (redirects to HTTPS); "
                 f"{config.worker_count} worker(s); state in {home}")
    if local:
        lines.append("  to make browsers and curl trust the local CA on this machine, run: "
                     "certsmith trust install")
    return "\n".join(lines)
