"""From what a server presented to a verdict: OK, WARNING or CRITICAL and one reason (pure).

No sockets and no clock here: ``probe.py`` gathers an ``Observation``; ``evaluate`` judges it
against trust anchors, the time and the thresholds it is given.
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from certsmith.services.check.chain import (
    build_path,
    display_name,
    key_type,
    link_problems,
    order_problem,
    sans,
    signature_name,
)
from certsmith.services.check.chain import common_name as _cn
from certsmith.services.check.target import Target

TLS_VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
MODERN = ("TLSv1.2", "TLSv1.3")
REDIRECTS = (301, 302, 303, 307, 308)


class Status(enum.IntEnum):
    """Monitoring-plugin exit codes."""

    OK = 0
    WARNING = 1
    CRITICAL = 2


@dataclass(frozen=True)
class HttpAnswer:
    """A plain-HTTP or HTTPS response head (or why there was none)."""

    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    error: str | None = None

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


@dataclass(frozen=True)
class CipherProbe:
    """Which TLS 1.2 cipher the server picked when offered only forward-secret suites
    (ECDHE/DHE), and when offered only static-RSA key exchange (None: it refused)."""

    forward_secret: str | None = None
    static_rsa: str | None = None


@dataclass(frozen=True)
class Observation:
    """Everything the probe saw at one target."""

    chain_der: tuple[bytes, ...] = ()
    protocol: str | None = None
    versions: tuple[str, ...] = ()
    https: HttpAnswer = HttpAnswer()
    http: HttpAnswer | None = None  # None: not tested
    error: str | None = None  # the TLS connection itself failed
    tls12: CipherProbe | None = None  # None: not probed


@dataclass(frozen=True)
class Report:
    target: str
    status: Status
    reason: str
    problems: tuple[tuple[Status, str], ...] = ()
    facts: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "status": self.status.name,
            "exit_code": int(self.status),
            "reason": self.reason,
            "problems": [{"status": s.name, "text": t} for s, t in self.problems],
            **self.facts,
        }


def parse_response_head(data: bytes) -> HttpAnswer:
    """The status and headers of an HTTP/1.x response head (bytes up to the blank line)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return HttpAnswer(error="not an HTTP response")
    headers = []
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep:
            headers.append((key.strip(), value.strip()))
    return HttpAnswer(status=int(parts[1]), headers=tuple(headers))


