"""Install certificates into the web servers people already run: nginx, Apache, lighttpd.

``install`` writes certsmith's own site for a certificate (TLS with Mozilla's "intermediate"
settings, optional redirect, HSTS, reverse proxy), ``uninstall`` removes exactly that, and
``prepare_challenge`` makes the running server answer HTTP-01 from certsmith's challenge
directory before an order. Every change goes through ``base.Transaction``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from certsmith.base import policy
from certsmith.base.model import FileTarget, ServerSpec, SiteSpec
from certsmith.base.sites import load_site, save_site
from certsmith.base.solverspec import DnsSpec
from certsmith.base.store import Store, open_store
from certsmith.base.store import keys as store_keys
from certsmith.errors import NotFoundError, UsageError
from certsmith.services.servers import listen
from certsmith.services.servers.base import (
    KINDS,
    Block,
    Change,
    Detected,
    Installer,
    Kind,
    Plan,
    ServerError,
    SiteOptions,
    Transaction,
    describe,
)
from certsmith.services.servers.proof import (
    REDIRECT_PROBE,
    Expectation,
    connect_host,
    hostname_for,
    leaf_of,
    prove,
)

__all__ = [
    "KINDS",
    "ChallengeSetup",
    "InstallRequest",
    "Result",
    "challenge_capture",
    "challenge_dir",
    "install",
    "installer_for",
    "prepare_challenge",
    "prove_installed",
    "staples_ocsp",
    "uninstall",
]


def installer_for(kind: str, env: dict[str, str] | None = None) -> Installer:
    """The installer for web server ``kind``, from the registry."""
    from certsmith.services.servers.registry import installer_for as from_registry

    return from_registry(kind, env)


def challenge_dir(home: Path) -> Path:
    """certsmith's HTTP-01 directory (the web server maps /.well-known/acme-challenge/ here)."""
    return home / policy.HTTP01_DIR


def _ensure_challenge_dir(store: Store) -> Path:
    """Create it (world-readable: the server's workers read the tokens) with the
    .well-known/acme-challenge/ inside, kept between orders so the mapping always resolves."""
    store.ensure()
    directory = challenge_dir(store.home)
    answers = directory / policy.ACME_CHALLENGE_SUBDIR
    for d in (directory, answers.parent, answers):
        d.mkdir(mode=0o755, exist_ok=True)
        os.chmod(d, 0o755)
    return directory


@dataclass(frozen=True)
class InstallRequest:
    kind: Kind
    name: str
    redirect: int | None = None
    hsts: int | None = None
    proxy_to: str | None = None
    http_port: int = 80
    https_port: int = 443
    listen_addresses: tuple[str, ...] = ()  # empty: the addresses the user's site listens on
    dry_run: bool = False


@dataclass(frozen=True)
class Result:
    text: str  # the dry-run description, or a summary of what was done
    changed: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    files: tuple[str, ...] = ()  # for a person: "wrote PATH", "linked PATH -> TARGET", ...


@dataclass(frozen=True)
class ChallengeSetup:
    """What ``prepare_challenge`` did: where tokens go, how the server reloads, which of the
    server's files changed (so the user hears about every file certsmith touched)."""

    directory: Path
    reload: str
    files: tuple[str, ...] = ()


def _file_lines(
    changes: list[Change] | tuple[Change, ...], deploy_files: tuple[FileTarget, ...] = ()
) -> tuple[str, ...]:
    out: list[str] = []
    for c in changes:
        if c.link is not None:
            out.append(f"linked {c.path} -> {c.link}")
        elif c.move_to is not None:
            out.append(f"moved {c.path} -> {c.move_to} (uninstall puts it back)")
        elif c.removes:
            out.append(f"removed {c.path}")
        else:
            out.append(f"wrote {c.path}")
    out += [f"copied {t.part} -> {t.path}" for t in deploy_files]
    return tuple(out)


# -- records: what certsmith added, so uninstall removes exactly that ---------------------------


def _record_key(kind: str, name: str) -> str:
    return store_keys.install(kind, name)


def _load_record(store: Store, kind: str, name: str) -> dict[str, Any] | None:
    data = store.get(_record_key(kind, name))
    return json.loads(data) if data else None


def _save_record(store: Store, kind: str, name: str, record: dict[str, Any]) -> None:
    store.put(_record_key(kind, name), json.dumps(record, indent=1).encode())


