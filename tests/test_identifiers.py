"""Identifier validation: the edge every name passes through."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certsmith.base.identifiers import (
    Identifier,
    default_cert_name,
    parse_identifier,
    parse_identifiers,
)
from certsmith.errors import IdentifierError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Example.COM", Identifier("dns", "example.com")),
        ("example.com.", Identifier("dns", "example.com")),
        ("*.example.com", Identifier("dns", "*.example.com")),
        ("bücher.example", Identifier("dns", "xn--bcher-kva.example")),
        ("localhost", Identifier("dns", "localhost")),
        ("127.0.0.1", Identifier("ip", "127.0.0.1")),
        ("::1", Identifier("ip", "::1")),
        ("[2001:db8:0:0::1]", Identifier("ip", "2001:db8::1")),
        ("a" * 63 + ".com", Identifier("dns", "a" * 63 + ".com")),
    ],
)
def test_valid(text: str, expected: Identifier) -> None:
    assert parse_identifier(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "../x",
        "exa mple.com",
        "*.*.example.com",
        "a..b",
        "foo.*.com",
        "",
        " ",
        "a" * 64 + ".com",
        "-a.com",
        "a-.com",
        "a_b.com",
        "example.com/x",
        "1.2.3",
        "*.com",
        "http://example.com",
        "x" * 250 + ".com",
        "ex@mple.com",
        "*",
    ],
)
def test_invalid(text: str) -> None:
    with pytest.raises(IdentifierError) as info:
        parse_identifier(text)
    message = str(info.value)
    assert "\n" not in message and message.startswith("invalid name")


def test_many() -> None:
    idents = parse_identifiers(["a.com,b.com", "A.com", "127.0.0.1"])
    assert [i.value for i in idents] == ["a.com", "b.com", "127.0.0.1"]
    with pytest.raises(IdentifierError, match="at most 100"):
        parse_identifiers([f"h{i}.example.com" for i in range(101)])
    with pytest.raises(IdentifierError):
        parse_identifiers([])


def test_cert_names_are_path_safe() -> None:
    assert default_cert_name(parse_identifier("*.example.com")) == "_.example.com"
    assert default_cert_name(parse_identifier("::1")) == "--1"


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@given(st.lists(_label, min_size=2, max_size=5))
def test_ldh_names_roundtrip(labels: list[str]) -> None:
    if labels[-1].isdigit():
        labels[-1] += "x"
    name = ".".join(labels)
    assert parse_identifier(name.upper()).value == name
    assert parse_identifier(f"*.{name}").is_wildcard


@given(st.text(max_size=80))
def test_never_crashes_and_output_is_safe(text: str) -> None:
    try:
        ident = parse_identifier(text)
    except IdentifierError:
        return
    assert "/" not in ident.value and ".." not in ident.value and " " not in ident.value
    assert ident.value == ident.value.lower()
