"""certsmith's command line: parse, call one service, render. Heavy imports happen per command."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from certsmith import __version__

if TYPE_CHECKING:
    from pathlib import Path

# Each command is a module ``certsmith.cli.cmd_<name>`` with ``register(subparsers)``; its
# handler is stored as ``args.handler`` and imports its service only when it runs. Only the
# module of the command being run is imported: the others appear with their one-line summary.
COMMANDS = {
    "get": "obtain certificates from an ACME CA",
    "list": "show managed certificates",
    "renew": "renew certificates that are due",
    "revoke": "revoke a certificate",
    "deploy": "run a certificate's deploy targets now",
    "proxy": "serve HTTPS for an app: reverse proxy with automatic certificates",
    "install": "install a certificate into nginx, Apache or lighttpd",
    "uninstall": "remove what 'certsmith install' added to a web server",
    "check": "check the certificate and TLS set-up a server presents",
    "alerts": "configure alerts (webhook, e-mail, command)",
    "metrics": "write Prometheus metrics for the managed certificates",
    "import": "take over certificates managed by certbot",
    "schedule": "install, remove or show the renewal timer",
    "backup": "save certificates, keys and settings to an archive",
    "restore": "restore certificates, keys and settings from a backup",
    "local": "certificates for development names from the local CA",
    "trust": "trust the local CA on this machine (or stop trusting it)",
    "dns": "check DNS-01 set-up: delegation, authoritative servers, write access",
}

EPILOG = """\
state directory: --home, else $CERTSMITH_HOME, else /var/lib/certsmith (root) or
~/.local/share/certsmith. The ACME server's TLS is verified with the system trust store or
$REQUESTS_CA_BUNDLE. Every network exchange (a request to the CA, a webhook, an e-mail) ends
after $CERTSMITH_NET_DEADLINE seconds in total (default 120), however slowly the other side
answers. Exit status 0 on success, non-zero with one line on stderr otherwise.
"""


def _command_in(argv: Sequence[str]) -> str | None:
    """The command word in ``argv`` (skipping global options), if any."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--home":
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, just that command gets its full set of arguments."""
    parser = argparse.ArgumentParser(
        prog="certsmith",
        description="HTTPS for any self-hosted app: get, install, renew and watch certificates.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"certsmith {__version__}")
    parser.add_argument("--home", metavar="DIR", help="state directory (default: see below)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, summary in COMMANDS.items():
        if name != only:
            sub.add_parser(name, help=summary, add_help=False)
            continue
        module = importlib.import_module(f"certsmith.cli.cmd_{name}")
        module.register(sub)
        # The global options also work after the command (`certsmith renew --quiet`);
        # SUPPRESS keeps a value given before the command.
        command = sub.choices[name]
        command.add_argument(
            "--home", metavar="DIR", default=argparse.SUPPRESS, help="state directory"
        )
        command.add_argument(
            "-q",
            "--quiet",
            action="store_true",
            default=argparse.SUPPRESS,
            help="print only errors",
        )
    return parser


def home_from(args: argparse.Namespace) -> Path:
    if args.home:
        from pathlib import Path  # (not at import time: start-up stays short)

        return Path(args.home).expanduser().absolute()
    from certsmith.base.home import default_home

    return default_home()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_in(argv))
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    from certsmith.errors import CertsmithError

    try:
        code: int = args.handler(args)
        return code
    except CertsmithError as exc:
        _error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:
        return 1
    except OSError as exc:
        if exc.filename is None or os.environ.get("CERTSMITH_DEBUG"):
            return _internal(exc)
        # A file of the state (or one a command names) that cannot be read or written: say
        # which, as every service's own StoreError does.
        _error(f"cannot access {exc.filename}: {exc.strerror}")
        return 1
    except Exception as exc:  # a bug: still one line, unless asked for the traceback
        return _internal(exc)


def _internal(exc: Exception) -> int:
    if os.environ.get("CERTSMITH_DEBUG"):
        raise exc
    _error(f"internal error: {type(exc).__name__}: {exc} (set CERTSMITH_DEBUG=1 for details)")
    return 70


def _error(message: str) -> None:
    line = message.splitlines()[0] if message else "failed"
    if sys.stderr.isatty():
        sys.stderr.write(f"\033[31mcertsmith: {line}\033[0m\n")
    else:
        sys.stderr.write(f"certsmith: {line}\n")


if __name__ == "__main__":
    raise SystemExit(main())
