"""Install certificates into the web servers people already run: nginx, Apache, lighttpd.

``install`` writes certsmith's own site for a certificate (TLS with Mozilla's "intermediate"
settings, optional redirect, HSTS, reverse proxy), ``uninstall`` removes exactly that, and
``prepare_challenge`` makes the running server answer HTTP-01 from certsmith's challenge
directory before an order. Every change goes through ``base.Transaction``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certsmith.base.model import FileTarget, SiteSpec
from certsmith.base.sites import load_site, save_site
from certsmith.base.store.fs import FileStore
from certsmith.errors import UsageError
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

__all__ = [
    "KINDS",
    "InstallRequest",
    "Result",
    "challenge_dir",
    "install",
    "installer_for",
    "prepare_challenge",
    "uninstall",
]


def installer_for(kind: str, env: dict[str, str] | None = None) -> Installer:
    if kind == "nginx":
        from certsmith.services.servers import nginx

        return nginx.NginxInstaller(nginx.config(env))
    if kind == "apache":
        from certsmith.services.servers import apache

        return apache.ApacheInstaller(apache.config(env))
    if kind == "lighttpd":
        from certsmith.services.servers import lighttpd

        return lighttpd.LighttpdInstaller(lighttpd.config(env))
    raise UsageError(f"unknown server {kind!r}; choose one of {', '.join(KINDS)}")


def challenge_dir(home: Path) -> Path:
    """certsmith's HTTP-01 directory (the web server maps /.well-known/acme-challenge/ here)."""
    return home / "http-01"


def _ensure_challenge_dir(store: FileStore) -> Path:
    """Create it (world-readable: the server's workers read the tokens) with the
    .well-known/acme-challenge/ inside, kept between orders so the mapping always resolves."""
    store.ensure()
    directory = challenge_dir(store.home)
    for d in (directory, directory / ".well-known", directory / ".well-known/acme-challenge"):
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
    text: str                  # the dry-run description, or a summary of what was done
    changed: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


# -- records: what certsmith added, so uninstall removes exactly that ---------------------------


def _record_key(kind: str, name: str) -> str:
    return f"installs/{kind}/{name}.json"


def _load_record(store: FileStore, kind: str, name: str) -> dict[str, Any] | None:
    data = store.get(_record_key(kind, name))
    return json.loads(data) if data else None


def _save_record(store: FileStore, kind: str, name: str, record: dict[str, Any]) -> None:
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


def _with_record(detected: Detected, record: dict[str, Any] | None) -> Detected:
    """A site certsmith took over earlier is no longer enabled: reuse the block it carried."""
    if not record or not record.get("carried") or detected.blocks:
        return detected
    c = record["carried"]
    block = Block(c["file"], c["line"], tuple(c["names"]), tuple(c["ports"]), c["tls"],
                  c["body"], tuple(c.get("listens", ())))
    return dataclasses.replace(detected, blocks=(block,), takeover=None)


def _options(req: InstallRequest, spec: SiteSpec, store: FileStore, installer: Installer,
             tls: bool) -> SiteOptions:
    user, group = installer.server_identity()
    live = store.live_path(spec.name)
    ocsp = tls and _has_ocsp((live / "cert.pem").read_bytes())
    return SiteOptions(
        name=spec.name, names=tuple(i.value for i in spec.identifiers), live_dir=str(live),
        tls=tls, redirect=req.redirect, hsts=req.hsts, proxy_to=req.proxy_to,
        http_port=req.http_port, https_port=req.https_port,
        listen_addresses=req.listen_addresses,
        challenge_dir=str(challenge_dir(store.home)), ocsp=ocsp, server_user=user,
        server_group=group)


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
    store = FileStore(home)
    spec = load_site(store, req.name)
    if store.live_version(req.name) is None:
        raise UsageError(f"{req.name} has no certificate yet; run 'certsmith get' first")
    installer = installer_for(req.kind, env)
    record = _load_record(store, req.kind, req.name)
    _ensure_challenge_dir(store)
    _precheck(installer)
    names = [i.value for i in spec.identifiers]
    detected = _with_record(installer.detect(names, req.http_port, req.https_port), record)
    opts = _options(req, spec, store, installer, tls=True)
    plan = installer.plan(detected, opts)
    if req.dry_run:
        return Result(describe(plan), notes=plan.notes)
    _apply(installer, plan, opts)
    owned, shared = _split_shared(plan)
    moved = {**(record or {}).get("moved", {}), **plan.moved()}
    new_record = {
        "kind": req.kind, "name": req.name, "stage": "installed",
        "owned": sorted(set(owned) | set((record or {}).get("owned", []))),
        "moved": moved, "config": installer.config.env_vars(),
        "options": {"redirect": req.redirect, "hsts": req.hsts, "proxy_to": req.proxy_to,
                    "http_port": req.http_port, "https_port": req.https_port,
                    "listen_addresses": list(req.listen_addresses)},
        "carried": (record or {}).get("carried") or _carried(detected),
        "deploy_files": [t.to_dict() for t in plan.deploy_files],
        "deploy_commands": [installer.config.reload],
        "shared": sorted(set(shared) | set((record or {}).get("shared", []))),
    }
    _save_record(store, req.kind, req.name, new_record)
    _remember_reload(store, spec, installer.config.reload, plan.deploy_files)
    return Result(f"{req.name}: installed into {req.kind}", tuple(c.path for c in plan.changes),
                  plan.notes)


def _carried(detected: Detected) -> dict[str, Any] | None:
    if not detected.takeover or not detected.blocks:
        return None
    return dataclasses.asdict(detected.blocks[0])


