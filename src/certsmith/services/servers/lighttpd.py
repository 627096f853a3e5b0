"""lighttpd: detect with ``lighttpd -p`` (the preprocessed configuration) and a scan of the
user's files, write ``conf-enabled/97-certsmith-acme.conf`` (the challenge alias, as in seed
000) and ``98-certsmith-NAME.conf``, check with ``lighttpd -tt``, reload gracefully (SIGUSR1), or
restart when the change adds a listener (``CERTSMITH_LIGHTTPD_RESTART``; see ``listeners``).

lighttpd re-reads its certificates as its own user after dropping privileges (on a graceful
restart, and when it notices a changed file), so certsmith deploys them where that user can read
them: ``<root>/certsmith/NAME/`` with the key 0640 to the server's group; a separate
``ssl.privkey`` from 1.4.53 on, one combined PEM before.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from certsmith.base import policy
from certsmith.base.model import FileTarget
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

# keys certsmith's files set: lighttpd only warns about unknown keys (module not loaded)
_OUR_KEYS = re.compile(r"unknown config-key: (url\.redirect|ssl\.|setenv\.|proxy\.|alias\.url)")


def config(env: dict[str, str] | None = None) -> ServerConfig:
    systemd = Path("/run/systemd/system").is_dir()

    def defaults(root: Path) -> tuple[str, str]:
        cmd = f"{base.which('lighttpd', '/usr/sbin/lighttpd')} -f {root}/lighttpd.conf"
        if systemd:
            return cmd, "systemctl reload lighttpd"
        return cmd, "kill -USR1 $(cat /run/lighttpd.pid)"

    def restart(root: Path) -> str:
        # A graceful restart re-reads the configuration as server.username: it cannot bind
        # a new privileged port (:443), and the server exits. Only a restart can. (A unit
        # whose new configuration failed to start a few times in a row is refused further
        # starts until reset-failed.)
        if systemd:
            return "systemctl reset-failed lighttpd 2>/dev/null; systemctl restart lighttpd"
        return "service lighttpd restart"

    return ServerConfig.from_env("lighttpd", env, defaults, "/etc/lighttpd", restart)


def _q(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _modules_in(text: str) -> Counter[str]:
    """The modules a configuration's ``server.modules`` lines name (with repeats)."""
    return Counter(
        re.findall(
            r'"(mod_\w+)"',
            " ".join(re.findall(r"server\.modules\s*[+:]?=\s*\(([^)]*)\)", text, re.S)),
        )
    )


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".") if x.isdigit())


