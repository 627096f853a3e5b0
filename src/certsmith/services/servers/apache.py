"""Apache httpd: detect with ``apache2ctl -S`` (and ``-M``), write ``certsmith-NAME.conf``
(Debian: sites-available + sites-enabled link; RHEL: conf.d) and a global
``certsmith-acme.conf`` (the challenge Alias, inherited by every virtual host), check with
``apache2ctl configtest``, reload with ``apache2ctl graceful``."""

from __future__ import annotations

import glob
import re
from collections.abc import Sequence
from pathlib import Path

from certsmith.base import policy
from certsmith.services.servers import base, listen
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

SESSION_CACHE = "SSLSessionCache shmcb:certsmith-ssl-sessions(512000)"
_NAMEVHOST = re.compile(r"^\s*(?:default server|port (\d+) namevhost) (\S+) \((.+):(\d+)\)\s*$")
_SINGLE = re.compile(r"^(\S+):(\d+)\s+(\S+) \((.+):(\d+)\)\s*$")
_ALIAS = re.compile(r"^\s+alias (\S+)\s*$")
_NOT_CARRIED = re.compile(
    r"^\s*(ServerName|ServerAlias|SSL\w+|Include\S*\s+\S*letsencrypt\S*|"
    r"Header\s+always\s+set\s+Strict-Transport-Security.*)(\s|$)",
    re.I,
)


def config(env: dict[str, str] | None = None) -> ServerConfig:
    debian = Path("/etc/apache2").is_dir() or not Path("/etc/httpd").is_dir()

    def defaults(root: Path) -> tuple[str, str]:
        ctl = "apache2ctl" if debian else "apachectl"
        if debian and str(root) != "/etc/apache2":
            ctl = f"env APACHE_CONFDIR={root} {ctl}"
        return ctl, f"{ctl} graceful"

    def restart(root: Path) -> str:
        # To start it again should it have stopped: a graceful restart that cannot bind a
        # new Listen shuts Apache down.
        return f"{defaults(root)[0]} restart"

    return ServerConfig.from_env(
        "apache", env, defaults, "/etc/apache2" if debian else "/etc/httpd", restart
    )


def vhost_body(lines: Sequence[str], start: int) -> tuple[str, int]:
    """The lines inside the ``<VirtualHost>`` opening at 1-based ``start`` (minus what
    certsmith's own virtual hosts set), and the line after its end."""
    depth = 0
    out: list[str] = []
    for i in range(start - 1, len(lines)):
        line = lines[i]
        if re.match(r"^\s*<VirtualHost\b", line, re.I):
            depth += 1
            if depth == 1:
                continue
        if re.match(r"^\s*</VirtualHost>", line, re.I):
            depth -= 1
            if depth == 0:
                return "\n".join(out), i + 2
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and not _NOT_CARRIED.match(line):
            out.append("    " + stripped)
    raise ServerError(f"cannot find the end of the <VirtualHost> starting at line {start}")