def _has_ocsp(cert_pem: bytes) -> bool:
    from cryptography import x509
    from cryptography.x509.oid import AuthorityInformationAccessOID

    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return False
    return any(d.access_method == AuthorityInformationAccessOID.OCSP for d in aia)


def staples_ocsp(home: Path, name: str) -> bool:
    """Whether ``install`` turns on OCSP stapling for NAME: only when its live certificate
    names an OCSP responder (Let's Encrypt's no longer do since 2025), so a server never waits
    on a responder that does not exist. certbot's ``--staple-ocsp`` asks for this."""
    live = open_store(home).live_path(name) / "cert.pem"
    return live.is_file() and _has_ocsp(live.read_bytes())


def _with_record(detected: Detected, record: dict[str, Any] | None) -> Detected:
    """A site certsmith took over earlier is no longer enabled: reuse the block it carried."""
    if not record or not record.get("carried") or detected.blocks:
        return detected
    c = record["carried"]
    block = Block(
        c["file"],
        c["line"],
        tuple(c["names"]),
        tuple(c["ports"]),
        c["tls"],
        c["body"],
        tuple(c.get("listens", ())),
    )
    return dataclasses.replace(detected, blocks=(block,), takeover=None)


def _answers_http01(spec: SiteSpec) -> bool:
    """Whether the site needs the challenge mapping: a dns-01 lineage (wildcards) proves
    control in DNS, so its server needs no /.well-known/acme-challenge/."""
    return not isinstance(spec.solver, DnsSpec)


def _options(
    req: InstallRequest, spec: SiteSpec, store: Store, installer: Installer, tls: bool
) -> SiteOptions:
    user, group = installer.server_identity()
    live = store.live_path(spec.name)
    ocsp = tls and _has_ocsp((live / "cert.pem").read_bytes())
    return SiteOptions(
        name=spec.name,
        names=tuple(i.value for i in spec.identifiers),
        live_dir=str(live),
        tls=tls,
        redirect=req.redirect,
        hsts=req.hsts,
        proxy_to=req.proxy_to,
        http_port=req.http_port,
        https_port=req.https_port,
        listen_addresses=req.listen_addresses,
        challenge_dir=str(challenge_dir(store.home)) if _answers_http01(spec) else "",
        ocsp=ocsp,
        server_user=user,
        server_group=group,
    )


def _check_proxy(url: str | None) -> None:
    if url is None:
        return
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--proxy-to {url!r}: expected http://HOST:PORT (the app's address)")


def install(home: Path, req: InstallRequest, env: dict[str, str] | None = None) -> Result:
    """Install the live certificate NAME into the running server (see module docstring)."""
    _check_proxy(req.proxy_to)
    store = open_store(home)
    first = (
        f"run 'certsmith get {req.name} --{req.kind}' first (it answers the CA through "
        f"the running {req.kind}), then install"
    )
    try:
        spec = load_site(store, req.name)
    except NotFoundError as exc:
        raise NotFoundError(f"no certificate named {req.name!r} yet: {first}") from exc
    if store.live_version(req.name) is None:
        raise UsageError(f"{req.name} has no certificate yet: {first}")
    installer = installer_for(req.kind, env)
    record = _load_record(store, req.kind, req.name)
    if _answers_http01(spec):
        _ensure_challenge_dir(store)
    _precheck(installer)
    names = [i.value for i in spec.identifiers]
    detected = _with_record(installer.detect(names, req.http_port, req.https_port), record)
    opts = _options(req, spec, store, installer, tls=True)
    plan = installer.plan(detected, opts)
    if req.dry_run:
        return Result(describe(plan), notes=plan.notes)
    files = _file_lines([c for c in plan.changes if not _same(c)], plan.deploy_files)
    _apply(installer, plan, opts)
    owned, shared = _split_shared(plan)
    moved = {**(record or {}).get("moved", {}), **plan.moved()}
    new_record = {
        "kind": req.kind,
        "name": req.name,
        "stage": "installed",
        "owned": sorted(set(owned) | set((record or {}).get("owned", []))),
        "moved": moved,
        "config": installer.config.env_vars(),
        "options": {
            "redirect": req.redirect,
            "hsts": req.hsts,
            "proxy_to": req.proxy_to,
            "http_port": req.http_port,
            "https_port": req.https_port,
            "listen_addresses": list(req.listen_addresses),
        },
        "listens": {"http": list(plan.http_listens), "https": list(plan.https_listens)},
        "carried": (record or {}).get("carried") or _carried(detected),
        "deploy_files": [t.to_dict() for t in plan.deploy_files],
        "deploy_commands": [installer.config.reload],
        "shared": sorted(set(shared) | set((record or {}).get("shared", []))),
    }
    _save_record(store, req.kind, req.name, new_record)
    _remember_reload(store, spec, installer.config.reload, plan.deploy_files)
    return Result(
        f"{req.name}: installed into {req.kind}",
        tuple(c.path for c in plan.changes),
        plan.notes,
        files,
    )


