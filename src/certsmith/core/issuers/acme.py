"""ACME (RFC 8555) issuance on certbot's ``acme`` library.

We keep the library's wire messages and JWS handling and add what it lacks for unattended use:
retrying ``badNonce`` as often as the CA asks (the library retries once), fast polling that honours
Retry-After, ARI (RFC 9773) with ``replaces``, profiles and preferred chains, and errors turned
into one actionable line.

Calls into the library's private API (``ClientV2._post`` and friends, the ``ClientNetwork``
subclass, the ``replaces`` newOrder) live in :mod:`certsmith.core.issuers.acme_adapter`; this
module uses only the library's public names.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import josepy as jose
import requests
from acme import challenges, errors, messages
from acme import client as acme_client
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certsmith.base.crashpoints import crash_point
from certsmith.base.identifiers import Identifier
from certsmith.base.keys import split_pem_chain
from certsmith.base.version import VERSION
from certsmith.core.issuers import acme_adapter
from certsmith.core.issuers.acme_adapter import DeadlineExceeded
from certsmith.core.issuers.base import Issued
from certsmith.core.renewal import AriWindow
from certsmith.core.solvers.base import Challenge, Solver
from certsmith.errors import CAError, ChallengeError, UsageError

T = TypeVar("T")
USER_AGENT = f"certsmith/{VERSION}"
NONCE_RETRIES = 25
POLL_FIRST = 0.05
POLL_MAX = 2.0
ORDER_TIMEOUT = 300.0
NETWORK_TIMEOUT = 30


def _describe(exc: BaseException, url: str) -> str:
    if isinstance(exc, messages.Error):
        detail = exc.detail or exc.description or exc.typ
        sub = ""
        for p in exc.subproblems or ():
            where = p.identifier.value if p.identifier else ""
            sub += f"{'; ' if sub else ''}{where}: {p.detail}"
        code = exc.code or (exc.typ or "").rsplit(":", 1)[-1]
        return f"the CA refused: {detail}{' (' + sub + ')' if sub else ''} [{code}]"
    if isinstance(exc, requests.exceptions.SSLError):
        return (
            f"TLS verification of the CA at {url} failed (if it uses a private CA, give "
            "'certsmith get' --ca-bundle FILE, or set REQUESTS_CA_BUNDLE)"
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"cannot reach the CA at {url}: connection failed"
    if isinstance(exc, DeadlineExceeded):
        return f"the CA at {url} sent no complete answer within {exc.seconds:g} s"
    if isinstance(exc, requests.exceptions.Timeout):
        return f"the CA at {url} did not answer in time"
    if isinstance(exc, errors.ClientError):
        what = exc.args[0] if exc.args else exc
        if isinstance(what, tuple) and what:
            what = what[0]
        if isinstance(what, requests.Response):
            body = " ".join(what.text.split())[:160]
            return f"unexpected answer from the CA at {url}: HTTP {what.status_code} {body}"
        return f"unexpected answer from the CA at {url}: {what}"
    return f"ACME error talking to {url}: {exc}"


def _retry_after_seconds(response: requests.Response | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


@dataclass
class Account:
    """An ACME account: its key (JWK), its URL and its registration body."""

    key: jose.JWK
    uri: str
    body: dict[str, Any]

    def regr(self) -> messages.RegistrationResource:
        return messages.RegistrationResource(
            body=messages.Registration.from_json(self.body), uri=self.uri
        )


def new_account_key() -> tuple[jose.JWK, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return jose.JWKEC(key=key), pem


def load_account_key(pem: bytes) -> jose.JWK:
    key = serialization.load_pem_private_key(pem, password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return jose.JWKEC(key=key)
    return jose.JWKRSA(key=key)


def _alg(key: jose.JWK) -> Any:
    if isinstance(key, jose.JWKEC):
        size = key.key.curve.key_size
        return {256: jose.ES256, 384: jose.ES384}.get(size, jose.ES512)
    return jose.RS256


SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
)


def use_system_trust() -> None:
    """Verify CAs with the system trust store (where `certsmith trust install` and the
    distribution put roots), not the bundle shipped with requests; REQUESTS_CA_BUNDLE wins."""
    if os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE"):
        return
    for path in (ssl.get_default_verify_paths().cafile, *SYSTEM_BUNDLES):
        if path and os.path.isfile(path):
            os.environ["REQUESTS_CA_BUNDLE"] = path
            return


class AcmeConnection:
    """One CA directory; creates per-thread clients that share the directory and the account."""

    def __init__(self, directory_url: str, ca_bundle: str | None = None) -> None:
        use_system_trust()
        self.url = directory_url
        # A bundle recorded with the site verifies the CA whatever the environment says (a
        # timer has no REQUESTS_CA_BUNDLE); requests takes a path where a bool would go.
        self.verify: bool | str = ca_bundle or True
        self._directory: messages.Directory | None = None
        self._lock = threading.Lock()

    def _net(self, key: jose.JWK | None, account: Account | None) -> acme_client.ClientNetwork:
        return acme_adapter.deadline_network(
            key=key,
            account=account.regr() if account else None,
            alg=_alg(key) if key is not None else jose.RS256,
            verify=self.verify,
            user_agent=USER_AGENT,
            timeout=NETWORK_TIMEOUT,
            nonce_retries=NONCE_RETRIES,
        )

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` and turn ACME/network failures into :class:`CAError`."""
        try:
            return fn(*args)
        except (messages.Error, errors.Error, requests.exceptions.RequestException) as exc:
            resp = getattr(exc, "response", None)
            code = exc.code if isinstance(exc, messages.Error) else None
            raise CAError(_describe(exc, self.url), _retry_after_seconds(resp), code) from exc

    def directory(self) -> messages.Directory:
        with self._lock:
            if self._directory is None:
                net = self._net(None, None)
                self._directory = self.call(
                    lambda: acme_client.ClientV2.get_directory(self.url, net)
                )
            return self._directory

    def client(self, account: Account) -> acme_client.ClientV2:
        return acme_client.ClientV2(self.directory(), self._net(account.key, account))

    # -- accounts -------------------------------------------------------------------------------

    def terms_of_service(self) -> str | None:
        meta = self.directory().meta
        return getattr(meta, "terms_of_service", None)

    def needs_eab(self) -> bool:
        meta = self.directory().meta
        return bool(getattr(meta, "external_account_required", False))

    def register(self, key: jose.JWK, email: str | None, eab: tuple[str, str] | None) -> Account:
        directory = self.directory()
        net = self._net(key, None)
        client = acme_client.ClientV2(directory, net)
        binding = None
        if eab is not None:
            try:
                binding = messages.ExternalAccountBinding.from_data(
                    account_public_key=key.public_key(),
                    kid=eab[0],
                    hmac_key=eab[1],
                    directory=directory,
                )
            except (ValueError, TypeError) as exc:
                raise UsageError("invalid --eab-hmac-key: expected base64url text") from exc
        reg = messages.NewRegistration.from_data(
            email=email, terms_of_service_agreed=True, external_account_binding=binding
        )

        def create() -> messages.RegistrationResource:
            try:
                return client.new_account(reg)
            except errors.ConflictError as conflict:
                # The key is already registered (a crash after creation): look it up.
                existing = messages.RegistrationResource(
                    uri=conflict.location, body=messages.Registration()
                )
                return client.query_registration(existing)

        regr = self.call(create)
        return Account(key=key, uri=regr.uri, body=regr.body.to_json())

    # -- ARI ------------------------------------------------------------------------------------

    def has_ari(self) -> bool:
        try:
            self.directory()["renewalInfo"]
        except KeyError:
            return False
        return True

    def renewal_info(self, ari_id: str) -> tuple[AriWindow, dt.datetime]:
        """The CA's suggested window for a certificate and when to ask again (Retry-After)."""
        base = self.directory()["renewalInfo"]
        net = self._net(None, None)
        url = base.rstrip("/") + "/" + ari_id
        resp: requests.Response = self.call(lambda: net.get(url, content_type="application/json"))
        try:
            info = messages.RenewalInfo.from_json(resp.json())
            window = AriWindow(info.suggested_window.start, info.suggested_window.end)
        except (ValueError, jose.DeserializationError) as exc:
            raise CAError(f"the CA sent unreadable renewal information for {ari_id}") from exc
        seconds = _retry_after_seconds(resp)
        if seconds is None:
            seconds = 6 * 3600
        seconds = min(max(seconds, 60), 7 * 86400)
        return window, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)

    # -- orders ---------------------------------------------------------------------------------

    def issue(
        self,
        account: Account,
        identifiers: Sequence[Identifier],
        csr_pem: bytes,
        solver: Solver,
        *,
        profile: str | None = None,
        replaces: str | None = None,
        preferred_chain: str | None = None,
        on_step: Callable[[str], None] | None = None,
    ) -> Issued:
        client = self.client(account)
        step = on_step or (lambda _s: None)
        deadline = time.monotonic() + ORDER_TIMEOUT
        step("ordering")
        orderr, refused = self._new_order(client, identifiers, csr_pem, profile, replaces)
        challenges: list[Challenge] = []
        pending: dict[
            Challenge, tuple[messages.AuthorizationResource, messages.ChallengeBody, Any]
        ] = {}
        for authzr in orderr.authorizations:
            if authzr.body.status == messages.STATUS_VALID:
                continue
            challb = _pick(authzr, solver.challenge_type)
            response, key_authorization, token = _respond(challb, client.net.key)
            challenge = Challenge(authzr.body.identifier.value, token, key_authorization)
            challenges.append(challenge)
            pending[challenge] = (authzr, challb, response)
        remaining = challenges
        while remaining:
            presented: Sequence[Challenge] = ()
            try:
                # All at once (or as many as the solver can hold at once), then one wait until
                # every answer can be validated (DNS-01's propagation), then the CA is asked.
                presented = remaining
                presented = solver.present_all(remaining) or remaining
                crash_point("order:presented")
                ready_by = time.monotonic() + max(
                    ORDER_TIMEOUT, float(getattr(solver, "ready_timeout", 0.0))
                )
                solver.wait_ready(presented, max(deadline, ready_by))
                step("validating")
                deadline = max(deadline, time.monotonic() + ORDER_TIMEOUT)
                for challenge in presented:
                    _authzr, challb, response = pending[challenge]
                    if isinstance(response, acme_adapter.TlsAlpnAnswer):
                        # (The acme library insists on an "up" Link that not every CA sends
                        # here; the authorization is polled next anyway.)
                        self.call(acme_adapter.post_signed, client, challb.uri, response)
                    else:
                        self.call(client.answer_challenge, challb, response)
                for challenge in presented:
                    self._poll_authz(client, pending[challenge][0], deadline)
            finally:
                if presented:
                    solver.cleanup_all(presented)
            done = set(presented)
            remaining = [c for c in remaining if c not in done]
        crash_point("order:validated")
        step("finalizing")
        issued = self._finalize(client, orderr, deadline, preferred_chain)
        return dataclasses.replace(
            issued, replaced=None if refused else replaces, replace_refused=refused
        )

    def _new_order(
        self,
        client: acme_client.ClientV2,
        identifiers: Sequence[Identifier],
        csr_pem: bytes,
        profile: str | None,
        replaces: str | None,
    ) -> tuple[messages.OrderResource, str | None]:
        """The new order, and why the CA refused ``replaces`` if it did."""
        idents = [
            messages.Identifier(
                typ=messages.IDENTIFIER_IP if i.is_ip else messages.IDENTIFIER_FQDN, value=i.value
            )
            for i in identifiers
        ]
        if profile:
            profiles = getattr(self.directory().meta, "profiles", None) or {}
            if profiles and profile not in profiles:
                raise UsageError(
                    f"the CA has no profile {profile!r}; it offers {', '.join(sorted(profiles))}"
                )
            if not profiles:
                raise UsageError(f"the CA offers no profiles; drop --profile {profile}")

        def post(with_replaces: str | None) -> messages.OrderResource:
            order = acme_adapter.new_order_message(idents, profile or None, with_replaces)
            response = acme_adapter.post_signed(client, self.directory()["newOrder"], order)
            body = messages.Order.from_json(response.json())
            authzs = [acme_adapter.fetch_authorization(client, url) for url in body.authorizations]
            return messages.OrderResource(
                body=body,
                uri=response.headers.get("Location"),
                authorizations=authzs,
                csr_pem=csr_pem,
            )

        refused = None
        if replaces and self.has_ari():
            try:
                return self.call(post, replaces), None
            except CAError as exc:
                # A CA may refuse "replaces" (already replaced by an order whose certificate we
                # never stored, unknown): order without it. Network failures are not that.
                if isinstance(exc.__cause__, requests.exceptions.RequestException):
                    raise
                refused = str(exc)
        return self.call(post, None), refused

    def _poll_authz(
        self, client: acme_client.ClientV2, authzr: messages.AuthorizationResource, deadline: float
    ) -> None:
        delay = POLL_FIRST
        while True:
            updated, response = self.call(lambda: client.poll(authzr))
            status = updated.body.status
            if status == messages.STATUS_VALID:
                return
            if status not in (messages.STATUS_PENDING, messages.STATUS_PROCESSING):
                raise ChallengeError(_authz_failure(updated))
            if time.monotonic() > deadline:
                raise CAError(f"validation of {updated.body.identifier.value} timed out")
            delay = _next_delay(delay, response)
            time.sleep(delay)

    def _finalize(
        self,
        client: acme_client.ClientV2,
        orderr: messages.OrderResource,
        deadline: float,
        preferred_chain: str | None,
    ) -> Issued:
        csr = orderr.csr_pem

        def begin() -> messages.OrderResource:
            try:
                return client.begin_finalization(orderr)
            except messages.Error as exc:
                if exc.code != "orderNotReady":
                    raise
                return orderr

        orderr = self.call(begin)
        delay = POLL_FIRST
        while True:
            response = self.call(acme_adapter.post_as_get, client, orderr.uri)
            body = messages.Order.from_json(response.json())
            if body.status == messages.STATUS_VALID and body.certificate:
                cert_resp = self.call(acme_adapter.post_as_get, client, body.certificate)
                chains = [cert_resp.text]
                if preferred_chain:
                    links = acme_adapter.alternate_links(client, cert_resp)
                    chains += [self.call(acme_adapter.post_as_get, client, u).text for u in links]
                return _split(_choose_chain(chains, preferred_chain))
            if body.status == messages.STATUS_INVALID:
                detail = body.error.detail if body.error else "no reason given"
                raise CAError(f"the CA refused to issue: {detail}")
            if body.status == messages.STATUS_READY:
                orderr = orderr.update(body=body, csr_pem=csr)
                orderr = self.call(begin)
            if time.monotonic() > deadline:
                raise CAError("the CA did not issue the certificate in time")
            delay = _next_delay(delay, response)
            time.sleep(delay)

    def revoke(self, account: Account, cert_pem: bytes, reason: int = 0) -> None:
        from cryptography import x509

        client = self.client(account)
        cert = x509.load_pem_x509_certificate(cert_pem)
        self.call(lambda: client.revoke(cert, reason))