class ApacheInstaller:
    kind: Kind = "apache"

    def __init__(self, cfg: ServerConfig) -> None:
        self.config = cfg
        self.debian = (cfg.root / "sites-available").is_dir() or (cfg.root / "envvars").exists()

    def _ctl(self, *args: str) -> tuple[int, str]:
        proc = base.run([*self.config.cmd, *args], f"apache {' '.join(args)}")
        return proc.returncode, proc.stdout + proc.stderr

    def version(self) -> str:
        _rc, out = self._ctl("-v")
        m = re.search(r"Apache/(\d+(?:\.\d+)+)", out)
        return m.group(1) if m else "0"

    def check(self) -> None:
        proc = base.run([*self.config.cmd, "configtest"], "apache2ctl configtest")
        if proc.returncode != 0:
            raise ServerError(f"apache2ctl configtest fails: {base.last_lines(proc)}")

    def server_identity(self) -> tuple[str, str]:
        return "", ""  # the parent process (root) reads certificates

    def listeners(self) -> frozenset[str]:
        return frozenset()  # the parent process (root) binds on a graceful restart

    def accepting_workers(self) -> frozenset[int]:
        return frozenset()  # (old children are not told apart from new ones by /proc)

    # -- detect ---------------------------------------------------------------------------

    def early_modules(self) -> set[str]:
        """Modules loaded by the main file and mods-enabled/ (RHEL: conf.modules.d/)."""
        root = self.config.root
        files = [
            root / "apache2.conf",
            root / "conf" / "httpd.conf",
            *(Path(p) for p in glob.glob(str(root / "mods-enabled" / "*.load"))),
            *(Path(p) for p in glob.glob(str(root / "conf.modules.d" / "*.conf"))),
        ]
        found: set[str] = set()
        for f in files:
            if f.is_file():
                found |= set(
                    re.findall(r"^\s*LoadModule\s+(\w+)", f.read_text(errors="replace"), re.M)
                )
        return found

    def listens(self, modules: set[str]) -> list[tuple[str, int]]:
        """(host, port) of every active ``Listen`` (``<IfModule>`` sections judged by
        ``modules``)."""
        root = self.config.root
        files = [
            root / "ports.conf",
            root / "apache2.conf",
            root / "conf" / "httpd.conf",
            *sorted(Path(p) for p in glob.glob(str(root / "conf.d" / "*.conf"))),
        ]
        found: list[tuple[str, int]] = []
        for f in files:
            if not f.is_file() or f.name.startswith("certsmith-"):
                continue
            stack: list[bool] = []
            for line in f.read_text(errors="replace").splitlines():
                m = re.match(r"^\s*<IfModule\s+(!?)([\w.]+)\s*>", line, re.I)
                if m:
                    name = m.group(2)
                    mod = (
                        name
                        if name.endswith("_module")
                        else name.removeprefix("mod_").removesuffix(".c") + "_module"
                    )
                    stack.append((mod in modules) != bool(m.group(1)))
                    continue
                if re.match(r"^\s*</IfModule>", line, re.I):
                    if stack:
                        stack.pop()
                    continue
                m = re.match(r"^\s*Listen\s+(\S+)", line, re.I)
                if m and all(stack):
                    hp = listen.parse_hostport(m.group(1), 0)
                    if hp is not None and hp[1] and hp not in found:
                        found.append(hp)
        return found

    def detect(self, names: Sequence[str], http_port: int, https_port: int) -> Detected:
        rc, out = self._ctl("-S")
        if rc != 0:
            raise ServerError(
                "apache2ctl -S fails (fix the configuration first; certsmith "
                f"changed nothing): {base.last_lines_text(out)}"
            )
        wanted = {n.lower() for n in names}
        vhosts: list[tuple[int, str, str, int, list[str]]] = []  # port, name, file, line, aliases
        default: tuple[str, int] | None = None
        port = 0
        for line in out.splitlines():
            m = _SINGLE.match(line)
            if m:
                port = int(m.group(2))
                vhosts.append((port, m.group(3).lower(), m.group(4), int(m.group(5)), []))
                if port == http_port and default is None:
                    default = (m.group(4), int(m.group(5)))
                continue
            m = re.match(r"^(\S+):(\d+)\s+is a NameVirtualHost", line)
            if m:
                port = int(m.group(2))
                continue
            m = _NAMEVHOST.match(line)
            if m:
                if m.group(1) is None:
                    if port == http_port and default is None:
                        default = (m.group(3), int(m.group(4)))
                    continue
                vhosts.append(
                    (int(m.group(1)), m.group(2).lower(), m.group(3), int(m.group(4)), [])
                )
                continue
            m = _ALIAS.match(line)
            if m and vhosts:
                vhosts[-1][4].append(m.group(1).lower())
        ours = re.compile(r"(^|/)certsmith-[^/]*$")
        blocks: dict[tuple[str, int], Block] = {}
        for vport, vname, vfile, vline, aliases in vhosts:
            served = {vname, *aliases}
            if ours.search(vfile) or not served & wanted:
                continue
            if vport not in (http_port, https_port):
                continue
            key = (vfile, vline)
            prev = blocks.get(key)
            ports = (*prev.ports, vport) if prev else (vport,)
            blocks[key] = Block(
                vfile,
                vline,
                tuple(sorted(served)),
                ports,
                vport == https_port,
                self._body(vfile, vline),
                self._addresses(vfile, vline),
            )
        by_port: dict[int, list[Block]] = {}
        for b in blocks.values():
            for p in b.ports:
                by_port.setdefault(p, []).append(b)
        relevant = list(blocks.values())
        if any(len(v) > 1 for v in by_port.values()) or len(relevant) > 1:
            raise AmbiguousSiteError(
                f"{', '.join(names)} is served by more than one Apache virtual host: "
                + ", ".join(b.where for b in relevant)
                + "; certsmith will not guess which one to secure. Keep one (or move the "
                "others to other names) and run again"
            )
        takeover = None
        if relevant:
            block = relevant[0]
            extra = [n for n in block.names if n not in wanted]
            if extra:
                raise ServerError(
                    f"the virtual host at {block.where} also serves {', '.join(extra)}; "
                    "certsmith does not edit your files: get one certificate for all of its "
                    "names, or move those names to another virtual host"
                )
            if len({v[3] for v in vhosts if v[2] == block.file}) > 1:
                raise ServerError(
                    f"{block.where} serves the name but {block.file} holds other virtual hosts "
                    "too; certsmith does not edit your files: move it into a file of its own"
                )
            root = self.config.root
            if Path(block.file).parent not in (root / "sites-enabled", root / "conf.d"):
                raise ServerError(
                    f"{block.where} serves the name from a file certsmith cannot disable "
                    "without editing it; move it into sites-available/ + sites-enabled/"
                )
            takeover = block.file
        default_block = None
        if default is not None and not ours.search(default[0]):
            default_block = Block(
                default[0],
                default[1],
                (),
                (http_port,),
                False,
                self._body(default[0], default[1]),
                self._addresses(default[0], default[1]),
            )
        # Modules loaded before ports.conf is read decide its <IfModule> sections; certsmith's
        # own LoadModule lines come later (and are guarded by <IfModule !...>).
        early = self.early_modules()
        facts = {
            "modules": " ".join(sorted(early)),
            "listens": " ".join(listen.hostport(h, p) for h, p in self.listens(early)),
            "moddir": self._moddir(),
        }
        return Detected(tuple(relevant), default_block, takeover, self.version(), facts)

    def _body(self, file: str, line: int) -> str:
        try:
            lines = Path(file).read_text(errors="replace").splitlines()
        except OSError as exc:
            raise ServerError(f"cannot read {file}: {exc.strerror}") from exc
        return vhost_body(lines, line)[0]

    def _addresses(self, file: str, line: int) -> tuple[str, ...]:
        """The addresses of the ``<VirtualHost ...>`` opening at ``line`` (``*:80``...)."""
        try:
            text = Path(file).read_text(errors="replace").splitlines()[line - 1]
        except (OSError, IndexError):
            return ()
        m = re.match(r"^\s*<VirtualHost\s+([^>]*)>", text, re.I)
        return tuple(m.group(1).split()) if m else ()

    def _moddir(self) -> str:
        for d in ("/usr/lib/apache2/modules", "/usr/lib64/httpd/modules", "/usr/lib/httpd/modules"):
            if Path(d).is_dir():
                return d
        return "modules"

    # -- plan -----------------------------------------------------------------------------

    def plan(self, detected: Detected, opts: SiteOptions) -> Plan:
        root = self.config.root
        if (root / "conf-available").is_dir() and (root / "conf-enabled").is_dir():
            acme_avail, acme_enabled = root / "conf-available", root / "conf-enabled"
        else:
            acme_avail, acme_enabled = root / "conf.d", None
        if (root / "sites-available").is_dir() and (root / "sites-enabled").is_dir():
            site_avail, site_enabled = root / "sites-available", root / "sites-enabled"
        else:
            site_avail, site_enabled = root / "conf.d", None
        changes = (
            [
                Change(
                    str(acme_avail / "certsmith-acme.conf"),
                    data=render_acme(opts.challenge_dir).encode(),
                )
            ]
            if opts.challenge_dir
            else []
        )
        if acme_enabled is not None and opts.challenge_dir:
            changes.append(
                Change(
                    str(acme_enabled / "certsmith-acme.conf"),
                    link=str(acme_avail / "certsmith-acme.conf"),
                )
            )
        notes: list[str] = []
        _vhost, http, https = site_listens(opts, detected)
        if opts.tls:
            notes.append(_listen_note(opts, http, https))
            fname = f"certsmith-{opts.name}.conf"
            changes.append(
                Change(str(site_avail / fname), data=render_site(opts, detected).encode())
            )
            if site_enabled is not None:
                changes.append(Change(str(site_enabled / fname), link=str(site_avail / fname)))
            if detected.takeover:
                rel = Path(detected.takeover).relative_to(root)
                changes.append(
                    Change(detected.takeover, move_to=str(root / "certsmith-disabled" / rel))
                )
                notes.append(
                    f"your virtual host at {detected.blocks[0].where} is carried over "
                    f"into {fname} and disabled ({detected.takeover} moved aside); "
                    "'certsmith uninstall' puts it back"
                )
        return Plan(
            tuple(changes),
            tuple(notes),
            http_listens=tuple(listen.hostport(h, opts.http_port) for h in http),
            https_listens=tuple(listen.hostport(h, opts.https_port) for h in https)
            if opts.tls
            else (),
        )


