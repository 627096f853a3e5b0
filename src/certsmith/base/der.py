"""Just enough ASN.1 DER to build and read X.509 certificates.

Pure: bytes in, bytes out. It exists so that issuing a local certificate needs only
``cryptography``'s key primitives, not its (slow to import) X.509 layer; ``certsmith local`` runs
once per invocation and its start-up time is most of its cost.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from certsmith.errors import UsageError

# Universal tags.
BOOLEAN = 0x01
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
UTF8_STRING = 0x0C
PRINTABLE_STRING = 0x13
IA5_STRING = 0x16
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18
SEQUENCE = 0x30
SET = 0x31


class DerError(UsageError):
    """Bytes that are not the DER we expect."""


def tlv(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        return bytes((tag, n)) + value
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + value


def seq(*parts: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(parts))


def set_of(*parts: bytes) -> bytes:
    return tlv(SET, b"".join(sorted(parts)))


def integer(n: int) -> bytes:
    """Minimal two's complement (X.690 8.3.2): no leading 0x00 before a clear top bit, no
    leading 0xff before a set one. ``~n`` has the magnitude that decides a negative number's
    size: -128 is ``80`` (one octet), -129 is ``ff 7f``."""
    magnitude = n if n >= 0 else ~n
    size = magnitude.bit_length() // 8 + 1  # the bits, plus room for the sign bit
    return tlv(INTEGER, n.to_bytes(size, "big", signed=True))


def boolean(value: bool) -> bytes:
    return tlv(BOOLEAN, b"\xff" if value else b"\x00")


def null() -> bytes:
    return tlv(NULL, b"")


def octet_string(value: bytes) -> bytes:
    return tlv(OCTET_STRING, value)


def bit_string(value: bytes, unused: int = 0) -> bytes:
    return tlv(BIT_STRING, bytes((unused,)) + value)


def named_bits(bits: set[int]) -> bytes:
    """A BIT STRING of named bits (KeyUsage) in DER form: trailing zero bits removed."""
    if not bits:
        return bit_string(b"")
    top = max(bits)
    nbytes = top // 8 + 1
    value = 0
    for bit in bits:
        value |= 1 << (nbytes * 8 - 1 - bit)
    return bit_string(value.to_bytes(nbytes, "big"), nbytes * 8 - 1 - top)


def oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return tlv(OID, bytes(body))


def utf8(text: str) -> bytes:
    return tlv(UTF8_STRING, text.encode())


def ia5(text: str) -> bytes:
    return tlv(IA5_STRING, text.encode("ascii"))


def time(when: dt.datetime) -> bytes:
    """RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050."""
    when = when.astimezone(dt.UTC)
    if 1950 <= when.year < 2050:
        return tlv(UTC_TIME, when.strftime("%y%m%d%H%M%SZ").encode())
    return tlv(GENERALIZED_TIME, when.strftime("%Y%m%d%H%M%SZ").encode())


def explicit(number: int, inner: bytes) -> bytes:
    return tlv(0xA0 | number, inner)


def implicit(number: int, value: bytes, *, constructed: bool = False) -> bytes:
    return tlv((0xA0 if constructed else 0x80) | number, value)


# -- reading ---------------------------------------------------------------------------------------


def read(data: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    """Read one TLV at ``pos``: (tag, value, position after it)."""
    try:
        tag = data[pos]
        first = data[pos + 1]
        pos += 2
        if first < 0x80:
            length = first
        else:
            count = first & 0x7F
            if count == 0 or count > 4:
                raise DerError("unsupported DER length")
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
    except IndexError:
        raise DerError("truncated DER") from None
    end = pos + length
    if end > len(data):
        raise DerError("truncated DER")
    return tag, data[pos:end], end


def read_oid(value: bytes) -> str:
    """The dotted form of an OBJECT IDENTIFIER's contents (the inverse of :func:`oid`)."""
    arcs: list[int] = []
    arc = 0
    for i, octet in enumerate(value):
        if arc == 0 and octet == 0x80:
            raise DerError("non-minimal OID arc")
        arc = arc << 7 | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(arc)
            arc = 0
        elif i == len(value) - 1:
            raise DerError("truncated OID")
    if not arcs:
        raise DerError("empty OID")
    first = min(arcs[0] // 40, 2)
    return ".".join(map(str, [first, arcs[0] - 40 * first, *arcs[1:]]))


def read_raw(data: bytes, pos: int = 0) -> tuple[bytes, int]:
    """Read one TLV at ``pos`` and return it whole (tag and length included)."""
    _, _, end = read(data, pos)
    return data[pos:end], end


def children(value: bytes) -> Iterator[tuple[int, bytes, bytes]]:
    """The elements of a constructed value: (tag, value, whole TLV)."""
    pos = 0
    while pos < len(value):
        tag, inner, end = read(value, pos)
        yield tag, inner, value[pos:end]
        pos = end


def read_time(tag: int, value: bytes) -> dt.datetime:
    text = value.decode("ascii")
    if tag == UTC_TIME:
        parsed = dt.datetime.strptime(text, "%y%m%d%H%M%SZ")
    elif tag == GENERALIZED_TIME:
        parsed = dt.datetime.strptime(text, "%Y%m%d%H%M%SZ")
    else:
        raise DerError("not a time")
    return parsed.replace(tzinfo=dt.UTC)


def pem(label: str, der: bytes) -> bytes:
    import base64

    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"".join(
        [
            f"-----BEGIN {label}-----\n".encode(),
            *(ln + b"\n" for ln in lines),
            f"-----END {label}-----\n".encode(),
        ]
    )


def unpem(data: bytes, label: str) -> list[bytes]:
    """Every ``label`` block in ``data``, decoded."""
    import base64

    begin = f"-----BEGIN {label}-----".encode()
    end = f"-----END {label}-----".encode()
    out: list[bytes] = []
    pos = 0
    while True:
        start = data.find(begin, pos)
        if start < 0:
            return out
        stop = data.find(end, start)
        if stop < 0:
            raise DerError(f"unterminated PEM {label}")
        try:
            out.append(
                base64.b64decode(b"".join(data[start + len(begin) : stop].split()), validate=True)
            )
        except ValueError:
            raise DerError(f"invalid PEM {label}") from None
        pos = stop + len(end)
