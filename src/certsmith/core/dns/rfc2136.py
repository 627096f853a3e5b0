"""RFC 2136 dynamic updates, TSIG-signed, over TCP to the zone's primary (BIND, Knot,
PowerDNS with dnsupdate, ...).

An add is one ``UPDATE`` that adds a member to the TXT rrset at the name (the server keeps the
others, so two values at one name both stay: ``appends``); a remove deletes exactly that
rdata. ``list_txt`` asks the same server directly (TCP, no recursion). The server is fixed
(``server``) or found per zone by ``primary_for(zone) -> "HOST:PORT"`` (the caller's SOA
lookup). Every failure is one :class:`DnsError` line naming the server and the key.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.tsig
import dns.update

from certsmith.core.dns.address import format_hostport, parse_hostport
from certsmith.core.dns.tsig import TsigKey, read_tsig_key
from certsmith.errors import DnsError, UsageError

DEFAULT_TIMEOUT = 10.0

_TSIG_ERRORS: dict[type[Exception], str] = {
    dns.tsig.PeerBadKey: "unknown key",
    dns.tsig.PeerBadSignature: "bad signature",
    dns.tsig.PeerBadTime: "clock skew: check this machine's time",
    dns.tsig.PeerBadTruncation: "bad truncation",
    dns.tsig.BadSignature: "its answer's signature does not verify",
    dns.tsig.BadTime: "its answer's time is off: check the clocks",
}


class Rfc2136Provider:
    """``key_file`` as tsig-keygen writes it; ``server`` HOST[:PORT] or None to ask
    ``primary_for(zone)`` for each zone."""

    appends = True

    def __init__(
        self,
        key_file: str | Path,
        *,
        server: str | None = None,
        primary_for: Callable[[str], str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.key_file = Path(key_file)
        self.server = parse_hostport(server) if server else None
        self.primary_for = primary_for
        self.timeout = timeout
        self._key: TsigKey | None = None

    @property
    def label(self) -> str:
        where = format_hostport(*self.server) if self.server else "the zone's primary"
        key = self._key.name if self._key else str(self.key_file)
        return f"RFC 2136 at {where} (key {key})"

    def prepare(self) -> None:
        self._key = read_tsig_key(self.key_file)
        if self.server is None and self.primary_for is None:
            raise UsageError("--dns rfc2136 needs a DNS server (HOST[:PORT]) to send updates to")

    @property
    def key(self) -> TsigKey:
        if self._key is None:
            self._key = read_tsig_key(self.key_file)
        return self._key

    def add_txt(self, zone: str, fqdn: str, value: str, ttl: int) -> None:
        update = self._update(zone)
        update.add(_absolute(fqdn), ttl, _txt(value))
        self._send(zone, fqdn, update, "add")

    def remove_txt(self, zone: str, fqdn: str, value: str) -> None:
        update = self._update(zone)
        update.delete(_absolute(fqdn), _txt(value))
        self._send(zone, fqdn, update, "remove")

    def list_txt(self, zone: str, fqdn: str) -> set[str] | None:
        """The TXT values the server answers for ``fqdn`` (authoritative, no recursion)."""
        query = dns.message.make_query(_absolute(fqdn), dns.rdatatype.TXT)
        query.flags &= ~dns.flags.RD
        host, port = self._server_for(zone)
        response = self._exchange(host, port, query)
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return set()
        if rcode != dns.rcode.NOERROR:
            raise DnsError(
                f"the DNS server {format_hostport(host, port)} answered "
                f"{dns.rcode.to_text(rcode)} for TXT {fqdn}"
            )
        found = response.get_rrset(
            response.answer, _absolute(fqdn), dns.rdataclass.IN, dns.rdatatype.TXT
        )
        if found is None:
            return set()
        return {b"".join(rdata.strings).decode("utf-8", "replace") for rdata in found}

    # -- internals ---------------------------------------------------------------------------

    def _update(self, zone: str) -> dns.update.UpdateMessage:
        key = self.key
        return dns.update.UpdateMessage(
            _absolute(zone),
            keyring=key.keyring,
            keyname=key.keyname,
            keyalgorithm=key.algorithm_name,
        )

    def _server_for(self, zone: str) -> tuple[str, int]:
        if self.server is not None:
            return self.server
        if self.primary_for is None:
            raise UsageError("--dns rfc2136 needs a DNS server (HOST[:PORT]) to send updates to")
        return parse_hostport(self.primary_for(zone))

    def _send(self, zone: str, fqdn: str, update: dns.update.UpdateMessage, verb: str) -> None:
        what = f"{verb} TXT at {fqdn}"
        host, port = self._server_for(zone)
        response = self._exchange(host, port, update)
        rcode = response.rcode()
        if rcode == dns.rcode.NOERROR:
            return
        where = format_hostport(host, port)
        if rcode == dns.rcode.NOTAUTH:
            raise DnsError(
                f"the DNS server {where} is not authoritative for zone {zone} "
                f"(NOTAUTH): could not {what}"
            )
        if rcode == dns.rcode.NOTZONE:
            raise DnsError(f"the DNS server {where}: {fqdn} is not in zone {zone} (NOTZONE)")
        if rcode == dns.rcode.REFUSED:
            raise DnsError(
                f"the DNS server {where} refused the update to zone {zone} "
                f"(REFUSED): does its update-policy allow key "
                f"'{self.key.name}' to change TXT records there?"
            )
        if rcode == dns.rcode.SERVFAIL:
            raise DnsError(
                f"the DNS server {where} failed the update to zone {zone} (SERVFAIL): see its log"
            )
        raise DnsError(
            f"the DNS server {where} answered {dns.rcode.to_text(rcode)}: could "
            f"not {what} in zone {zone}"
        )

    def _exchange(self, host: str, port: int, message: dns.message.Message) -> dns.message.Message:
        where = format_hostport(host, port)
        address = _address(host, port)
        try:
            return dns.query.tcp(message, address, timeout=self.timeout, port=port)
        except tuple(_TSIG_ERRORS) as exc:
            why = _TSIG_ERRORS[type(exc)]
            raise DnsError(
                f"the DNS server {where} refused TSIG key '{self.key.name}' "
                f"({why}): check --tsig-key-file {self.key_file}"
            ) from None
        except dns.message.UnknownTSIGKey:
            raise DnsError(
                f"the DNS server {where} signed its answer with another key than '{self.key.name}'"
            ) from None
        except (dns.exception.Timeout, TimeoutError):
            raise DnsError(
                f"cannot reach DNS server {where}: timed out after {self.timeout:g} s"
            ) from None
        except ConnectionRefusedError:
            raise DnsError(f"cannot reach DNS server {where}: connection refused") from None
        except EOFError:
            raise DnsError(
                f"the DNS server {where} closed the connection without answering"
            ) from None
        except OSError as exc:
            reason = exc.strerror or errno.errorcode.get(exc.errno or 0, "") or str(exc)
            raise DnsError(f"cannot reach DNS server {where}: {reason}") from None
        except dns.exception.DNSException as exc:
            raise DnsError(f"the DNS server {where} sent a bad answer: {exc}") from None


def _absolute(name: str) -> dns.name.Name:
    return dns.name.from_text(name.rstrip(".") + ".")


def _txt(value: str) -> dns.rdtypes.ANY.TXT.TXT:
    return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [value.encode()])


def _address(host: str, port: int) -> str:
    """An IP address for ``host`` (dnspython needs one): itself, or the first the system
    resolver gives for a name."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DnsError(f"cannot resolve DNS server name {host}: {exc.strerror}") from None
    return str(infos[0][4][0])