def _precheck(installer: Installer) -> None:
    try:
        installer.check()
    except ServerError as exc:
        raise ServerError(f"{exc} -- before any change: fix the {installer.kind} configuration "
                          "first; certsmith changed nothing") from exc


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

    Transaction(installer, health_address(plan)).apply(
        plan, prepare=copy if plan.deploy_files else None,
        also_save=[t.path for t in plan.deploy_files])


def health_address(plan: Plan) -> tuple[str, int] | None:
    """Where the server must still answer HTTP after the reload: the site's first address."""
    for text in plan.http_listens:
        hp = listen.parse_hostport(text, 80)
        if hp is not None:
            return listen.probe_host(hp[0]), hp[1]
    return None


def _split_shared(plan: Plan) -> tuple[list[str], list[str]]:
    """(owned by this site, shared by every site of the server: the challenge include)."""
    shared = [c.path for c in plan.changes
              if "certsmith-acme" in os.path.basename(c.path) and not c.removes]
    return [p for p in plan.owned() if p not in shared], shared


def _remember_reload(store: FileStore, spec: SiteSpec, reload: str,
                     files: tuple[FileTarget, ...]) -> None:
    """Renewals redeploy the server's files and reload it (graceful)."""
    with store.lock(f"cert-{spec.name}"):
        current = load_site(store, spec.name)
        commands = (*tuple(c for c in current.deploy_commands if c != reload), reload)
        paths = {t.path for t in files}
        targets = tuple(t for t in current.deploy_files if t.path not in paths) + files
        save_site(store, dataclasses.replace(current, deploy_commands=commands,
                                             deploy_files=targets))


def uninstall(home: Path, kind: Kind, name: str, env: dict[str, str] | None = None,
              dry_run: bool = False) -> Result:
    """Remove exactly what ``install`` (or ``get --SERVER``) added; put moved entries back."""
    store = FileStore(home)
    record = _load_record(store, kind, name)
    if record is None:
        raise UsageError(f"certsmith installed nothing named {name!r} into {kind}")
    merged_env = {**os.environ, **(env or {})}
    for key, value in record.get("config", {}).items():
        merged_env.setdefault(key, value)
    installer = installer_for(kind, merged_env)
    changes: list[Change] = [Change(p) for p in record.get("owned", [])
                             if os.path.lexists(p)]
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
    _prune_empty(installer.config.root, [c.move_to or c.path for c in changes]
                 + list(record.get("moved", {}).values()))
    store.delete(_record_key(kind, name))
    notes: list[str] = []
    try:
        spec = load_site(store, name)
    except Exception:  # the certificate itself may be gone; nothing to update then
        spec = None
    if spec is not None:
        with store.lock(f"cert-{name}"):
            spec = load_site(store, name)
            drop_cmds = set(record.get("deploy_commands", []))
            drop_files = {t["path"] for t in record.get("deploy_files", [])}
            save_site(store, dataclasses.replace(
                spec, deploy_commands=tuple(c for c in spec.deploy_commands
                                            if c not in drop_cmds),
                deploy_files=tuple(t for t in spec.deploy_files if t.path not in drop_files)))
        if spec.solver.kind == "server" and spec.solver.server == kind:
            notes.append(f"renewals of {name} answered HTTP-01 through {kind}; run 'certsmith "
                         f"get {name} --webroot DIR' (or --{kind} again) before the next renewal")
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


def _shared_elsewhere(store: FileStore, kind: str, name: str, path: str) -> bool:
    for key in store.list(f"installs/{kind}"):
        if key.endswith(f"/{name}.json"):
            continue
        data = store.get(key)
        if data and path in json.loads(data).get("shared", []):
            return True
    return False


def prepare_challenge(home: Path, kind: Kind, spec: SiteSpec, *, http_port: int = 80,
                      listen_addresses: tuple[str, ...] = (),
                      env: dict[str, str] | None = None
                      ) -> tuple[Path, str]:
    """Make the running server answer /.well-known/acme-challenge/ for the names from
    certsmith's challenge directory (validated, reloaded). Returns (directory, reload command).
    """
    store = FileStore(home)
    directory = _ensure_challenge_dir(store)
    installer = installer_for(kind, env)
    record = _load_record(store, kind, spec.name)
    if record and record.get("stage") == "installed":
        return directory, installer.config.reload  # its site already maps the challenge path
    _precheck(installer)
    names = [i.value for i in spec.identifiers]
    req = InstallRequest(kind, spec.name, http_port=http_port,
                         listen_addresses=listen_addresses)
    detected = _with_record(installer.detect(names, http_port, 443), record)
    opts = SiteOptions(name=spec.name, names=tuple(names), live_dir="", tls=False,
                       http_port=req.http_port, listen_addresses=listen_addresses,
                       challenge_dir=str(directory))
    plan = installer.plan(detected, opts)
    owned, shared = _split_shared(plan)
    if not all(_same(c) for c in plan.changes):  # (else: already in place)
        Transaction(installer, health_address(plan)).apply(plan)
    moved = {**(record or {}).get("moved", {}), **plan.moved()}
    _save_record(store, kind, spec.name, {
        "kind": kind, "name": spec.name, "stage": "challenge",
        "owned": sorted(set(owned) | set((record or {}).get("owned", []))),
        "moved": moved, "config": installer.config.env_vars(),
        "carried": (record or {}).get("carried") or _carried(detected),
        "deploy_files": [], "deploy_commands": [installer.config.reload],
        "shared": sorted(set(shared) | set((record or {}).get("shared", []))),
    })
    return directory, installer.config.reload


def _same(change: Change) -> bool:
    p = Path(change.path)
    if change.link is not None:
        return p.is_symlink() and os.readlink(p) == change.link
    if change.data is not None:
        return p.is_file() and p.read_bytes() == change.data
    return False
