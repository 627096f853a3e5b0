"""Every use of the ``acme`` library's private or undocumented API, in one place.

certbot's ``acme`` package documents ``ClientV2``'s high-level calls (``new_account``,
``new_order``, ``answer_challenge``, ``poll``, ``begin_finalization``...) and the message
classes. What certsmith needs beyond them -- an order with RFC 9773's ``replaces``, a badNonce
retried more than once, a deadline over each whole request, a tls-alpn-01 answer, every
``alternate`` chain -- goes through the library's internals. Those calls live here, each in a
small function saying which internal it relies on, so that an ``acme`` upgrade is checked
against this one module (``pyproject.toml`` caps ``acme`` below its next major version, and
``tests/test_acme_private_api.py`` fails if a ``_``-prefixed ``acme``/``josepy`` attribute is
used anywhere else under ``src/``).

Nothing here decides policy: the callers (``acme.py``) pass the retry count and timeouts.
"""

from __future__ import annotations

from typing import Any

import josepy as jose
import requests
from acme import client as acme_client
from acme import messages

from certsmith.base.deadline import Deadline
from certsmith.core.issuers.deadline_http import DeadlineAdapter


class DeadlineExceeded(requests.exceptions.Timeout):
    """A request got no complete answer within its ``Deadline``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no complete answer within {seconds:g} s")
        self.seconds = seconds


# -- the network layer --------------------------------------------------------------------------


class _Network(acme_client.ClientNetwork):  # type: ignore[misc]
    """ClientNetwork that retries badNonce with a fresh nonce as often as needed, and bounds
    every request's total time (``Deadline``), not only each read: a CA that trickles its
    answer would otherwise hang the command forever.

    Private API: overrides ``ClientNetwork._send_request`` (the one method every GET, HEAD and
    signed POST of the library goes through, so the deadline covers nonce fetches too) and
    calls ``ClientNetwork._post_once`` (one signed POST with a fresh nonce; the public ``post``
    retries badNonce only once). Also remounts the undocumented ``session`` attribute with a
    :class:`DeadlineAdapter`.
    """

    def __init__(self, *args: Any, nonce_retries: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.nonce_retries = nonce_retries
        adapter = DeadlineAdapter()
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        with Deadline() as deadline:
            try:
                response: requests.Response = super()._send_request(method, url, *args, **kwargs)
            except requests.exceptions.RequestException as exc:
                if deadline.expired:
                    raise DeadlineExceeded(deadline.seconds) from exc
                raise
            if deadline.expired:  # (a body read to EOF ends "complete" when cut)
                raise DeadlineExceeded(deadline.seconds)
            return response

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:
        for attempt in range(self.nonce_retries):
            try:
                return self._post_once(*args, **kwargs)  # type: ignore[no-any-return]
            except messages.Error as error:
                if error.code != "badNonce" or attempt == self.nonce_retries - 1:
                    raise
        raise AssertionError("unreachable")


def deadline_network(
    *,
    key: jose.JWK | None,
    account: messages.RegistrationResource | None,
    alg: Any,
    verify: bool | str,
    user_agent: str,
    timeout: int,
    nonce_retries: int,
) -> acme_client.ClientNetwork:
    """A ``ClientNetwork`` whose requests each run under a ``Deadline`` and whose signed POSTs
    retry badNonce up to ``nonce_retries`` times (see :class:`_Network` for the private
    ``_send_request``/``_post_once`` it relies on)."""
    return _Network(
        key=key,
        account=account,
        alg=alg,
        verify_ssl=verify,
        user_agent=user_agent,
        timeout=timeout,
        nonce_retries=nonce_retries,
    )


# -- signed requests outside ClientV2's public calls --------------------------------------------


def post_signed(client: acme_client.ClientV2, url: str, obj: Any) -> requests.Response:
    """POST ``obj`` to ``url``, signed with the account key, with the directory's newNonce URL.

    Private API: ``ClientV2._post`` (the library's signed POST; no public call takes an
    arbitrary URL and body). Used for a newOrder carrying ``replaces`` and for the tls-alpn-01
    answer, which ``ClientV2.answer_challenge`` rejects when the CA sends no "up" Link.
    """
    response: requests.Response = client._post(url, obj)
    return response


def post_as_get(client: acme_client.ClientV2, url: str) -> requests.Response:
    """Fetch ``url`` with a POST-as-GET (RFC 8555 6.3).

    Private API: ``ClientV2._post_as_get`` (no public call fetches an arbitrary resource; the
    public ``poll_finalization`` polls on the library's own schedule and ignores Retry-After,
    and it cannot fetch the alternate chains).
    """
    response: requests.Response = client._post_as_get(url)
    return response


def fetch_authorization(client: acme_client.ClientV2, url: str) -> messages.AuthorizationResource:
    """The authorization at ``url`` (POST-as-GET), as an ``AuthorizationResource``.

    Private API: ``ClientV2._post_as_get`` and ``ClientV2._authzr_from_response`` (what the
    public ``new_order`` does for each authorization; we build the order ourselves to send
    ``replaces``).
    """
    authzr: messages.AuthorizationResource = client._authzr_from_response(
        client._post_as_get(url), uri=url
    )
    return authzr


def alternate_links(client: acme_client.ClientV2, response: requests.Response) -> list[str]:
    """The URLs of every ``Link: <...>; rel="alternate"`` of a certificate response.

    Private API: ``ClientV2._get_links`` (``requests``' ``response.links`` keeps only one link
    per relation; RFC 8555 7.4.2 sends one per alternate chain).
    """
    links: list[str] = client._get_links(response, "alternate")
    return links


# -- messages the library lacks -----------------------------------------------------------------


class _NewOrder(messages.NewOrder):  # type: ignore[misc]
    """newOrder with RFC 9773's ``replaces`` (the acme library does not send it yet).

    Relies on subclassing the library's ``messages.NewOrder`` and josepy's field machinery
    (``JSONObjectWithFields``) to add a field to a message whose field set is the library's.
    """

    replaces: str | None = jose.field("replaces", omitempty=True)


def new_order_message(
    identifiers: list[messages.Identifier], profile: str | None, replaces: str | None
) -> messages.NewOrder:
    """A newOrder body with ``identifiers``, ``profile`` and ``replaces`` (each omitted when
    ``None``); see :class:`_NewOrder` for the library subclass it relies on."""
    order: messages.NewOrder = _NewOrder(
        identifiers=identifiers, profile=profile, replaces=replaces
    )
    return order


class TlsAlpnAnswer:
    """The answer to a tls-alpn-01 challenge (an empty JSON object), which the acme library no
    longer knows.

    Relies on how ``ClientNetwork._wrap_in_jws`` serialises a payload: it calls
    ``obj.json_dumps(indent=2)`` when ``obj`` is truthy and sends an empty payload (a
    POST-as-GET) when it is falsy -- so this object is truthy on purpose. Post it with
    :func:`post_signed`.
    """

    def json_dumps(self, **_kwargs: Any) -> str:
        return "{}"

    def to_partial_json(self) -> dict[str, Any]:
        return {}