def name_matches(host: str, dns_names: Sequence[str], ips: Sequence[str]) -> bool:
    """RFC 6125 matching: exact, or a wildcard standing for exactly the leftmost label."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return any(ipaddress.ip_address(ip) == addr for ip in ips)
    host = host.lower().rstrip(".")
    for name in dns_names:
        name = name.lower().rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and "." in host:
            label, rest = host.split(".", 1)
            if label and rest == name[2:]:
                return True
    return False


def _trust_error(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: dt.datetime,
) -> str | None:
    """Why the chain does not lead to a trusted root now (names and the leaf's own dates are
    judged elsewhere)."""
    if not roots:
        return "no trust anchors"
    dns, ips = sans(leaf)
    subject: DNSName | IPAddress
    if dns:
        subject = DNSName(dns[0].lstrip("*."))
    elif ips:
        subject = IPAddress(ipaddress.ip_address(ips[0]))
    else:
        return "the certificate has no subjectAltName"
    # Now, moved into the leaf's own validity window: an expired leaf is reported as expired
    # (with its date), not as untrusted; the rest of the chain is judged at the current time.
    moment = min(max(now, leaf.not_valid_before_utc), leaf.not_valid_after_utc)
    try:
        verifier = (
            PolicyBuilder().store(Store(list(roots))).time(moment).build_server_verifier(subject)
        )
        verifier.verify(leaf, list(intermediates))
    except VerificationError as exc:
        return str(exc)
    except ValueError as exc:  # e.g. a wildcard SAN that is not a valid DNS name
        return str(exc)
    return None


def _days(delta: dt.timedelta) -> float:
    return delta.total_seconds() / 86400


def evaluate(
    target: Target,
    obs: Observation,
    *,
    roots: Sequence[x509.Certificate],
    now: dt.datetime,
    warn_days: float,
    crit_days: float,
    expected_serial: str | None = None,
) -> Report:
    """Judge one observation. The reason is the first of the worst problems found."""
    label = target.label()
    facts: dict[str, Any] = {"host": target.host, "port": target.port, "address": target.address}
    if obs.error:
        return Report(label, Status.CRITICAL, obs.error, ((Status.CRITICAL, obs.error),), facts)
    if not obs.chain_der:
        text = "the server sent no certificate"
        return Report(label, Status.CRITICAL, text, ((Status.CRITICAL, text),), facts)
    problems: list[tuple[Status, str]] = []
    try:
        chain = [x509.load_der_x509_certificate(der) for der in obs.chain_der]
    except ValueError as exc:
        text = f"the server sent an unreadable certificate: {exc}"
        return Report(label, Status.CRITICAL, text, ((Status.CRITICAL, text),), facts)
    leaf = chain[0]
    dns, ips = sans(leaf)
    not_after = leaf.not_valid_after_utc
    days_left = _days(not_after - now)
    serial = format(leaf.serial_number, "x")
    facts.update(
        {
            "subject": display_name(leaf),
            "names": dns + ips,
            "issuer": _cn(leaf.issuer),
            "serial": serial,
            "key_type": key_type(leaf),
            "signature": signature_name(leaf),
            "not_before": leaf.not_valid_before_utc.isoformat(),
            "not_after": not_after.isoformat(),
            "days_left": round(days_left, 1),
            "chain_length": len(chain),
            "chain": [display_name(c) for c in chain],
            "protocol": obs.protocol,
            "tls_versions": list(obs.versions),
        }
    )

    # 1. validity period
    if now > not_after:
        problems.append(
            (
                Status.CRITICAL,
                f"certificate expired on {not_after:%Y-%m-%d %H:%M}Z ({-days_left:.0f} days ago)",
            )
        )
    elif now < leaf.not_valid_before_utc:
        problems.append(
            (
                Status.CRITICAL,
                f"certificate is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M}Z",
            )
        )
    # 2. the chain: keys, signatures and dates of each certificate, then trust, then order
    facts.update(_chain_facts(chain, roots, now, problems))
    # 3. names
    facts["name_matches"] = name_matches(target.host, dns, ips)
    if not facts["name_matches"]:
        shown = ", ".join((dns + ips)[:5]) or display_name(leaf)
        problems.append(
            (Status.CRITICAL, f"name mismatch: certificate is for {shown}, not {target.host}")
        )
    # 4. the certificate we expect (check --all: a missed reload)
    if expected_serial is not None and serial != expected_serial.lower():
        problems.append(
            (
                Status.CRITICAL,
                f"serves serial {serial}, not the live certificate {expected_serial}: "
                "reload the server",
            )
        )
    # 5. time left
    if now <= not_after:
        if days_left < crit_days:
            problems.append(
                (Status.CRITICAL, f"expires in {days_left:.1f} days ({not_after:%Y-%m-%d})")
            )
        elif days_left < warn_days:
            problems.append(
                (Status.WARNING, f"expires in {days_left:.1f} days ({not_after:%Y-%m-%d})")
            )
    # 6. protocol versions
    if obs.versions and not any(v in MODERN for v in obs.versions):
        problems.append(
            (
                Status.CRITICAL,
                f"offers only {', '.join(obs.versions)}: "
                "current browsers refuse it (enable TLS 1.2/1.3)",
            )
        )
    else:
        old = [v for v in obs.versions if v not in MODERN]
        if old:
            problems.append((Status.WARNING, f"still offers {', '.join(old)} (deprecated)"))
    # 7. TLS 1.2 ciphers
    if obs.tls12 is not None and "TLSv1.2" in obs.versions:
        facts.update(_cipher_facts(obs.tls12, "TLSv1.3" in obs.versions, problems))
    # 8. plain HTTP and HSTS
    hsts = obs.https.header("Strict-Transport-Security")
    facts["hsts"] = hsts
    facts["https_status"] = obs.https.status
    if obs.http is not None:
        facts.update(_http_facts(target, obs.http, problems))

    worst = max((s for s, _ in problems), default=Status.OK)
    if worst is Status.OK:
        reason = (
            f"valid until {not_after:%Y-%m-%d} ({days_left:.0f} days left), "
            f"issued by {_cn(leaf.issuer)}"
        )
    else:
        reason = next(text for s, text in problems if s is worst)
    return Report(label, worst, reason, tuple(problems), facts)


def _chain_facts(
    chain: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: dt.datetime,
    problems: list[tuple[Status, str]],
) -> dict[str, Any]:
    """Trust, with the first certificate that clients refuse as the cause: each certificate on
    the path a client builds is judged at ``now`` (an expired intermediate, an RSA-1024 key, a
    SHA-1 signature), then ``cryptography``'s verifier has the last word on the rest."""
    leaf, intermediates = chain[0], chain[1:]
    path = build_path(chain, roots)
    refused = [text for link in path for text in link_problems(link, now)]
    problems.extend((Status.CRITICAL, text) for text in refused)
    trust_error = _trust_error(leaf, intermediates, roots, now)
    if trust_error is not None and not refused:
        if leaf.issuer == leaf.subject:
            problems.append(
                (
                    Status.CRITICAL,
                    f"self-signed certificate: not trusted (subject {display_name(leaf)})",
                )
            )
        elif leaf.issuer not in {c.subject for c in intermediates} | {r.subject for r in roots}:
            problems.append(
                (
                    Status.CRITICAL,
                    "incomplete chain: the server does not send the "
                    f"intermediate certificate {_cn(leaf.issuer)!r} "
                    "(serve fullchain.pem, not cert.pem)",
                )
            )
        else:
            detail = "" if "candidates exhausted" in trust_error else f" ({trust_error})"
            problems.append(
                (
                    Status.CRITICAL,
                    f"not trusted: issued by {_cn(leaf.issuer)!r}, "
                    f"which does not lead to a trusted root{detail}",
                )
            )
    order = order_problem(path, chain)
    if order is not None:
        problems.append((Status.WARNING, order))
    return {
        "trusted": trust_error is None and not refused,
        "chain_order_ok": order is None,
        "chain_keys": [key_type(c) for c in chain],
        "chain_signatures": [signature_name(c) for c in chain],
    }


