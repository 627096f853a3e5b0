"""certsmith check's verdict without sockets: certificates and probe facts in, verdict out.

The cases the real-server tests cannot pin down cheaply: a served, expired copy of a root that
the trust store holds renewed (clients take the store's, as OpenSSL's trusted-first does; the
old Let's Encrypt cross-sign looked like this), an expired leaf with an expired intermediate
(both reported, the leaf first), and a cipher probe that did not get an answer (not judged).
"""

from __future__ import annotations

import datetime as dt

from cryptography.hazmat.primitives import serialization

from certsmith.services.check.target import Target
from certsmith.services.check.verdict import CipherProbe, Observation, Report, Status, evaluate
from tests.support.brokenchains import Made, make

NAME = "check.example.org"
NOW = dt.datetime.now(dt.UTC)


def der(*made: Made) -> tuple[bytes, ...]:
    return tuple(m.cert.public_bytes(serialization.Encoding.DER) for m in made)


def judge(
    chain: tuple[Made, ...],
    roots: tuple[Made, ...],
    tls12: CipherProbe | None = None,
    versions: tuple[str, ...] = ("TLSv1.2",),
) -> Report:
    obs = Observation(chain_der=der(*chain), protocol="TLSv1.2", versions=versions, tls12=tls12)
    return evaluate(
        Target(NAME), obs, roots=[r.cert for r in roots], now=NOW, warn_days=14, crit_days=7
    )


def test_expired_served_copy_of_a_renewed_root_is_not_on_the_path() -> None:
    root = make("Root", ca=True)
    old = make(
        "Root",
        ca=True,
        key=root.key,
        not_before=NOW - dt.timedelta(days=900),
        not_after=NOW - dt.timedelta(days=30),
    )
    inter = make("Intermediate", issuer=root, ca=True)
    report = judge((make(NAME, issuer=inter), inter, old), (root,))
    assert report.status is Status.OK, report.reason
    assert report.facts["trusted"] and report.facts["chain_order_ok"]


def test_expired_leaf_and_intermediate_both_reported_leaf_first() -> None:
    root = make("Root", ca=True, not_before=NOW - dt.timedelta(days=900))
    inter = make(
        "Intermediate",
        issuer=root,
        ca=True,
        not_before=NOW - dt.timedelta(days=800),
        not_after=NOW - dt.timedelta(days=2),
    )
    leaf = make(
        NAME,
        issuer=inter,
        not_before=NOW - dt.timedelta(days=100),
        not_after=NOW - dt.timedelta(days=4),
    )
    report = judge((leaf, inter), (root,))
    assert report.status is Status.CRITICAL
    assert report.reason.startswith("certificate expired on ")
    texts = [text for _, text in report.problems]
    assert texts[1].startswith("intermediate 'Intermediate' expired on ")
    assert report.facts["trusted"] is False


def test_cipher_probe_judged_only_when_answered() -> None:
    root = make("Root", ca=True)
    chain = (make(NAME, issuer=root),)
    assert judge(chain, (root,), tls12=None).status is Status.OK
    fs = CipherProbe(forward_secret="ECDHE-ECDSA-AES128-GCM-SHA256", static_rsa=None)
    assert judge(chain, (root,), tls12=fs).status is Status.OK
    weak = CipherProbe(forward_secret=None, static_rsa="AES128-GCM-SHA256")
    assert judge(chain, (root,), tls12=weak).status is Status.CRITICAL
    with13 = judge(chain, (root,), tls12=weak, versions=("TLSv1.2", "TLSv1.3"))
    assert with13.status is Status.WARNING
    no12 = judge(chain, (root,), tls12=weak, versions=("TLSv1.3",))
    assert no12.status is Status.OK  # TLS 1.2 not offered: its ciphers do not matter