class LighttpdInstaller:
    kind: Kind = "lighttpd"

    def __init__(self, cfg: ServerConfig) -> None:
        self.config = cfg
        self._printed: str | None = None

    def version(self) -> str:
        proc = base.run([*self.config.cmd, "-v"], "lighttpd -v")
        m = re.search(r"lighttpd/(\d+(?:\.\d+)+)", proc.stdout + proc.stderr)
        return m.group(1) if m else "0"

    def check(self) -> None:
        proc = base.run([*self.config.cmd, "-tt"], "lighttpd -tt")
        out = proc.stdout + proc.stderr
        bad = _OUR_KEYS.search(out)
        if proc.returncode != 0 or bad:
            raise ServerError(f"lighttpd -tt fails: {base.last_lines_text(out)}")
        # After dropping privileges lighttpd re-reads certificates as its own user: one it
        # cannot read takes the server down at the next reload, which -tt (as root) misses.
        self._printed = None
        user = self._setting("server.username")
        ours = str(self.config.root / "certsmith") + "/"
        for path in re.findall(r'ssl\.(?:pemfile|privkey)\s*=\s*"([^"]+)"', self.printed()):
            if user and path.startswith(ours) and not readable_by(path, user):
                raise ServerError(f"lighttpd runs as {user}, who cannot read {path}")
        self._printed = None

    def printed(self) -> str:
        if self._printed is None:
            proc = base.run([*self.config.cmd, "-p"], "lighttpd -p")
            if proc.returncode != 0:
                raise ServerError(
                    "lighttpd -p cannot parse the configuration (fix it first; "
                    f"certsmith changed nothing): {base.last_lines(proc)}"
                )
            self._printed = proc.stdout
        return self._printed

    def _setting(self, key: str) -> str:
        m = re.search(rf'^\s*{re.escape(key)}\s*=\s*"([^"]*)"', self.printed(), re.M)
        return m.group(1) if m else ""

    def server_identity(self) -> tuple[str, str]:
        return self._setting("server.username"), self._setting("server.groupname")

    def sockets(self, port: int) -> list[str]:
        """Hosts lighttpd listens on at ``port``: the global ``server.bind``/``server.port``
        and every ``$SERVER["socket"]`` (Debian's use-ipv6.pl adds ``[::]:PORT``)."""
        printed = self.printed()
        found: list[str] = []
        m = re.search(r"^    server\.port\s*=\s*(\d+)", printed, re.M)
        if int(m.group(1) if m else 80) == port:
            m = re.search(r'^    server\.bind\s*=\s*"([^"]*)"', printed, re.M)
            bind = m.group(1) if m else ""
            if not bind.startswith("/"):
                found.append(bind.removeprefix("[").removesuffix("]"))
        for text in re.findall(r'\$SERVER\["socket"\]\s*==\s*"([^"]*)"', printed):
            hp = listen.parse_hostport(text, 80)
            if hp is not None and hp[1] == port:
                found.append(hp[0])
        return list(listen.unique(found))

    def accepting_workers(self) -> frozenset[int]:
        return frozenset()  # one process: its graceful restart stops accepting first

    def listeners(self) -> frozenset[str]:
        """Every socket of the configuration on disk (``server.bind``:``server.port`` and each
        ``$SERVER["socket"]``): after dropping privileges, lighttpd's graceful restart can
        keep the sockets it has but cannot open new privileged ones."""
        self._printed = None
        text = self.printed()
        self._printed = None
        port = re.search(r"^\s*server\.port\s*=\s*(\d+)", text, re.M)
        bind = re.search(r'^\s*server\.bind\s*=\s*"([^"]*)"', text, re.M)
        out = {f"{bind.group(1) if bind else ''}:{port.group(1) if port else '80'}"}
        out.update(re.findall(r'^\s*\$SERVER\["socket"\]\s*==\s*"([^"]*)"\s*\{', text, re.M))
        return frozenset(out)

    def _user_files(self) -> list[Path]:
        root = self.config.root
        files = [
            root / "lighttpd.conf",
            *sorted(Path(p) for p in glob.glob(str(root / "conf-enabled" / "*.conf"))),
        ]
        return [f for f in files if f.is_file() and "certsmith" not in f.name]

    def _own_modules(self) -> Counter[str]:
        """Modules certsmith's own files (enabled now) load: they are about to be rewritten,
        so what they load cannot count as loaded by the user's configuration."""
        own: Counter[str] = Counter()
        for f in glob.glob(str(self.config.root / "conf-enabled" / "*certsmith*.conf")):
            with contextlib.suppress(OSError):
                own += _modules_in(Path(f).read_text(errors="replace"))
        return own

    def detect(self, names: Sequence[str], http_port: int, https_port: int) -> Detected:
        printed = self.printed()
        # (``lighttpd -p`` lists a module once per line loading it: one the user's files load
        # too is still counted)
        modules = set(_modules_in(printed) - self._own_modules())
        wanted = {n.lower() for n in names}
        tls_here: list[Block] = []
        hosts: list[Block] = []
        for f in self._user_files():
            for i, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
                if line.lstrip().startswith("#"):
                    continue
                m = re.search(r'\$SERVER\["socket"\]\s*==\s*"([^"]*)"', line)
                if m and m.group(1).rsplit(":", 1)[-1] == str(https_port):
                    tls_here.append(Block(str(f), i, (), (https_port,), True))
                m = re.search(r'\$HTTP\["host"\]\s*(==|=~)\s*"([^"]*)"', line)
                if m:
                    op, value = m.groups()
                    hit = [
                        n
                        for n in wanted
                        if (op == "==" and value.lower() == n)
                        or (op == "=~" and _regex_hits(value, n))
                    ]
                    if hit:
                        hosts.append(Block(str(f), i, tuple(hit)))
        if tls_here:
            raise AmbiguousSiteError(
                f"port {https_port} already has TLS settings in "
                + ", ".join(b.where for b in tls_here)
                + "; certsmith will not guess which certificate lighttpd should serve there. "
                "Remove that block, or install on another --https-port"
            )
        if len(hosts) > 1:
            raise AmbiguousSiteError(
                f'{", ".join(names)} is configured in more than one $HTTP["host"] block: '
                + ", ".join(b.where for b in hosts)
                + "; certsmith will not guess"
            )
        facts = {
            "modules": " ".join(sorted(modules)),
            "user": self._setting("server.username"),
            "group": self._setting("server.groupname"),
            "listens": " ".join(listen.hostport(h, http_port) for h in self.sockets(http_port)),
        }
        return Detected(tuple(hosts), None, None, self.version(), facts)

    def plan(self, detected: Detected, opts: SiteOptions) -> Plan:
        root = self.config.root
        enabled = root / "conf-enabled"
        avail = root / "conf-available" if (root / "conf-available").is_dir() else None

        def add(fname: str, text: str, changes: list[Change]) -> None:
            if avail is not None:
                changes.append(Change(str(avail / fname), data=text.encode()))
                changes.append(Change(str(enabled / fname), link=str(avail / fname)))
            else:
                changes.append(Change(str(enabled / fname), data=text.encode()))

        modules = set(detected.facts.get("modules", "").split())
        changes: list[Change] = []
        if opts.challenge_dir:
            add("97-certsmith-acme.conf", render_acme(opts.challenge_dir, modules), changes)
        files: tuple[FileTarget, ...] = ()
        http, https = site_listens(opts, detected)
        notes: list[str] = []
        if opts.tls:
            why = (
                "as you asked (--listen-address)" if opts.listen_addresses else "as your site does"
            )
            notes.append("listening on " + ", ".join(https) + f" (HTTPS), {why}")
            certdir = root / "certsmith" / opts.name
            separate = _version_tuple(detected.version or "0") >= (1, 4, 53)
            group = opts.server_group or None
            if separate:
                files = (
                    FileTarget("fullchain", str(certdir / "fullchain.pem"), mode=0o644),
                    FileTarget("key", str(certdir / "privkey.pem"), group=group, mode=0o640),
                )
            else:
                files = (
                    FileTarget("combined", str(certdir / "combined.pem"), group=group, mode=0o640),
                )
            add(
                f"98-certsmith-{opts.name}.conf",
                render_site(opts, modules, [t.path for t in files], https_hosts(opts, detected)),
                changes,
            )
        return Plan(
            tuple(changes),
            tuple(notes),
            files,
            http_listens=http,
            https_listens=https if opts.tls else (),
        )