def _cipher_facts(
    probe: CipherProbe, tls13: bool, problems: list[tuple[Status, str]]
) -> dict[str, Any]:
    """TLS 1.2 without a forward-secret cipher: whoever records the traffic can decrypt it
    once they get the key. CRITICAL when no client can do better (no TLS 1.3), else WARNING.
    Static RSA accepted next to ECDHE is left alone: clients pick ECDHE."""
    if probe.forward_secret is None:
        only = f", only static RSA key exchange ({probe.static_rsa})" if probe.static_rsa else ""
        problems.append(
            (
                Status.WARNING if tls13 else Status.CRITICAL,
                f"TLS 1.2 offers no forward-secret cipher{only}: enable ECDHE ciphers",
            )
        )
    return {
        "tls12_forward_secret_cipher": probe.forward_secret,
        "tls12_static_rsa_cipher": probe.static_rsa,
    }


def _http_facts(
    target: Target, answer: HttpAnswer, problems: list[tuple[Status, str]]
) -> dict[str, Any]:
    url = f"http://{target.host}:{target.http_port}/"
    facts: dict[str, Any] = {
        "http_port": target.http_port,
        "http_status": answer.status,
        "http_location": answer.header("Location"),
        "http_redirects": False,
    }
    if answer.error is not None:
        facts["http_error"] = answer.error
        return facts  # nothing listening on plain HTTP: no insecure path to redirect
    location = answer.header("Location") or ""
    if answer.status in REDIRECTS and location.lower().startswith("https://"):
        facts["http_redirects"] = True
    elif answer.status in REDIRECTS:
        problems.append(
            (
                Status.WARNING,
                f"{url} redirects ({answer.status}) to {location or 'nowhere'}, not to HTTPS",
            )
        )
    else:
        problems.append(
            (Status.WARNING, f"{url} answers {answer.status} without redirecting to HTTPS")
        )
    return facts
