"""certsmith install: put a certificate into a running nginx, Apache or lighttpd."""

from __future__ import annotations

import argparse
from typing import Any

from certsmith.base import policy

HELP = """\
Serve NAME (a certificate from 'certsmith get') over HTTPS from the web server you already run.
certsmith writes its own files only (Debian: sites-available/certsmith-NAME.conf + the
sites-enabled link; RHEL: conf.d/; lighttpd: conf-enabled/), pointing at the stable live/
paths, with Mozilla's "intermediate" TLS settings (TLS 1.2 and 1.3). Your files are read, never
rewritten: a site of yours serving the name is carried over into certsmith's file and its
enabling link is moved aside ('certsmith uninstall' puts it back). Where several blocks serve
the name, or the configuration cannot be parsed, nothing is changed.

certsmith's site listens on exactly the addresses yours does (127.0.0.1 and [::1] stay
loopback-only; a site on every interface stays on every interface), for HTTP and, on the HTTPS
port, for HTTPS; --listen-address replaces them.

Every change is checked with the server's own validator (nginx -t, apache2ctl configtest,
lighttpd -tt), then the server is reloaded gracefully (lighttpd, which drops its privileges, is
restarted when the change adds a listener such as :443). A reload's exit status proves little,
so certsmith then asks the server as a client would: the HTTPS port must serve the certificate
just installed (by SNI, for the site's name) and the HTTP port the redirect asked for. Any
failure restores the previous files byte for byte, brings the server back to them and checks
that it answers again; the message says whether it does. Renewals reload the server and check
that it serves the renewed certificate.

where the server lives (defaults: Debian/RHEL paths):
  CERTSMITH_NGINX_ROOT / CERTSMITH_APACHE_ROOT / CERTSMITH_LIGHTTPD_ROOT   config root
  CERTSMITH_<SERVER>_CMD      binary or control script used to parse and check
  CERTSMITH_<SERVER>_RELOAD   shell command reloading the running server
  CERTSMITH_<SERVER>_RESTART  shell command stopping and starting it (default: systemctl
                              restart SERVER, or service SERVER restart without systemd;
                              Apache: apache2ctl restart)

examples:
  certsmith install nginx terrax9.se --redirect 301 --hsts --proxy-to http://127.0.0.1:8080
  certsmith install apache allstar.example.org --redirect --hsts
  certsmith install lighttpd www.myallsky.com --redirect 308 --dry-run
"""


def add_site_options(p: Any) -> None:
    p.add_argument("--http-port", type=int, default=80, metavar="N", help="HTTP port (80)")
    p.add_argument("--https-port", type=int, default=443, metavar="N", help="HTTPS port (443)")
    p.add_argument(
        "--listen-address",
        action="append",
        default=[],
        metavar="ADDR",
        help="listen on these IP addresses only (repeat, or separate with commas, "
        "e.g. 127.0.0.1,::1); default: exactly the addresses your site "
        "listens on, for HTTP and the same for HTTPS",
    )


def register(sub: Any) -> None:
    p = sub.add_parser(
        "install",
        help="serve a certificate from nginx, Apache or lighttpd",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "web_server",
        choices=("nginx", "apache", "lighttpd"),
        metavar="SERVER",
        help="nginx, apache or lighttpd",
    )
    p.add_argument("name", metavar="NAME", help="certificate name (see 'certsmith list')")
    p.add_argument(
        "--redirect",
        type=int,
        nargs="?",
        const=308,
        choices=(301, 302, 307, 308),
        metavar="308|301",
        help="redirect HTTP to HTTPS (default code 308, as "
        "'certsmith proxy'; it keeps the method and body, 301 may turn a POST into "
        "a GET); "
        "/.well-known/acme-challenge/ stays reachable over HTTP",
    )
    p.add_argument(
        "--hsts",
        type=int,
        nargs="?",
        const=policy.HSTS_DEFAULT,
        metavar="SECONDS",
        help="send Strict-Transport-Security (default max-age two years)",
    )
    p.add_argument(
        "--proxy-to",
        metavar="URL",
        help="reverse proxy to the app at URL (WebSocket upgrades, X-Forwarded-*)",
    )
    add_site_options(p)
    from certsmith.cli import ocsp

    ocsp.add_option(p)
    p.add_argument("--dry-run", action="store_true", help="print the files and the diff only")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from certsmith.cli.main import home_from
    from certsmith.errors import UsageError
    from certsmith.services.servers import InstallRequest, install
    from certsmith.services.servers.listen import parse_addresses

    for port in (args.http_port, args.https_port):
        if not 0 < port < 65536:
            raise UsageError(f"invalid port {port}")
    if args.hsts is not None and args.hsts < 0:
        raise UsageError("--hsts needs a number of seconds >= 0")
    req = InstallRequest(
        args.web_server,
        args.name,
        redirect=args.redirect,
        hsts=args.hsts,
        proxy_to=args.proxy_to,
        http_port=args.http_port,
        https_port=args.https_port,
        listen_addresses=parse_addresses(args.listen_address),
        dry_run=args.dry_run,
    )
    result = install(home_from(args), req)
    if args.dry_run:
        print(result.text)
        if args.staple_ocsp:
            from certsmith.cli import ocsp

            print(f"note: {ocsp.note(home_from(args), args.name)}")
        return 0
    if not args.quiet:
        print(result.text)
        for line in result.files:
            print(f"  {line}")
        for note in result.notes:
            print(f"  note: {note}")
        if args.staple_ocsp:
            from certsmith.cli import ocsp

            print(f"  note: {ocsp.note(home_from(args), args.name)}")
    return 0
