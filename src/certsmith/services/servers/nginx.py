"""nginx: detect with the ``crossplane`` parser, write ``certsmith-NAME.conf`` (Debian:
sites-available + sites-enabled link; RHEL: conf.d), check with ``nginx -t``, reload with
``nginx -s reload`` (graceful: old workers finish their requests)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from certsmith.base import policy
from certsmith.services.servers import base, listen, workers
from certsmith.services.servers.base import (
    AmbiguousSiteError,
    Block,
    Change,
    Detected,
    Kind,
    Plan,
    ServerConfig,
    ServerError,
    SiteOptions,
)

# Directives of the user's block that certsmith's own blocks set themselves.
_NOT_CARRIED = re.compile(r"^(listen|server_name|ssl_.*|ssl|http2|http3|quic_.*)$")
# ``listen`` parameters that belong to the TLS listener certsmith writes (or to QUIC, UDP).
_TLS_PARAMS = {"ssl", "http2", "http3", "quic", "spdy"}
# A line certsmith puts where HSTS must be repeated: a block with an add_header of its own
# inherits none of the server's (nginx's add_header inheritance).
HSTS_MARK = "certsmith_hsts"
Listen = tuple[str, int, tuple[str, ...]]  # host, port, parameters of one listen directive


def config(env: dict[str, str] | None = None) -> ServerConfig:
    def defaults(root: Path) -> tuple[str, str]:
        nginx = base.which("nginx", "/usr/sbin/nginx")
        cmd = nginx if str(root) == "/etc/nginx" else f"{nginx} -c {root}/nginx.conf"
        return cmd, f"{cmd} -s reload"

    def restart(root: Path) -> str:
        # To start it again should it have stopped (nginx's master binds as root on a
        # reload, so no change of certsmith's needs a restart).
        systemd = Path("/run/systemd/system").is_dir()
        return "systemctl restart nginx" if systemd else "service nginx restart"

    return ServerConfig.from_env("nginx", env, defaults, "/etc/nginx", restart)


def _port(listen_args: Sequence[str]) -> int | None:
    addr = listen_args[0] if listen_args else "80"
    if addr.startswith("unix:"):
        return None
    tail = addr.rsplit("]", 1)[-1]
    if ":" in tail:
        tail = tail.rsplit(":", 1)[1]
    elif not tail.isdigit():
        return 80  # a bare address or host name
    return int(tail) if tail.isdigit() else None


def name_matches(pattern: str, name: str) -> bool:
    """nginx server_name semantics for exact and wildcard names (regexes never match here)."""
    pattern = pattern.lower()
    if pattern.startswith("~"):
        return False
    if pattern.startswith("*."):
        return name.endswith(pattern[1:])
    if pattern.startswith("."):
        return name == pattern[1:] or name.endswith(pattern)
    if pattern.endswith(".*"):
        return name.startswith(pattern[:-1])
    return pattern == name


def render_directives(directives: list[dict[str, Any]], indent: int = 4) -> str:
    import crossplane

    text: str = crossplane.build(directives, indent=4, tabs=False, header=False)
    pad = " " * indent
    return "\n".join(pad + line if line else line for line in text.splitlines())


class NginxInstaller:
    kind: Kind = "nginx"

    def __init__(self, cfg: ServerConfig) -> None:
        self.config = cfg
        self.main_conf = cfg.root / "nginx.conf"
        self._version: str | None = None

    # -- commands -------------------------------------------------------------------------

    def version(self) -> str:
        if self._version is None:
            proc = base.run([*self.config.cmd, "-v"], "nginx -v")
            m = re.search(r"nginx/(\d+(?:\.\d+)+)", proc.stderr + proc.stdout)
            self._version = m.group(1) if m else "0"
        return self._version

    def check(self) -> None:
        proc = base.run([*self.config.cmd, "-t", "-q"], "nginx -t")
        if proc.returncode != 0:
            raise ServerError(f"nginx -t fails: {base.last_lines(proc)}")

    def server_identity(self) -> tuple[str, str]:
        return "", ""  # the master process (root) reads certificates

    def listeners(self) -> frozenset[str]:
        return frozenset()  # the master process (root) binds on reload

    def accepting_workers(self) -> frozenset[int]:
        master = workers.master_pid(workers.nginx_pid_file(self.main_conf))
        return frozenset() if master is None else workers.nginx_accepting(master)

    # -- detect ---------------------------------------------------------------------------

    def _parse(self) -> list[dict[str, Any]]:
        import crossplane

        if not self.main_conf.is_file():
            raise ServerError(
                f"no nginx configuration at {self.main_conf} (set CERTSMITH_NGINX_ROOT)"
            )
        payload = crossplane.parse(
            str(self.main_conf), check_ctx=False, check_args=False, comments=False
        )
        failed = [
            f"{e['file']}:{e.get('line') or '?'}: {e['error']}" for e in payload.get("errors", [])
        ]
        if failed:
            raise ServerError(
                "cannot parse the nginx configuration (fix it first; certsmith "
                "changed nothing): " + "; ".join(failed)
            )
        config: list[dict[str, Any]] = payload["config"]
        return config

    def _servers(self, config: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
        """(file, server directive) for every ``http { server { } }`` block, includes followed."""

        def walk(
            file_index: int,
            directives: list[dict[str, Any]],
            ctx: tuple[str, ...],
            seen: tuple[int, ...],
        ) -> Iterator[tuple[str, dict[str, Any]]]:
            for d in directives:
                if d["directive"] == "include":
                    for i in d.get("includes", []):
                        if i not in seen:
                            yield from walk(i, config[i]["parsed"], ctx, (*seen, i))
                elif d["directive"] == "server" and ctx == ("http",) and "block" in d:
                    yield config[file_index]["file"], d
                elif "block" in d and d["directive"] in ("http", "events", "stream", "mail"):
                    yield from walk(file_index, d["block"], (*ctx, d["directive"]), seen)

        yield from walk(0, config[0]["parsed"], (), (0,))

    def detect(self, names: Sequence[str], http_port: int, https_port: int) -> Detected:
        config = self._parse()
        wanted = [n.lower() for n in names]
        ours = re.compile(r"(^|/)certsmith-[^/]*$")
        blocks: list[Block] = []
        default: Block | None = None
        per_file: dict[str, int] = {}
        for file, srv in self._servers(config):
            per_file[file] = per_file.get(file, 0) + 1
            body = srv["block"]
            server_names = tuple(
                a for d in body if d["directive"] == "server_name" for a in d["args"]
            )
            listens = [d["args"] for d in body if d["directive"] == "listen"] or [["80"]]
            ports = tuple(p for p in (_port(a) for a in listens) if p is not None)
            tls = any("ssl" in a[1:] for a in listens)
            carried = [
                _mark_hsts(d, config)
                for d in body
                if not _NOT_CARRIED.match(d["directive"]) and not _is_acme_location(d)
            ]
            block = Block(
                file,
                srv["line"],
                server_names,
                ports,
                tls,
                render_directives(carried),
                tuple(" ".join(a) for a in listens),
            )
            if ours.search(file):
                continue
            if any(name_matches(p, n) for p in server_names for n in wanted):
                blocks.append(block)
            elif http_port in ports and (
                default is None
                or any("default_server" in a[1:] or "default" in a[1:] for a in listens)
            ):
                default = block
        takeover = None
        relevant = [b for b in blocks if http_port in b.ports or https_port in b.ports]
        if len(relevant) > 1:
            raise AmbiguousSiteError(
                f"{', '.join(names)} is served by more than one nginx server block: "
                + ", ".join(b.where for b in relevant)
                + "; certsmith will not guess which one to secure. Keep one (or move the "
                "others to other names) and run again"
            )
        if relevant:
            block = relevant[0]
            extra = [
                n
                for n in block.names
                if not any(name_matches(n, w) for w in wanted) and n not in ("_", "")
            ]
            if extra:
                raise ServerError(
                    f"the server block at {block.where} also serves {', '.join(extra)}; "
                    "certsmith does not edit your files: get one certificate for all of its "
                    "names, or move those names to another block"
                )
            takeover = self._enabling_entry(block, per_file)
        return Detected(tuple(relevant), default, takeover, self.version())

    def _enabling_entry(self, block: Block, per_file: dict[str, int]) -> str:
        path = Path(block.file)
        root = self.config.root
        if per_file.get(block.file, 0) > 1:
            raise ServerError(
                f"{block.where} serves the name but {block.file} holds other server blocks "
                "too; certsmith does not edit your files: move that block into a file of its "
                "own (sites-available/ + sites-enabled/, or conf.d/) and run again"
            )
        if path.parent in (root / "sites-enabled", root / "conf.d"):
            return str(path)
        raise ServerError(
            f"{block.where} serves the name from a file certsmith cannot disable without "
            "editing it; move that block into sites-available/ + sites-enabled/ (or conf.d/)"
        )

    # -- plan -----------------------------------------------------------------------------

    def site_path(self) -> tuple[Path, Path | None]:
        """(file, enable link or None) for the layout in use."""
        root = self.config.root
        if (root / "sites-available").is_dir() and (root / "sites-enabled").is_dir():
            return root / "sites-available", root / "sites-enabled"
        return root / "conf.d", None

    def plan(self, detected: Detected, opts: SiteOptions) -> Plan:
        avail, enabled = self.site_path()
        fname = f"certsmith-{opts.name}.conf"
        text = render_site(opts, detected, self.version())
        changes = [Change(str(avail / fname), data=text.encode())]
        if enabled is not None:
            changes.append(Change(str(enabled / fname), link=str(avail / fname)))
        http, https = site_listens(opts, detected)
        notes = [_listen_note(opts, http, https)]
        if detected.takeover:
            rel = Path(detected.takeover).relative_to(self.config.root)
            changes.append(
                Change(
                    detected.takeover, move_to=str(self.config.root / "certsmith-disabled" / rel)
                )
            )
            notes.append(
                f"your block at {detected.blocks[0].where} is carried over into "
                f"{fname} and disabled ({detected.takeover} moved aside); "
                "'certsmith uninstall' puts it back"
            )
        return Plan(
            tuple(changes),
            tuple(notes),
            http_listens=tuple(listen.hostport(h, p) for h, p, _ in http),
            https_listens=tuple(listen.hostport(h, p) for h, p, _ in https if opts.tls),
        )


def _listen_note(opts: SiteOptions, http: Sequence[Listen], https: Sequence[Listen]) -> str:
    where = ", ".join(listen.hostport(h, p) for h, p, _ in http)
    if opts.tls:
        where += " (HTTP) and " + ", ".join(listen.hostport(h, p) for h, p, _ in https) + " (HTTPS)"
    why = "as you asked (--listen-address)" if opts.listen_addresses else "as your site does"
    return f"listening on {where}, {why}"


def _parse_listen(text: str) -> Listen | None:
    args = text.split()
    if not args or {"quic", "http3"} & set(args[1:]):
        return None  # a QUIC (UDP) listener is not the TCP site certsmith writes
    hp = listen.parse_hostport(args[0], 80)
    return None if hp is None else (hp[0], hp[1], tuple(args[1:]))


def site_listens(opts: SiteOptions, detected: Detected) -> tuple[list[Listen], list[Listen]]:
    """(HTTP, HTTPS) listen directives of certsmith's site: the addresses the user's block
    (or the default server, for a name nothing served yet) listens on, on the HTTP port and
    the same addresses on the HTTPS port; ``--listen-address`` replaces them. Parameters
    (``ipv6only=off``, ``default_server``, ``proxy_protocol``...) are kept only for the user's
    own block, which certsmith replaces: the default server keeps its own."""
    if opts.listen_addresses:
        return (
            [(h, opts.http_port, ()) for h in opts.listen_addresses],
            [(h, opts.https_port, ()) for h in opts.listen_addresses],
        )
    user = detected.blocks[0] if detected.blocks and detected.blocks[0].listens else None
    source = user or detected.default
    parsed = [p for p in map(_parse_listen, source.listens if source else ()) if p is not None]

    def keep(params: tuple[str, ...], derived: bool) -> tuple[str, ...]:
        if user is None:
            return ()
        out = tuple(p for p in params if p not in _TLS_PARAMS)
        # a listener on the other port takes only what decides the address family
        return tuple(p for p in out if p.startswith("ipv6only=")) if derived else out

    on_http = [
        (h, opts.http_port, keep(params, False))
        for h, port, params in parsed
        if port == opts.http_port
    ]
    on_https = [
        (h, opts.https_port, keep(params, False))
        for h, port, params in parsed
        if port == opts.https_port
    ]
    http = (
        on_http
        or [(h, opts.http_port, keep(params, True)) for h, _, params in on_https]
        or [("", opts.http_port, ())]
    )
    https = on_https or [(h, opts.https_port, keep(params, True)) for h, _, params in http]
    return _dedupe(http), _dedupe(https)


def _dedupe(listens: list[Listen]) -> list[Listen]:
    seen: dict[tuple[str, int], Listen] = {}
    for item in listens:
        seen.setdefault(item[:2], item)
    return list(seen.values())


def _mark_hsts(d: dict[str, Any], config: list[dict[str, Any]]) -> dict[str, Any]:
    """The directive with HSTS_MARK first in every location/if block (at any depth) that
    sets headers of its own, so the HTTPS server can repeat HSTS there."""
    if "block" not in d:
        return d
    block = [_mark_hsts(c, config) for c in d["block"]]
    if (
        d["directive"] in ("location", "if")
        and _sets_headers(block, config)
        and not _sets_hsts(block)
    ):
        block = [{"directive": HSTS_MARK, "args": []}, *block]
    return {**d, "block": block}


def _sets_headers(
    block: list[dict[str, Any]], config: list[dict[str, Any]], seen: tuple[int, ...] = ()
) -> bool:
    for c in block:
        if c["directive"] == "add_header":
            return True
        if c["directive"] == "include":
            for i in c.get("includes", []):
                if i not in seen and _sets_headers(config[i]["parsed"], config, (*seen, i)):
                    return True
    return False


def _sets_hsts(block: list[dict[str, Any]]) -> bool:
    return any(
        c["directive"] == "add_header"
        and c["args"]
        and c["args"][0].lower() == "strict-transport-security"
        for c in block
    )


def _with_hsts(content: str, hsts: int | None) -> str:
    """``content`` with each HSTS_MARK line replaced by the HSTS header (or dropped)."""
    out = []
    for line in content.splitlines():
        if line.strip() == f"{HSTS_MARK};":
            if hsts:
                pad = line[: len(line) - len(line.lstrip())]
                out.append(f'{pad}add_header Strict-Transport-Security "max-age={hsts}" always;')
            continue
        out.append(line)
    return "\n".join(out)


def _is_acme_location(d: dict[str, Any]) -> bool:
    return d["directive"] == "location" and any(
        policy.ACME_CHALLENGE_SUBDIR in a for a in d["args"]
    )


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".") if x.isdigit())


def render_site(opts: SiteOptions, detected: Detected, version: str) -> str:
    """certsmith's nginx site for one certificate (pure)."""
    names = " ".join(opts.names)
    http_listens, https_listens = site_listens(opts, detected)
    var = "certsmith_upgrade_" + re.sub(r"[^a-z0-9]", "_", opts.name.lower())
    source = detected.blocks[0] if detected.blocks else detected.default
    if opts.proxy_to:
        content = "\n".join(
            [
                "    location / {",
                f"        proxy_pass {opts.proxy_to};",
                "        proxy_http_version 1.1;",
                "        proxy_set_header Host $host;",
                "        proxy_set_header Upgrade $http_upgrade;",
                f"        proxy_set_header Connection ${var};",
                "        proxy_set_header X-Real-IP $remote_addr;",
                "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
                "        proxy_set_header X-Forwarded-Proto $scheme;",
                "        proxy_set_header X-Forwarded-Host $host;",
                "        proxy_set_header X-Forwarded-Port $server_port;",
                "        proxy_read_timeout 1h;",
                "        proxy_send_timeout 1h;",
                "    }",
            ]
        )
    elif source is not None and source.body.strip():
        content = source.body
    else:
        content = (
            "    root /var/www/html;\n    location / {\n        try_files $uri $uri/ =404;\n    }"
        )
    lines = [
        f"# Managed by certsmith for {opts.name}; 'certsmith uninstall nginx {opts.name}' "
        "removes it.",
    ]
    if source is not None and not opts.proxy_to:
        lines.append(f"# Site content carried over from {source.where}.")
    if opts.proxy_to:
        lines += [f"map $http_upgrade ${var} {{", "    default upgrade;", "    '' close;", "}"]
    challenge = (
        [
            f"    location ^~ {policy.ACME_CHALLENGE_PREFIX} {{",
            f"        root {opts.challenge_dir};",
            "        default_type text/plain;",
            "        try_files $uri =404;",
            "    }",
        ]
        if opts.challenge_dir
        else []
    )
    lines += ["server {", *_listen_lines(http_listens, ""), f"    server_name {names};", *challenge]
    if opts.tls and opts.redirect:
        lines += [
            "    location / {",
            f"        return {opts.redirect} {opts.https_base('$host')}$request_uri;",
            "    }",
        ]
    else:
        lines.append(_with_hsts(content, None))
    lines.append("}")
    if opts.tls:
        new_http2 = _version_tuple(version) >= (1, 25, 1)
        live = opts.live_dir
        lines += [
            "server {",
            *_listen_lines(https_listens, "ssl"),
            *(["    http2 on;"] if new_http2 else []),
            f"    server_name {names};",
            f"    ssl_certificate {live}/fullchain.pem;",
            f"    ssl_certificate_key {live}/privkey.pem;",
            f"    ssl_protocols {' '.join(policy.TLS_VERSIONS)};",
            f"    ssl_ecdh_curve {policy.GROUPS_LIST};",
            f"    ssl_ciphers {policy.INTERMEDIATE_CIPHERS};",
            "    ssl_prefer_server_ciphers off;",
            f"    ssl_session_timeout {policy.SESSION_TIMEOUT}s;",
            "    ssl_session_cache shared:certsmith:10m;",
            "    ssl_session_tickets off;",
        ]
        if opts.ocsp:
            lines += [
                "    ssl_stapling on;",
                "    ssl_stapling_verify on;",
                f"    ssl_trusted_certificate {live}/chain.pem;",
            ]
        if opts.hsts:
            lines.append(f'    add_header Strict-Transport-Security "max-age={opts.hsts}" always;')
        lines += [_with_hsts(content, opts.hsts), "}"]
    return "\n".join(lines) + "\n"


def _listen_lines(listens: Sequence[Listen], ssl: str) -> list[str]:
    return [
        "    listen " + " ".join([listen.hostport(h, p), *([ssl] if ssl else []), *params]) + ";"
        for h, p, params in listens
    ]


def installer(env: dict[str, str] | None = None) -> NginxInstaller:
    """The registry's factory (services/servers/registry.py)."""
    return NginxInstaller(config(env))