def _next_delay(delay: float, response: requests.Response | None) -> float:
    """Short exponential backoff; a Retry-After from the CA wins (bounded)."""
    asked = _retry_after_seconds(response)
    if asked is not None:
        return min(max(asked, POLL_FIRST), 60.0)
    return min(delay * 1.6, POLL_MAX)


def _respond(challb: messages.ChallengeBody, key: jose.JWK) -> tuple[Any, str, str]:
    """(response to post, key authorization, token) for a key-authorization challenge (the
    key authorization itself, also for dns-01: its solver derives the TXT value)."""
    chall = challb.chall
    if isinstance(chall, challenges.KeyAuthorizationChallenge):
        return chall.response(key), chall.key_authorization(key), chall.encode("token")
    # RFC 8737: the key authorization is formed as for http-01.
    token = str(chall.jobj["token"])
    thumbprint = jose.b64encode(key.thumbprint(hash_function=hashes.SHA256)).decode()
    return acme_adapter.TlsAlpnAnswer(), f"{token}.{thumbprint}", token


def _typ(chall: Any) -> str:
    return (
        str(chall.jobj.get("type"))
        if isinstance(chall, challenges.UnrecognizedChallenge)
        else str(chall.typ)
    )


def _pick(authzr: messages.AuthorizationResource, typ: str) -> messages.ChallengeBody:
    for challb in authzr.body.challenges:
        chall = challb.chall
        if chall.typ == typ and isinstance(chall, challenges.KeyAuthorizationChallenge):
            return challb
        if typ == "tls-alpn-01" and _typ(chall) == typ and "token" in chall.jobj:
            return challb
    offered = ", ".join(_typ(c.chall) for c in authzr.body.challenges) or "none"
    raise ChallengeError(
        f"the CA does not offer {typ} for {authzr.body.identifier.value} (offers: {offered})"
    )