def https_hosts(opts: SiteOptions, detected: Detected) -> tuple[str, ...]:
    """Hosts of certsmith's HTTPS sockets: those lighttpd listens on at the HTTP port (the
    site's addresses; certsmith adds no HTTP listener) or ``--listen-address``."""
    if opts.listen_addresses:
        return opts.listen_addresses
    found = [
        hp[0]
        for hp in (
            listen.parse_hostport(t, opts.http_port)
            for t in detected.facts.get("listens", "").split()
        )
        if hp is not None
    ]
    return listen.unique(found) or ("",)


def site_listens(opts: SiteOptions, detected: Detected) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(HTTP, HTTPS) host:port the site answers on after the change."""
    http = tuple(detected.facts.get("listens", "").split()) or (
        listen.hostport("", opts.http_port),
    )
    return http, tuple(listen.hostport(h, opts.https_port) for h in https_hosts(opts, detected))


def _regex_hits(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return False


def render_acme(challenge_dir: str, modules: set[str]) -> str:
    """The challenge alias (pure), for every host (seed 000's 97-certbot.conf)."""
    lines = ["# Managed by certsmith: HTTP-01 answers from certsmith's challenge directory."]
    if "mod_alias" not in modules:
        lines.append('server.modules += ("mod_alias")')
    target = f"{challenge_dir}/{policy.ACME_CHALLENGE_SUBDIR}/"
    lines += [
        f'$HTTP["url"] =~ "{policy.ACME_CHALLENGE_REGEX}" {{',
        f"    alias.url += ({_q(policy.ACME_CHALLENGE_PREFIX)} => {_q(target)})",
        "}",
        "",
    ]
    return "\n".join(lines)


def render_site(
    opts: SiteOptions, modules: set[str], pem: Sequence[str], hosts: Sequence[str] = ("",)
) -> str:
    """certsmith's lighttpd site for one certificate (pure). ``pem``: (fullchain, key) or
    (combined,); ``hosts``: the addresses of its HTTPS sockets (one socket block each: a
    ``$SERVER["socket"]`` condition opens one listener)."""
    need = ["mod_openssl"]
    if opts.redirect:
        need.append("mod_redirect")
    if opts.hsts:
        need.append("mod_setenv")
    if opts.proxy_to:
        need.append("mod_proxy")
    lines = [
        f"# Managed by certsmith for {opts.name}; 'certsmith uninstall lighttpd "
        f"{opts.name}' removes it."
    ]
    missing = [m for m in need if m not in modules]
    if missing:
        lines.append("server.modules += (" + ", ".join(_q(m) for m in missing) + ")")
    addr = listen.bracketed(hosts[0])
    start = len(lines)
    # Session tickets stay on: lighttpd keeps no session cache, and without ssl.stek-file it
    # makes a new ticket key every 8 hours (each valid a day), so tickets are how it resumes.
    conf_cmd = (
        f'("MinProtocol" => {_q(policy.TLS_VERSIONS[0])}, '
        '"Options" => "-ServerPreference", '
        f'"CipherString" => {_q(policy.INTERMEDIATE_CIPHERS)}, '
        f'"Groups" => {_q(policy.GROUPS_LIST)})'
    )
    lines += [
        f'$SERVER["socket"] == {_q(f"{addr}:{opts.https_port}")} {{',
        '    ssl.engine = "enable"',
        f"    ssl.pemfile = {_q(pem[0])}",
    ]
    if len(pem) > 1:
        lines.append(f"    ssl.privkey = {_q(pem[1])}")
    lines.append(f"    ssl.openssl.ssl-conf-cmd = {conf_cmd}")
    if opts.hsts:
        # set-, not add-response-header: lighttpd takes a key from the last matching
        # condition, so the user's own add-response-header conditionals and HSTS would
        # replace each other; distinct keys are both applied.
        lines.append(
            '    setenv.set-response-header += ("Strict-Transport-Security" => '
            f'"max-age={opts.hsts}")'
        )
    if opts.proxy_to:
        from urllib.parse import urlsplit

        u = urlsplit(opts.proxy_to)
        port = u.port or (443 if u.scheme == "https" else 80)
        lines += [
            f'    proxy.server = ("" => (("host" => {_q(u.hostname or "")}, "port" => {port})))',
            '    proxy.header = ("upgrade" => "enable")',
            '    proxy.forwarded = ("for" => 1, "proto" => 1, "host" => 1)',
        ]
    lines.append("}")
    settings = lines[start + 1 :]  # (with its closing brace)
    for host in hosts[1:]:  # the same block for each further address of the site
        lines += [
            f'$SERVER["socket"] == {_q(f"{listen.bracketed(host)}:{opts.https_port}")} {{',
            *settings,
        ]
    if opts.redirect:
        https = "" if opts.https_port == 443 else f":{opts.https_port}"
        lines.append('$HTTP["scheme"] == "http" {')
        for name in opts.names:
            # The host regex is the innermost condition: %1 in url.redirect is its capture
            # (the host without its port), which a wildcard needs.
            lines += [
                f'    $HTTP["url"] !~ "{policy.ACME_CHALLENGE_REGEX}" {{',
                f'        $HTTP["host"] =~ "{host_regex(name)}" {{',
                f'            url.redirect = ("" => "https://%1{https}${{url.path}}${{qsa}}")',
                f"            url.redirect-code = {opts.redirect}",
                "        }",
                "    }",
            ]
        lines.append("}")
    return "\n".join(lines) + "\n"


def host_regex(name: str) -> str:
    """A ``$HTTP["host"] =~`` regex for a certificate name, the host captured as %1 and an
    optional port after it: a wildcard matches exactly one label under its base, as in TLS
    (written as is: lighttpd keeps backslashes in strings)."""
    label = ""
    if name.startswith("*."):
        label, name = "[^.:]+\\.", name[2:]
    return "^(" + label + name.lower().replace(".", "\\.") + ")(:[0-9]+)?$"


def readable_by(path: str, user: str) -> bool:
    """Whether ``user`` can read ``path`` (mode bits along the way; for the privilege drop)."""
    import grp
    import pwd

    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return True
    groups = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    p = Path(path)
    for part in [*reversed(p.parents), p]:
        st = os.stat(part)
        need = 0o4 if part == p else 0o1
        if st.st_uid == pw.pw_uid:
            ok = st.st_mode & (need << 6)
        elif st.st_gid in groups:
            ok = st.st_mode & (need << 3)
        else:
            ok = st.st_mode & need
        if not ok:
            return False
    return True


def installer(env: dict[str, str] | None = None) -> LighttpdInstaller:
    """The registry's factory (services/servers/registry.py)."""
    return LighttpdInstaller(config(env))
