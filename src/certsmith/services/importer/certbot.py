"""Take over certbot's lineages: accounts, keys and certificates, renewal parameters.

Two phases so that nothing is half-imported: ``scan`` reads and validates everything (no
writes; a broken lineage is reported, a lineage certsmith cannot renew the same way is listed
as skipped), then ``apply`` writes certsmith's state for the valid lineages and, last, points
certbot's ``live/<name>/*.pem`` at certsmith's live files and retires certbot's renewal
config for them (renamed, so certbot's timer stops renewing what certsmith now renews).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certsmith.base import events, keys
from certsmith.base.certstate import CertState, save_state
from certsmith.base.identifiers import parse_identifiers
from certsmith.base.keys import CertInfo
from certsmith.base.model import Bundle, SiteSpec, SolverSpec, StandaloneSpec, WebrootSpec
from certsmith.base.sites import save_site, site_key
from certsmith.base.store import Store, open_store
from certsmith.base.store import keys as store_keys
from certsmith.core.issuers.cas import ALIASES, server_id
from certsmith.errors import CertsmithError, StoreError, UsageError
from certsmith.services.importer import certbot_dns, configobj

DEFAULT_DIR = "/etc/letsencrypt"
FILES = ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem")
RETIRED_SUFFIX = ".imported-by-certsmith"
SUPPORTED = ("webroot", "standalone")


@dataclass(frozen=True)
class CertbotAccount:
    server: str
    id: str
    key_pem: bytes
    uri: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Lineage:
    """One certbot lineage, validated and translated."""

    name: str
    spec: SiteSpec
    bundle: Bundle
    info: CertInfo
    account: CertbotAccount
    live_dir: Path
    conf: Path
    notes: tuple[str, ...] = ()
    secrets: tuple[tuple[str, bytes], ...] = ()  # store key, data: written private (0600)

    def describe(self) -> str:
        solver = self.spec.solver
        how = (
            f"standalone on port {solver.http_port}"
            if isinstance(solver, StandaloneSpec)
            else solver.describe()
        )
        hooks = len(self.spec.deploy_commands)
        deploy = f", {hooks} deploy command{'s' if hooks != 1 else ''}" if hooks else ""
        return (
            f"{', '.join(i.value for i in self.spec.identifiers)} ({how}, "
            f"{self.spec.key_type}{', reuse key' if self.spec.reuse_key else ''}{deploy}; "
            f"expires {self.info.not_after:%Y-%m-%d}) from {self.spec.server}"
        )


@dataclass(frozen=True)
class Problem:
    name: str
    reason: str


@dataclass(frozen=True)
class Plan:
    source: Path
    lineages: tuple[Lineage, ...] = ()
    skipped: tuple[Problem, ...] = ()  # valid, but certsmith cannot renew it the same way
    broken: tuple[Problem, ...] = field(default=())  # corrupt or partial: nothing is written


class _Broken(CertsmithError):
    pass


class _Skip(CertsmithError):
    pass


def _key_type(rp: dict[str, Any], info: CertInfo) -> str:
    kind = str(rp.get("key_type") or "").lower()
    if not kind:  # certbot < 2.0 wrote no key_type: keep what the certificate has
        if info.key_type == "unknown":
            raise _Skip(f"unsupported key type of the current certificate ({info.key_type})")
        return info.key_type
    if kind == "ecdsa":
        curve = str(rp.get("elliptic_curve") or "secp256r1").lower()
        mapped = {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384"}.get(curve)
        if mapped is None:
            raise _Skip(f"elliptic curve {curve} is not supported (use secp256r1 or secp384r1)")
        return mapped
    if kind == "rsa":
        size = str(rp.get("rsa_key_size") or "2048")
        if size not in ("2048", "3072", "4096"):
            raise _Skip(f"RSA key size {size} is not supported (2048, 3072 or 4096)")
        return f"rsa{size}"
    raise _Skip(f"key type {kind!r} is not supported")


def _solver(
    rp: dict[str, Any], name: str, store: Store
) -> tuple[SolverSpec, tuple[str, ...], tuple[tuple[str, bytes], ...]]:
    """(spec, notes, secrets to store) of how certbot proves control of the names."""
    auth = str(rp.get("authenticator") or "")
    if auth == "manual":
        raise _Skip(
            "manual authenticator: certsmith cannot repeat hand-made or hook-script "
            "challenges yet; get it anew with 'certsmith get'"
        )
    if certbot_dns.plugin_name(auth) == certbot_dns.plugin_name(certbot_dns.RFC2136):
        key = store_keys.tsig_key(name)
        try:
            found = certbot_dns.rfc2136(rp, store.where(key))
        except certbot_dns.Unusable as exc:
            raise _Skip(f"certbot DNS plugin {auth!r}: {exc}") from None
        return found.spec, found.notes, ((key, found.key_file),)
    if auth.rpartition(":")[2].startswith("dns-"):
        raise _Skip(certbot_dns.other_plugin(auth))
    return _http01(rp, auth), (), ()


def _http01(rp: dict[str, Any], auth: str) -> SolverSpec:
    if auth not in SUPPORTED:
        raise _Skip(
            f"authenticator {auth or '(none)'!r} is not supported (webroot, standalone, "
            "dns-rfc2136)"
        )
    if auth == "standalone":
        port = str(rp.get("http01_port") or "80")
        if not port.isdigit():
            raise _Broken(f"invalid http01_port {port!r}")
        return StandaloneSpec(http_port=int(port), address=str(rp.get("http01_address") or ""))
    roots = set(configobj.as_list(rp.get("webroot_path")))
    webroot_map = rp.get("webroot_map") or {}
    if isinstance(webroot_map, dict):
        roots |= {str(v) for v in webroot_map.values()}
    if not roots:
        raise _Broken("webroot authenticator without a webroot_path")
    if len(roots) > 1:
        raise _Skip(
            f"several webroots ({', '.join(sorted(roots))}): certsmith uses one per "
            "certificate; split it with 'certsmith get --separate'"
        )
    return WebrootSpec(webroot=roots.pop())


def _hook(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else ", ".join(value)
    return text.strip() or None


def _read_account(source: Path, account_id: str, server: str) -> CertbotAccount:
    import josepy as jose

    matches = sorted((source / "accounts").glob(f"**/{account_id}/private_key.json"))
    if not matches:
        raise _Broken(f"account {account_id} is missing from accounts/")
    directory = matches[0].parent
    try:
        jwk = jose.JWK.json_loads(matches[0].read_text())
        regr = json.loads((directory / "regr.json").read_text())
        uri = regr["uri"]
        body = regr.get("body") or {}
    except (OSError, ValueError, KeyError, TypeError, jose.errors.DeserializationError) as exc:
        raise _Broken(f"account {account_id} is unreadable: {exc}") from None
    from cryptography.hazmat.primitives import serialization

    key_pem = jwk.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return CertbotAccount(server, account_id, key_pem, str(uri), dict(body))


def _lineage(source: Path, conf_path: Path, store: Store) -> Lineage:
    name = conf_path.name[: -len(".conf")]
    try:
        conf = configobj.parse(conf_path.read_text(), f"renewal/{conf_path.name}")
    except (OSError, UnicodeDecodeError) as exc:
        raise _Broken(f"cannot read renewal/{conf_path.name}: {exc}") from None
    except UsageError as exc:
        raise _Broken(str(exc)) from None
    rp = conf.get("renewalparams")
    if not isinstance(rp, dict):
        raise _Broken(f"renewal/{conf_path.name} has no [renewalparams]")
    solver, solver_notes, secrets = _solver(rp, name, store)
    live = source / "live" / name
    files: dict[str, bytes] = {}
    for filename in FILES:
        try:
            files[filename] = (live / filename).read_bytes()
        except OSError as exc:
            raise _Broken(f"live/{name}/{filename}: {exc.strerror}") from None
    try:
        info = keys.cert_info(files["cert.pem"])
        keys.load_key(files["privkey.pem"])
        chain = keys.split_pem_chain(files["chain.pem"])
        if not chain:
            raise ValueError("chain.pem holds no certificate")
        for block in chain:
            keys.cert_info(block)
    except (ValueError, CertsmithError) as exc:
        raise _Broken(f"live/{name}: {exc}") from None
    if not keys.key_matches_cert(files["privkey.pem"], files["cert.pem"]):
        raise _Broken(f"live/{name}/privkey.pem does not belong to cert.pem")
    server = str(rp.get("server") or ALIASES["letsencrypt"])
    account_id = str(rp.get("account") or "")
    if not account_id:
        raise _Broken(f"renewal/{conf_path.name} names no account")
    account = _read_account(source, account_id, server)
    if store.exists(site_key(name)):
        raise _Skip("certsmith already manages a certificate with this name")
    notes = list(solver_notes)
    commands = []
    for key in ("renew_hook", "post_hook"):
        hook = _hook(rp.get(key))
        if hook:
            commands.append(hook)
            if key == "post_hook":
                notes.append(
                    f"post hook {hook!r} becomes a deploy command (run after each "
                    "successful renewal)"
                )
    if _hook(rp.get("pre_hook")):
        notes.append(
            f"pre hook {_hook(rp.get('pre_hook'))!r} is not carried over: certsmith "
            "has no pre-renewal commands"
        )
    hooks_dir = source / "renewal-hooks" / "deploy"
    if hooks_dir.is_dir():
        for script in sorted(hooks_dir.iterdir()):
            if script.is_file() and os.access(script, os.X_OK):
                commands.append(str(script))
    if rp.get("installer") not in (None, "", "None", "none"):
        notes.append(
            f"certbot's {rp['installer']} installer is not carried over; "
            "'certsmith install' configures web servers"
        )
    try:
        spec = SiteSpec(
            name=name,
            identifiers=parse_identifiers(info.names),
            server=server,
            solver=solver,
            key_type=_key_type(rp, info),
            reuse_key=configobj.as_bool(rp.get("reuse_key")),
            preferred_chain=_hook(rp.get("preferred_chain")),
            deploy_commands=tuple(dict.fromkeys(commands)),
        )
    except UsageError as exc:
        raise _Skip(str(exc)) from None
    bundle = Bundle(files["cert.pem"], files["chain.pem"], files["privkey.pem"])
    return Lineage(name, spec, bundle, info, account, live, conf_path, tuple(notes), secrets)


def scan(source: Path, home: Path) -> Plan:
    """Read and validate every lineage under ``source``; writes nothing."""
    renewal = source / "renewal"
    if not renewal.is_dir():
        raise UsageError(f"{source} is not a certbot directory (no renewal/ in it)")
    store = open_store(home)
    lineages, skipped, broken = [], [], []
    for conf in sorted(renewal.glob("*.conf")):
        name = conf.name[: -len(".conf")]
        try:
            lineages.append(_lineage(source, conf, store))
        except _Skip as exc:
            skipped.append(Problem(name, str(exc)))
        except _Broken as exc:
            broken.append(Problem(name, str(exc)))
    return Plan(source, tuple(lineages), tuple(skipped), tuple(broken))


def _write_account(store: Store, account: CertbotAccount) -> None:
    from certsmith.core.issuers import acme

    sid = server_id(account.server)
    if store.list(store_keys.accounts(sid)):
        return  # certsmith already has an account with this CA: keep it
    key = acme.load_account_key(account.key_pem)
    entry = store_keys.account(sid, acme.account_id(key))
    store.put(f"{entry}/key.pem", account.key_pem, private=True)
    data = acme.account_json(
        acme.Account(key=key, uri=account.uri, body=account.body), account.server
    )
    store.put(f"{entry}/account.json", data, private=True)


def _relink(lineage: Lineage, store: Store) -> None:
    """certbot's live/<name>/X.pem -> certsmith's live/<name>/X.pem (absolute symlinks), so
    configs naming the old paths follow every certsmith renewal."""
    target_dir = store.live_path(lineage.name)
    for filename in FILES:
        link = lineage.live_dir / filename
        tmp = link.with_name(f".{filename}.certsmith.tmp")
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(target_dir / filename, tmp)
        os.replace(tmp, link)


def apply(plan: Plan, home: Path) -> list[str]:
    """Import the valid lineages of a plan with no broken ones; returns the names imported."""
    if plan.broken:
        raise UsageError(
            "not importing anything: " + "; ".join(f"{p.name}: {p.reason}" for p in plan.broken)
        )
    store = open_store(home)
    now = dt.datetime.now(dt.UTC)
    done = []
    try:
        for lineage in plan.lineages:
            _write_account(store, lineage.account)
        for lineage in plan.lineages:
            info = lineage.info
            meta = {
                "serial": info.serial,
                "not_before": info.not_before.isoformat(),
                "not_after": info.not_after.isoformat(),
                "issuer": info.issuer,
                "names": list(info.names),
                "server": lineage.spec.server,
                "key_type": lineage.spec.key_type,
                "imported_from": str(lineage.live_dir),
                "issued_at": now.isoformat(timespec="seconds"),
                "replaces": None,
            }
            with store.lock(store_keys.lineage_lease(lineage.name)):
                for key, data in lineage.secrets:  # before the site file that names them
                    store.put(key, data, private=True)
                version = store.publish(
                    lineage.name,
                    {**lineage.bundle.files(), "meta.json": json.dumps(meta, indent=1).encode()},
                    private=frozenset({"privkey.pem"}),
                )
                save_site(store, lineage.spec)
                save_state(
                    store,
                    lineage.name,
                    CertState(
                        serial=info.serial,
                        not_before=info.not_before,
                        not_after=info.not_after,
                        issuer=info.issuer,
                        ari_id=info.ari_id,
                        last_result="imported",
                    ),
                )
            events.record(
                home,
                "imported",
                lineage.name,
                source=str(plan.source),
                serial=info.serial,
                version=version,
            )
            done.append(lineage.name)
        # certbot's side last: only once certsmith holds everything.
        for lineage in plan.lineages:
            _relink(lineage, store)
            os.replace(lineage.conf, lineage.conf.with_name(lineage.conf.name + RETIRED_SUFFIX))
    except OSError as exc:
        raise StoreError(f"import stopped after {len(done)} certificate(s): {exc}") from exc
    return done