def _recorded_listens(
    record: dict[str, Any], opts: SiteOptions
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(HTTP, HTTPS) host:port the installed site listens on, as its record says (a record
    from before listens were kept: ``--listen-address``, else the server's default)."""
    kept = record.get("listens") or {}
    if kept.get("http"):
        return tuple(kept["http"]), tuple(kept.get("https") or ())
    options = record.get("options") or {}
    hosts = list(options.get("listen_addresses") or ()) or [options.get("listen_address") or ""]
    return (
        tuple(listen.hostport(h, opts.http_port) for h in hosts),
        tuple(listen.hostport(h, opts.https_port) for h in hosts),
    )


def _carried(detected: Detected) -> dict[str, Any] | None:
    if not detected.takeover or not detected.blocks:
        return None
    return dataclasses.asdict(detected.blocks[0])


def _precheck(installer: Installer) -> None:
    try:
        installer.check()
    except ServerError as exc:
        raise ServerError(
            f"{exc} -- before any change: fix the {installer.kind} configuration "
            "first; certsmith changed nothing"
        ) from exc


def _apply(installer: Installer, plan: Plan, opts: SiteOptions) -> None:
    """Deploy the certificate files the server reads (lighttpd), then the plan, atomically."""
    from certsmith.core.deploy import LiveFiles, deploy_file
    from certsmith.errors import DeployError

    def copy() -> None:
        live = LiveFiles(opts.name, opts.names, Path(opts.live_dir))
        for target in plan.deploy_files:
            try:
                deploy_file(live, target)
            except DeployError as exc:
                raise ServerError(str(exc)) from exc

    Transaction(installer, _expectations(plan, opts)).apply(
        plan,
        prepare=copy if plan.deploy_files else None,
        also_save=[t.path for t in plan.deploy_files],
    )


def _addresses(texts: Sequence[str], default_port: int) -> list[tuple[str, int]]:
    """Where a local client reaches each ``host:port`` the site listens on."""
    out: list[tuple[str, int]] = []
    for text in texts:
        hp = listen.parse_hostport(text, default_port)
        if hp is not None and (connect_host(hp[0]), hp[1]) not in out:
            out.append((connect_host(hp[0]), hp[1]))
    return out


def _expectations(
    plan: Plan, opts: SiteOptions, probe: tuple[str, bytes] | None = None
) -> tuple[Expectation, ...]:
    """What a client sees once ``opts`` is live, on every address of the site (both
    127.0.0.1 and [::1], say): HTTP answers (with the challenge ``probe`` file) and, with TLS,
    the redirect; each HTTPS address serves the live certificate for the site's first name."""
    return _expectations_for(plan.http_listens, plan.https_listens, opts, probe)


def _expectations_for(
    http_listens: Sequence[str],
    https_listens: Sequence[str],
    opts: SiteOptions,
    probe: tuple[str, bytes] | None = None,
) -> tuple[Expectation, ...]:
    http = _addresses(http_listens, opts.http_port)
    if not http:
        return ()
    name = hostname_for(opts.names[0])
    if not opts.tls:
        return tuple(Expectation(h, p, name, probe=probe) for h, p in http)
    leaf = leaf_of((Path(opts.live_dir) / "fullchain.pem").read_bytes())
    redirect = (opts.redirect, opts.https_base(name) + REDIRECT_PROBE) if opts.redirect else None
    https = _addresses(https_listens, opts.https_port) or [(h, opts.https_port) for h, _ in http]
    out = []
    for host, port in http:
        tls = next(((h, p) for h, p in https if h == host), None)
        out.append(
            Expectation(
                host, port, name, tls[1] if tls else None, leaf if tls else None, redirect, probe
            )
        )
    paired = {h for h, _ in http}
    out += [
        Expectation(http[0][0], http[0][1], name, p, leaf, https_host=h)
        for h, p in https
        if h not in paired
    ]
    return tuple(out)


def prove_installed(home: Path, name: str) -> str | None:
    """After a renewal redeployed NAME and reloaded the servers it is installed into: whether
    each of them serves the live certificate on every address of the site (polling while the
    reload completes). Returns what one of them does not show, or None."""
    store = open_store(home)
    live = store.live_path(name)
    records = [
        (kind, r)
        for kind in KINDS
        if (r := _load_record(store, kind, name)) and r.get("stage") == "installed"
    ]
    if not records:
        return None
    spec = load_site(store, name)
    for kind, record in records:
        options = record.get("options", {})
        opts = SiteOptions(
            name=name,
            names=tuple(i.value for i in spec.identifiers),
            live_dir=str(live),
            http_port=int(options.get("http_port", 80)),
            https_port=int(options.get("https_port", 443)),
        )
        http, https = _recorded_listens(record, opts)
        expect = _expectations_for(http, https, opts)
        if not expect:
            continue
        shortfall = prove([dataclasses.replace(e, redirect=None) for e in expect])
        if shortfall is not None:
            return f"{kind} does not serve it: {shortfall}"
    return None


def _split_shared(plan: Plan) -> tuple[list[str], list[str]]:
    """(owned by this site, shared by every site of the server: the challenge include)."""
    shared = [
        c.path
        for c in plan.changes
        if "certsmith-acme" in os.path.basename(c.path) and not c.removes
    ]
    return [p for p in plan.owned() if p not in shared], shared


def _remember_reload(
    store: Store, spec: SiteSpec, reload: str, files: tuple[FileTarget, ...]
) -> None:
    """Renewals redeploy the server's files and reload it (graceful)."""
    with store.lock(store_keys.lineage_lease(spec.name)):
        current = load_site(store, spec.name)
        commands = (*tuple(c for c in current.deploy_commands if c != reload), reload)
        paths = {t.path for t in files}
        targets = tuple(t for t in current.deploy_files if t.path not in paths) + files
        save_site(
            store, dataclasses.replace(current, deploy_commands=commands, deploy_files=targets)
        )


def uninstall(
    home: Path, kind: Kind, name: str, env: dict[str, str] | None = None, dry_run: bool = False
) -> Result:
    """Remove exactly what ``install`` (or ``get --SERVER``) added; put moved entries back."""
    store = open_store(home)
    record = _load_record(store, kind, name)
    if record is None:
        raise UsageError(f"certsmith installed nothing named {name!r} into {kind}")
    merged_env = {**os.environ, **(env or {})}
    for key, value in record.get("config", {}).items():
        merged_env.setdefault(key, value)
    installer = installer_for(kind, merged_env)
    changes: list[Change] = [Change(p) for p in record.get("owned", []) if os.path.lexists(p)]
    for shared in record.get("shared", []):
        if not _shared_elsewhere(store, kind, name, shared) and os.path.lexists(shared):
            changes.append(Change(shared))
    for original, moved_to in record.get("moved", {}).items():
        if os.path.lexists(moved_to):
            changes.append(Change(moved_to, move_to=original))
    plan = Plan(tuple(changes))
    if dry_run:
        return Result(describe(plan))
    _precheck(installer)
    Transaction(installer).apply(plan)
    _prune_empty(
        installer.config.root,
        [c.move_to or c.path for c in changes] + list(record.get("moved", {}).values()),
    )
    store.delete(_record_key(kind, name))
    notes: list[str] = []
    try:
        spec = load_site(store, name)
    except Exception:  # the certificate itself may be gone; nothing to update then
        spec = None
    if spec is not None:
        with store.lock(store_keys.lineage_lease(name)):
            spec = load_site(store, name)
            drop_cmds = set(record.get("deploy_commands", []))
            drop_files = {t["path"] for t in record.get("deploy_files", [])}
            save_site(
                store,
                dataclasses.replace(
                    spec,
                    deploy_commands=tuple(c for c in spec.deploy_commands if c not in drop_cmds),
                    deploy_files=tuple(t for t in spec.deploy_files if t.path not in drop_files),
                ),
            )
        if isinstance(spec.solver, ServerSpec) and spec.solver.server == kind:
            notes.append(
                f"renewals of {name} answered HTTP-01 through {kind}; run 'certsmith "
                f"get {name} --webroot DIR' (or --{kind} again) before the next renewal"
            )
    return Result(f"{name}: removed from {kind}", tuple(c.path for c in changes), tuple(notes))


def _prune_empty(root: Path, paths: list[str]) -> None:
    """Remove certsmith's own directories under ``root`` (``certsmith/``,
    ``certsmith-disabled/``) once they are empty."""
    for p in paths:
        d = Path(p).parent
        while d != root and d.is_relative_to(root) and d.is_dir() and not any(d.iterdir()):
            if not d.relative_to(root).parts[0].startswith("certsmith"):
                break
            d.rmdir()
            d = d.parent


def _shared_elsewhere(store: Store, kind: str, name: str, path: str) -> bool:
    for key in store.list(store_keys.installs(kind)):
        if key.endswith(f"/{name}.json"):
            continue
        data = store.get(key)
        if data and path in json.loads(data).get("shared", []):
            return True
    return False


def prepare_challenge(
    home: Path,
    kind: Kind,
    spec: SiteSpec,
    *,
    http_port: int = 80,
    listen_addresses: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> ChallengeSetup:
    """Make the running server answer /.well-known/acme-challenge/ for the names from
    certsmith's challenge directory (validated, reloaded)."""
    store = open_store(home)
    directory = _ensure_challenge_dir(store)
    installer = installer_for(kind, env)
    record = _load_record(store, kind, spec.name)
    if record and record.get("stage") == "installed" and _files_present(record):
        # its site already maps the challenge path (a record restored from another machine's
        # backup has no files here: set the mapping up again)
        return ChallengeSetup(directory, installer.config.reload)
    _precheck(installer)
    names = [i.value for i in spec.identifiers]
    req = InstallRequest(kind, spec.name, http_port=http_port, listen_addresses=listen_addresses)
    detected = _with_record(installer.detect(names, http_port, 443), record)
    opts = SiteOptions(
        name=spec.name,
        names=tuple(names),
        live_dir="",
        tls=False,
        http_port=req.http_port,
        listen_addresses=listen_addresses,
        challenge_dir=str(directory),
    )
    plan = installer.plan(detected, opts)
    owned, shared = _split_shared(plan)
    changed = [c for c in plan.changes if not _same(c)]
    if changed:  # (else: already in place)
        with _challenge_probe(directory) as probe:
            Transaction(installer, _expectations(plan, opts, probe)).apply(plan)
    moved = {**(record or {}).get("moved", {}), **plan.moved()}
    _save_record(
        store,
        kind,
        spec.name,
        {
            "kind": kind,
            "name": spec.name,
            "stage": "challenge",
            "owned": sorted(set(owned) | set((record or {}).get("owned", []))),
            "moved": moved,
            "config": installer.config.env_vars(),
            "carried": (record or {}).get("carried") or _carried(detected),
            "deploy_files": [],
            "deploy_commands": [installer.config.reload],
            "shared": sorted(set(shared) | set((record or {}).get("shared", []))),
        },
    )
    return ChallengeSetup(directory, installer.config.reload, _file_lines(changed))


def challenge_capture(home: Path, names: list[str]) -> tuple[Kind, str] | None:
    """(server, certificate name whose install set it up) when certsmith made a web server
    answer /.well-known/acme-challenge/ for these certificate names from its own challenge
    directory, else None. Files put in another webroot
    are then never served (the CA sees 404): ``get --webroot`` says so instead of failing at
    the CA. nginx maps the path in certsmith's site for the name; Apache and lighttpd in one
    include shared by every site of the server."""
    store = open_store(home)
    for kind in KINDS:
        for key in store.list(store_keys.installs(kind)):
            data = store.get(key)
            record = json.loads(data) if data else {}
            own = record.get("name") in names and _files_present(record)
            shared = any(os.path.lexists(p) for p in record.get("shared", []))
            if own or shared:
                return cast(Kind, kind), str(record.get("name"))
    return None


def _files_present(record: dict[str, Any]) -> bool:
    """Whether the server files an install record lists exist on this machine."""
    owned = record.get("owned", [])
    return bool(owned) and all(os.path.lexists(p) for p in owned)


@contextlib.contextmanager
def _challenge_probe(directory: Path) -> Iterator[tuple[str, bytes]]:
    """A file in the challenge directory the server must serve once the mapping is live:
    (URL path, content); removed afterwards."""
    token = "certsmith-probe-" + secrets.token_hex(8)
    body = secrets.token_hex(16).encode()
    path = directory / policy.ACME_CHALLENGE_SUBDIR / token
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), 0o644)
        fh.write(body)
    try:
        yield policy.ACME_CHALLENGE_PREFIX + token, body
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


def _same(change: Change) -> bool:
    p = Path(change.path)
    if change.link is not None:
        return p.is_symlink() and os.readlink(p) == change.link
    if change.data is not None:
        return p.is_file() and p.read_bytes() == change.data
    return False
