"""certsmith alerts: where to send failures, expiry warnings and check problems."""

from __future__ import annotations

import argparse
from typing import Any

HELP = """\
Configure alerts once; certsmith then sends them on its own:
  - an issuance or renewal failed (with the CA's error), at most once a day per error;
  - a certificate is inside 14, 7, 3 or 1 days of expiry and is not getting renewed (each
    threshold once per certificate; 'thresholds' in alerts.toml changes them);
  - 'certsmith check --all' found a problem (e.g. the server still serves the old certificate);
  - with --on-success, every issuance and renewal.
An alert that cannot be delivered is kept in an outbox and retried at the next run; alerting
never changes the outcome of a renewal. Everything is logged to events.jsonl.

channels:
  webhook URL      POST JSON; its 'text' field is a plain-text summary (Slack, Mattermost,
                   Rocket.Chat and ntfy-style receivers display it)
  email ADDRESS    a text e-mail via --smtp HOST[:PORT] (465 = implicit TLS), --starttls,
                   --user U with the password in $CERTSMITH_SMTP_PASSWORD or --password-file
                   (mode 0600)
  command CMD      run CMD (shell) with CERTSMITH_ALERT_EVENT, _NAME, _SEVERITY, _SUBJECT,
                   _TEXT in the environment and the JSON payload on stdin

examples:
  certsmith alerts add webhook https://chat.example.org/hooks/abc123
  certsmith alerts add email ops@example.org --smtp mail.example.org:587 --starttls \\
    --user certsmith --password-file /etc/certsmith/smtp-password
  certsmith alerts add command 'logger -t certsmith "$CERTSMITH_ALERT_TEXT"'
  certsmith alerts test
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "alerts",
        help="configure alerts (webhook, e-mail, command)",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    acts = p.add_subparsers(dest="alerts_action", metavar="ACTION", required=True)
    add = acts.add_parser("add", help="add a channel: webhook URL | email ADDRESS | command CMD")
    add.add_argument("kind", choices=("webhook", "email", "command"))
    add.add_argument("target", metavar="URL|ADDRESS|CMD")
    add.add_argument("--smtp", metavar="HOST[:PORT]", help="mail server (email; port 25)")
    add.add_argument("--starttls", action="store_true", help="use STARTTLS (email)")
    add.add_argument("--user", metavar="U", help="SMTP login (email)")
    add.add_argument(
        "--password-file",
        metavar="FILE",
        help="file (0600) holding the SMTP password (else $CERTSMITH_SMTP_PASSWORD)",
    )
    add.add_argument("--from", dest="sender", metavar="ADDRESS", help="sender (email)")
    add.add_argument(
        "--on-success", action="store_true", help="also tell about every issuance and renewal"
    )
    acts.add_parser("list", help="show the channels")
    rm = acts.add_parser("remove", help="remove a channel")
    rm.add_argument("id", metavar="ID", help="as shown by 'certsmith alerts list'")
    test = acts.add_parser("test", help="send a test alert now (to one channel or all)")
    test.add_argument("id", nargs="?", metavar="ID")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from certsmith.base.store import open_store
    from certsmith.cli.main import home_from
    from certsmith.errors import CertsmithError
    from certsmith.services import alerts

    home = home_from(args)
    store = open_store(home)
    config = alerts.load_config(store)
    action = args.alerts_action
    if action == "add":
        return _add(args, store, config)
    if action == "list":
        if not config.channels and not args.quiet:
            print("no alert channels ('certsmith alerts add ...')")
        for c in config.channels:
            success = " (+ successes)" if c.on_success else ""
            print(f"{c.id}  {c.describe()}{success}")
        waiting = alerts.pending(home)
        if waiting and not args.quiet:
            print(f"{len(waiting)} alert(s) waiting to be retried")
        return 0
    if action == "remove":
        channel = _find(config, args.id)
        alerts.save_config(
            store,
            type(config)(
                tuple(c for c in config.channels if c.id != channel.id), config.thresholds
            ),
        )
        if not args.quiet:
            print(f"removed {channel.id}  {channel.describe()}")
        return 0
    # test
    channels = [_find(config, args.id)] if args.id else list(config.channels)
    if not channels:
        from certsmith.errors import UsageError

        raise UsageError("no alert channels to test ('certsmith alerts add ...')")
    failed = 0
    for channel in channels:
        try:
            alerts.deliver(home, channel, alerts.Alert.test())
        except CertsmithError as exc:
            import sys

            failed += 1
            sys.stderr.write(f"certsmith: {channel.id} {channel.describe()}: {exc}\n")
        else:
            if not args.quiet:
                print(f"sent  {channel.id}  {channel.describe()}")
    return 1 if failed else 0


def _find(config: Any, wanted: str) -> Any:
    from certsmith.errors import NotFoundError

    for c in config.channels:
        if c.id == wanted:
            return c
    raise NotFoundError(f"no alert channel {wanted!r} (see 'certsmith alerts list')")


def _add(args: argparse.Namespace, store: Any, config: Any) -> int:
    from dataclasses import replace

    from certsmith.errors import UsageError
    from certsmith.services.alerts import Channel

    host, port = None, 25
    if args.kind == "email":
        if not args.smtp:
            raise UsageError("e-mail alerts need --smtp HOST[:PORT]")
        host, sep, port_text = (
            args.smtp.rpartition(":") if ":" in args.smtp else (args.smtp, "", "")
        )
        if sep and not port_text.isdigit():
            raise UsageError(f"invalid --smtp {args.smtp!r}: use HOST[:PORT]")
        port = int(port_text) if sep else 25
    elif args.smtp or args.starttls or args.user or args.password_file or args.sender:
        raise UsageError("--smtp, --starttls, --user, --password-file and --from are for email")
    if args.password_file and not args.user:
        raise UsageError("--password-file needs --user")
    password_file = None
    if args.password_file:
        import os

        password_file = os.path.abspath(args.password_file)
    channel = Channel(
        id=config.next_id(),
        kind=args.kind,
        target=args.target,
        on_success=args.on_success,
        smtp_host=host,
        smtp_port=port,
        starttls=args.starttls,
        user=args.user,
        password_file=password_file,
        sender=args.sender,
    )
    if any(c.describe() == channel.describe() for c in config.channels):
        raise UsageError(f"already configured: {channel.describe()}")
    from certsmith.services.alerts import save_config

    save_config(store, replace(config, channels=(*config.channels, channel)))
    if not args.quiet:
        print(
            f"added {channel.id}  {channel.describe()}; try it: certsmith alerts test {channel.id}"
        )
    return 0