def _authz_failure(authzr: messages.AuthorizationResource) -> str:
    name = authzr.body.identifier.value
    for challb in authzr.body.challenges:
        if challb.error is not None:
            detail = challb.error.detail or challb.error.typ
            return f"validation of {name} failed ({challb.chall.typ}): {detail}"
    return f"validation of {name} failed: authorization is {authzr.body.status.name}"


def _issuer_cn(pem: bytes) -> str:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(pem)
    cns = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else ""


def _choose_chain(chains: Sequence[str], preferred: str | None) -> str:
    if preferred:
        for chain in chains:
            blocks = split_pem_chain(chain.encode())
            if any(_issuer_cn(b) == preferred for b in blocks):
                return chain
    return chains[0]


def _split(fullchain: str) -> Issued:
    blocks = split_pem_chain(fullchain.encode())
    if not blocks:
        raise CAError("the CA returned no certificate")
    return Issued(cert_pem=blocks[0], chain_pem=b"".join(blocks[1:]))


def account_id(key: jose.JWK) -> str:
    thumb = key.thumbprint(
        hash_function=__import__(
            "cryptography.hazmat.primitives.hashes", fromlist=["SHA256"]
        ).SHA256
    )
    return hashlib.sha256(thumb).hexdigest()[:16]


def account_json(account: Account, server: str) -> bytes:
    data = {
        "server": server,
        "uri": account.uri,
        "body": account.body,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    return json.dumps(data, indent=2).encode()
