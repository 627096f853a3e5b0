"""certsmith local: certificates for development names from a name-constrained local CA."""

from __future__ import annotations

import argparse
from typing import Any

DESCRIPTION = """\
Issue a certificate from certsmith's local development CA (made on first use under
<home>/ca/). Names may be DNS names, wildcards (*.app.test), localhost, IPv4 and IPv6 addresses.

The CA is a root plus an intermediate; the intermediate carries X.509 name constraints, so it can
only certify non-public names: localhost, *.localhost, .test, .internal, .home.arpa, .lan, .local,
loopback and private networks. Even a stolen intermediate key cannot impersonate a public site.

--allow-domain DOMAIN adds a domain you control (or a CIDR network) to what the CA may certify.
Name constraints are fixed when a certificate is signed, so this replaces the intermediate with a
new one, signed by the same root and recorded in <home>/ca/intermediate.pem: trust stores need no
change, and certificates issued earlier stay valid. --forget-domain undoes it.

Trust the CA on this machine with: certsmith trust install
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "local",
        help="certificates for development names from the local CA",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "names", nargs="*", metavar="NAME", help="DNS name, *.wildcard, localhost or IP address"
    )
    p.add_argument(
        "--cert-file",
        metavar="FILE",
        help="certificate + intermediate (default: ./<first-name>.pem)",
    )
    p.add_argument(
        "--key-file", metavar="FILE", help="private key, 0600 (default: ./<first-name>-key.pem)"
    )
    p.add_argument(
        "--pkcs12", action="store_true", help="also write a PKCS#12 file (password 'changeit')"
    )
    p.add_argument("--p12-file", metavar="FILE", help="PKCS#12 file (default: ./<first-name>.p12)")
    p.add_argument(
        "--client",
        action="store_true",
        help="a client certificate too (adds the clientAuth extended key usage)",
    )
    p.add_argument(
        "--csr",
        metavar="FILE",
        help="sign this certificate request (PEM or DER) instead of making a key; "
        "its key must be of a --key-type type, its names DNS names or IP "
        "addresses (e-mail, URI and other names are refused)",
    )
    p.add_argument(
        "--key-type",
        default="ecdsa-p256",
        help="ecdsa-p256 (default), ecdsa-p384, rsa2048, rsa3072 or rsa4096",
    )
    p.add_argument(
        "--days",
        type=int,
        default=90,
        help="lifetime in days (default 90; at most 398, the browsers' limit)",
    )
    p.add_argument(
        "--allow-domain",
        action="append",
        default=[],
        metavar="DOMAIN",
        help="let the CA also certify DOMAIN and its subdomains (or a CIDR network); "
        "makes a new intermediate",
    )
    p.add_argument(
        "--forget-domain",
        action="append",
        default=[],
        metavar="DOMAIN",
        help="undo an --allow-domain (makes a new intermediate)",
    )
    p.add_argument(
        "--ca-root", action="store_true", help="print the CA directory (root.pem is there) and exit"
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from certsmith.cli.main import home_from
    from certsmith.services import local

    home = home_from(args)
    if args.ca_root:
        print(local.ca_dir(home))
        return 0
    request = local.LocalRequest(
        names=tuple(args.names),
        allow=tuple(args.allow_domain),
        forget=tuple(args.forget_domain),
        key_type=args.key_type,
        days=args.days,
        client=args.client,
        csr=Path(args.csr) if args.csr else None,
        cert_file=Path(args.cert_file) if args.cert_file else None,
        key_file=Path(args.key_file) if args.key_file else None,
        pkcs12=args.pkcs12,
        p12_file=Path(args.p12_file) if args.p12_file else None,
    )
    result = local.issue(home, request)
    if args.quiet:
        return 0
    if result.ca_created:
        print(f"Created a new local CA in {result.ca_dir}")
        print("  trust it on this machine with: certsmith trust install")
    if result.constraints_changed:
        extra = result.constraints.extra()
        print(
            "The local CA now also certifies: "
            + (", ".join(extra) if extra else "(nothing beyond the built-in local names)")
            + " (new intermediate)"
        )
    if not result.identifiers:
        return 0
    print(f"Created a certificate for: {local.describe_names(result.identifiers)}")
    if result.not_after is not None:
        print(f"  valid until {result.not_after:%Y-%m-%d %H:%M} UTC ({args.days} days)")
    print(f"  certificate: {_rel(result.cert_file)}")
    if result.key_file is not None:
        print(f"  key:         {_rel(result.key_file)}")
    if result.p12_file is not None:
        print(f"  PKCS#12:     {_rel(result.p12_file)} (password '{local.P12_PASSWORD}')")
    return 0


def _rel(path: Any) -> str:
    import os

    text = str(path)
    try:
        rel = os.path.relpath(text)
    except ValueError:
        return text
    return rel if not rel.startswith("..") else text
