"""Pure parts of the operations features: target parsing, name matching, expiry thresholds,
certbot's configobj subset, the Prometheus rendering."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certsmith.base.certstate import CertState
from certsmith.errors import UsageError
from certsmith.services.alerts.model import DEFAULT_THRESHOLDS, threshold_due
from certsmith.services.check.target import parse_target
from certsmith.services.check.verdict import name_matches, parse_response_head
from certsmith.services.importer import configobj
from certsmith.services.metrics import render
from tests.test_alerts import check_exposition


@pytest.mark.parametrize(
    ("text", "host", "port", "http"),
    [
        ("example.org", "example.org", 443, 80),
        ("Example.ORG.", "example.org", 443, 80),
        ("example.org:8443", "example.org", 8443, None),
        ("https://example.org/x", "example.org", 443, 80),
        ("https://example.org:9443/", "example.org", 9443, None),
        ("http://example.org/", "example.org", 443, 80),
        ("[::1]:8443", "::1", 8443, None),
        ("2001:db8::1", "2001:db8::1", 443, 80),
    ],
)
def test_parse_target(text: str, host: str, port: int, http: int | None) -> None:
    t = parse_target(text)
    assert (t.host, t.port, t.http_port) == (host, port, http)


@pytest.mark.parametrize("bad", ["", "ftp://x/", "x:0", "x:99999", "a b", "https:///"])
def test_parse_target_rejects(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_target(bad)


def test_connect_overrides_address_and_port() -> None:
    t = parse_target("https://example.org/", connect="127.0.0.1:8443", http_port=False)
    assert (t.host, t.address, t.port, t.http_port) == ("example.org", "127.0.0.1", 8443, None)


def test_name_matching() -> None:
    assert name_matches("a.example.org", ["*.example.org"], [])
    assert not name_matches("a.b.example.org", ["*.example.org"], [])
    assert not name_matches("example.org", ["*.example.org"], [])
    assert name_matches("EXAMPLE.org.", ["example.org"], [])
    assert name_matches("::1", [], ["0:0::1"])
    assert not name_matches("127.0.0.1", ["127.0.0.1"], [])


def test_response_head() -> None:
    head = parse_response_head(b"HTTP/1.1 308 Permanent\r\nLocation: https://x/\r\n\r\nbody")
    assert head.status == 308 and head.header("location") == "https://x/"
    assert parse_response_head(b"SSH-2.0-OpenSSH\r\n").error == "not an HTTP response"


@given(st.lists(st.floats(min_value=-2, max_value=40), min_size=1, max_size=40))
def test_each_threshold_fires_at_most_once(days: list[float]) -> None:
    """Scans at any (descending) times: no threshold twice, and never one above the days
    left nor one that is no longer the most urgent crossed."""
    sent: set[int] = set()
    fired = []
    for d in sorted(days, reverse=True):
        t = threshold_due(d, 90, DEFAULT_THRESHOLDS, sent)
        if t is not None:
            assert d <= t and t not in sent
            assert t == min(x for x in DEFAULT_THRESHOLDS if d <= x)
            sent.add(t)
            fired.append(t)
    assert len(fired) == len(set(fired))


def test_short_lifetimes_skip_large_thresholds() -> None:
    assert threshold_due(2.5, 6, DEFAULT_THRESHOLDS, set()) is None  # normal course
    assert threshold_due(0.5, 6, DEFAULT_THRESHOLDS, set()) == 1


def test_configobj_certbot_subset() -> None:
    text = """# renew_before_expiry = 30 days
version = 2.11.0
cert = /etc/letsencrypt/live/a/cert.pem
[renewalparams]
account = abc
authenticator = webroot
webroot_path = /var/www/html,
renew_hook = "echo a, b"
server = https://acme-v02.api.letsencrypt.org/directory
[[webroot_map]]
a.example.org = /var/www/html
www.a.example.org = /var/www/html
"""
    conf = configobj.parse(text)
    rp = conf["renewalparams"]
    assert conf["version"] == "2.11.0"
    assert rp["webroot_path"] == ["/var/www/html"] and rp["renew_hook"] == "echo a, b"
    assert rp["webroot_map"] == {
        "a.example.org": "/var/www/html",
        "www.a.example.org": "/var/www/html",
    }
    with pytest.raises(UsageError, match="line 2"):
        configobj.parse("[renewalparams]\nnot a pair\n")


def test_metrics_render_escapes_and_parses() -> None:
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    text = render(
        [
            ('a"b', CertState(not_after=now, failures=2, last_result="failed")),
            ("fresh", CertState()),
        ],
        now,
    )
    check_exposition(text)
    assert 'certsmith_renewal_last_success{name="a\\"b"} 0' in text
    assert 'certsmith_renewal_consecutive_failures{name="a\\"b"} 2' in text
    assert "certsmith_certificates 2" in text