def _listen_note(opts: SiteOptions, http: Sequence[str], https: Sequence[str]) -> str:
    why = "as you asked (--listen-address)" if opts.listen_addresses else "as your site does"
    return (
        "listening on "
        + ", ".join(listen.hostport(h, opts.http_port) for h in http)
        + " (HTTP) and "
        + ", ".join(listen.hostport(h, opts.https_port) for h in https)
        + f" (HTTPS), {why}"
    )


def _sockets(detected: Detected, port: int) -> list[str]:
    """Hosts of the active ``Listen`` directives on ``port``."""
    out = []
    for token in detected.facts.get("listens", "").split():
        hp = listen.parse_hostport(token, 0)
        if hp is not None and hp[1] == port:
            out.append(hp[0])
    return out


def site_listens(
    opts: SiteOptions, detected: Detected
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(``<VirtualHost>`` hosts, hosts the site answers HTTP on, hosts for its HTTPS
    ``Listen``). The user's virtual host (or the default one) keeps its addresses (``*``,
    ``127.0.0.1``...); it answers on the ``Listen`` sockets of the HTTP port those accept, and
    the HTTPS port listens on the same hosts. ``--listen-address`` replaces all three."""
    if opts.listen_addresses:
        return opts.listen_addresses, opts.listen_addresses, opts.listen_addresses
    user = detected.blocks[0] if detected.blocks and detected.blocks[0].listens else None
    source = user or detected.default
    vhost = listen.unique(
        "*" if hp[0] == "_default_" else hp[0]
        for hp in (listen.parse_hostport(t, 0) for t in (source.listens if source else ()))
        if hp is not None
    ) or ("*",)
    sockets = _sockets(detected, opts.http_port)
    reach: list[str] = []
    for host in vhost:
        if host == "*":
            reach += sockets
        elif listen.covered(host, sockets):
            reach.append(host)
    http = listen.unique(reach) or tuple("" if h == "*" else h for h in vhost)
    return vhost, http, http


def _listen_lines(
    opts: SiteOptions, http: Sequence[str], https: Sequence[str], detected: Detected
) -> list[str]:
    """The ``Listen`` directives the site needs and the server does not have yet."""
    lines = []
    wanted = [(h, opts.https_port, " https") for h in https]
    if opts.listen_addresses:  # an HTTP address the server does not listen on yet
        wanted = [(h, opts.http_port, "") for h in http] + wanted
    for host, port, proto in wanted:
        existing = _sockets(detected, port)
        if listen.covered(host, existing):
            continue
        if listen.conflicts(host, existing):
            raise ServerError(
                f"Apache already listens on {', '.join(listen.hostport(h, port) for h in existing)}"
                f"; certsmith will not add a Listen on every address of port {port} beside "
                "them (it could not bind): pass --listen-address with the addresses to use"
            )
        lines.append(f"Listen {listen.hostport(host, port)}{proto}")
    return lines


def render_acme(challenge_dir: str) -> str:
    """The global challenge mapping (pure): every virtual host inherits it."""
    d = f"{challenge_dir}/{policy.ACME_CHALLENGE_SUBDIR}"
    return "\n".join(
        [
            "# Managed by certsmith: HTTP-01 answers from certsmith's challenge directory.",
            f'Alias {policy.ACME_CHALLENGE_PREFIX} "{d}/"',
            f'<Directory "{d}">',
            "    Require all granted",
            "    ForceType text/plain",
            "    Options None",
            "    AllowOverride None",
            "</Directory>",
            "<IfModule proxy_module>",
            f"    ProxyPass {policy.ACME_CHALLENGE_PREFIX} !",
            "</IfModule>",
            "",
        ]
    )


def server_names(names: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """(ServerName, ServerAlias names) for a certificate's names. Apache matches ServerName
    literally and only ServerAlias as a pattern, so a wildcard is always an alias and the
    ServerName is the first name that is not one (a certificate of wildcards only: the first
    wildcard, also listed as an alias)."""
    plain = [n for n in names if not n.startswith("*.")]
    first = plain[0] if plain else names[0]
    aliases = tuple(n for n in names if n != first or n.startswith("*."))
    return first, aliases


def render_site(opts: SiteOptions, detected: Detected) -> str:
    """certsmith's Apache site for one certificate (pure)."""
    vhost, http, https = site_listens(opts, detected)
    moddir = detected.facts.get("moddir", "modules")
    need = ["ssl", "socache_shmcb", "rewrite"]  # socache_shmcb: the TLS session cache
    if opts.hsts or opts.proxy_to:
        need.append("headers")
    if opts.proxy_to:
        need += ["proxy", "proxy_http"]
    source = detected.blocks[0] if detected.blocks else detected.default
    lines = [
        f"# Managed by certsmith for {opts.name}; 'certsmith uninstall apache {opts.name}' "
        "removes it."
    ]
    if source is not None and not opts.proxy_to:
        lines.append(f"# Site content carried over from {source.where}.")
    for mod in need:  # always, guarded: -M also lists what an earlier certsmith file loaded
        lines += [
            f"<IfModule !{mod}_module>",
            f"    LoadModule {mod}_module {moddir}/mod_{mod}.so",
            "</IfModule>",
        ]
    lines += _listen_lines(opts, http, https, detected)
    if opts.ocsp:
        lines.append("SSLStaplingCache shmcb:/tmp/certsmith-ocsp-stapling(128000)")
    server_name, aliases = server_names(opts.names)
    names = [f"    ServerName {server_name}"]
    if aliases:
        names.append(f"    ServerAlias {' '.join(aliases)}")
    if opts.proxy_to:
        target = opts.proxy_to.rstrip("/") + "/"
        content = "\n".join(
            [
                "    ProxyPreserveHost On",
                f"    ProxyPass {policy.ACME_CHALLENGE_PREFIX} !",
                f'    ProxyPass / "{target}" upgrade=websocket',
                f'    ProxyPassReverse / "{target}"',
                '    RequestHeader set X-Forwarded-Proto "https"',
            ]
        )
    elif source is not None and source.body.strip():
        content = source.body
    else:
        content = "    DocumentRoot /var/www/html"
    port = "" if opts.https_port == 443 else f":{opts.https_port}"
    lines += [_vhost_line(vhost, opts.http_port), *names]
    if opts.redirect:
        lines += [
            "    RewriteEngine on",
            f"    RewriteCond %{{REQUEST_URI}} !{policy.ACME_CHALLENGE_REGEX}",
            f"    RewriteRule ^ https://%{{SERVER_NAME}}{port}%{{REQUEST_URI}} "
            f"[R={opts.redirect},L]",
        ]
    else:
        lines.append(
            content.replace(
                'RequestHeader set X-Forwarded-Proto "https"',
                'RequestHeader set X-Forwarded-Proto "http"',
            )
        )
    lines += [
        "</VirtualHost>",
        _vhost_line(vhost, opts.https_port),
        *names,
        "    SSLEngine on",
        f"    SSLCertificateFile {opts.live_dir}/fullchain.pem",
        f"    SSLCertificateKeyFile {opts.live_dir}/privkey.pem",
        f"    SSLProtocol -all {' '.join('+' + v for v in policy.TLS_VERSIONS)}",
        f"    SSLOpenSSLConfCmd Curves {policy.GROUPS_LIST}",
        f"    SSLCipherSuite {policy.INTERMEDIATE_CIPHERS}",
        "    SSLHonorCipherOrder off",
        "    SSLSessionTickets off",
        f"    SSLSessionCacheTimeout {policy.SESSION_TIMEOUT}",
    ]
    if opts.ocsp:
        lines.append("    SSLUseStapling on")
    if opts.hsts:
        lines.append(f'    Header always set Strict-Transport-Security "max-age={opts.hsts}"')
    # Without a cache mod_ssl resumes no session (tickets are off, as Mozilla advises: Apache
    # never rotates their key). Server-wide; relative to DefaultRuntimeDir (Debian: /run/apache2).
    lines += [content, "</VirtualHost>", SESSION_CACHE]
    return "\n".join(lines) + "\n"


def _vhost_line(hosts: Sequence[str], port: int) -> str:
    return "<VirtualHost " + " ".join(f"{listen.bracketed(h)}:{port}" for h in hosts) + ">"


def installer(env: dict[str, str] | None = None) -> ApacheInstaller:
    """The registry's factory (services/servers/registry.py)."""
    return ApacheInstaller(config(env))
