"""Real nginx, Apache and lighttpd (Debian's packages) started from a copy of Debian's stock
configuration tree, on loopback ports, as processes of their own.

Each server copies /etc/<server> into a world-traversable work directory (the workers run as
www-data, as on a real machine), rewrites the paths to point into it and the ports to
``http_port`` / ``https_port``, keeping the stock shapes of the listen directives, and runs the
real binary in the foreground under a stand-in for its systemd unit (tests/support/supervise.py:
``restart_command()`` stops and starts it). Where the stock tree listens on every interface
(IPv4 and IPv6), the fixture listens on loopback the same way a user's loopback site does:
nginx ``listen 127.0.0.1:P; listen [::1]:P;``, Apache ``Listen 127.0.0.1:P`` +
``Listen [::1]:P``, lighttpd ``server.bind = "127.0.0.1"`` + a ``[::1]:P`` socket (where
Debian's use-ipv6.pl adds ``[::]:P``). ``stock_listen=True`` keeps the stock wildcard form
(every interface), for the validators only: such a server is never started.
``certsmith_env()`` gives the CERTSMITH_<SERVER>_ROOT/_CMD/_RELOAD/_RESTART variables that
point certsmith at this instance.
"""

from __future__ import annotations

import abc
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType

from tests.support.net import (
    LOOPBACK,
    die_with_parent,
    free_port,
    port_open,
    stop_process,
    wait_until,
)

SUPERVISE = Path(__file__).with_name("supervise.py")
STOCK = {
    "nginx": Path("/etc/nginx"),
    "apache": Path("/etc/apache2"),
    "lighttpd": Path("/etc/lighttpd"),
}


def tree(root: Path) -> dict[str, tuple[str, bytes | str, int]]:
    """Every file, link and directory under ``root`` with its bytes / target and mode."""
    out: dict[str, tuple[str, bytes | str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p), 0)
            elif p.is_file():
                out[rel] = ("file", p.read_bytes(), p.stat().st_mode & 0o7777)
            else:
                out[rel] = ("dir", "", p.stat().st_mode & 0o7777)
    return out


class WebServer(abc.ABC):
    kind = ""

    def __init__(
        self,
        *,
        http_port: int | None = None,
        https_port: int | None = None,
        workdir: Path | None = None,
        stock_listen: bool = False,
    ) -> None:
        self.stock_listen = stock_listen
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"certsmith-{self.kind}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        self.root = self.workdir / "etc" / STOCK[self.kind].name
        self.docroot = self.workdir / "www"
        self.logs = self.workdir / "log"
        self.http_port = http_port or free_port()
        self.https_port = https_port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        for d in (self.docroot, self.logs):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o755)
        shutil.chown(self.logs, "www-data", "www-data")
        (self.docroot / "index.html").write_text(f"stock {self.kind} page\n")
        os.chmod(self.docroot / "index.html", 0o644)
        self._copy_stock()

    # -- stock tree ---------------------------------------------------------------------------

    def _copy_stock(self) -> None:
        stock = STOCK[self.kind]
        shutil.copytree(stock, self.root, symlinks=True)
        for dirpath, _dirs, files in os.walk(self.root):
            for n in files:
                p = Path(dirpath) / n
                if p.is_symlink():
                    target = os.readlink(p)
                    if target.startswith(str(stock)):
                        p.unlink()
                        p.symlink_to(str(self.root) + target[len(str(stock)) :])
                    continue
                try:
                    text = p.read_text()
                except UnicodeDecodeError:
                    continue
                new = self.rewrite(text.replace(str(stock), str(self.root)), p)
                if new != text:
                    p.write_text(new)

    def rewrite(self, text: str, path: Path) -> str:
        return text

    # -- process ------------------------------------------------------------------------------

    @property
    def control(self) -> Path:
        """The supervisor's directory (tests/support/supervise.py, a stand-in for systemd)."""
        path = self.workdir / "unit"
        path.mkdir(exist_ok=True)
        return path

    @property
    def running(self) -> bool:
        """The supervisor runs and so does the server under it (it may have exited)."""
        if self._proc is None or self._proc.poll() is not None:
            return False
        state = self.control / "state"
        words = state.read_text().split() if state.is_file() else []
        return bool(words) and words[0] == "running"

    @abc.abstractmethod
    def argv(self) -> list[str]:
        """The command line that starts this server in the foreground."""

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def restart_command(self) -> str:
        """What ``systemctl restart`` does for this server: for CERTSMITH_<SERVER>_RESTART."""
        return shlex.join(
            [
                sys.executable,
                str(SUPERVISE),
                "restart",
                str(self.control),
                LOOPBACK,
                str(self.http_port),
            ]
        )

    def start(self) -> WebServer:
        if self.stock_listen:
            raise RuntimeError("a stock-listen tree binds every interface: validate it only")
        if self.running:
            return self
        self._proc = subprocess.Popen(
            [sys.executable, str(SUPERVISE), "run", str(self.control), "--", *self.argv()],
            stdin=subprocess.DEVNULL,
            stdout=open(self.workdir / "stdout.log", "ab"),  # noqa: SIM115 - child owns it
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=self.env(),
            preexec_fn=die_with_parent,
        )
        wait_until(
            lambda: port_open(self.http_port), what=self.kind, proc=self._proc, log=self.log_text
        )
        return self

    def stop(self) -> None:
        stop_process(self._proc)
        self._proc = None
        # Apache's children may hold the port a moment longer; the next server needs it.
        wait_until(
            lambda: not port_open(self.http_port) and not port_open(self.https_port),
            what=f"{self.kind} releasing its ports",
        )

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_text(self) -> str:
        out = []
        for p in [self.workdir / "stdout.log", *sorted(self.logs.glob("*"))]:
            if p.is_file():
                out.append(f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:])
        return "\n".join(out)

    @abc.abstractmethod
    def certsmith_env(self) -> dict[str, str]:
        """The CERTSMITH_<SERVER>_* variables pointing certsmith at this server."""

    def tree(self) -> dict[str, tuple[str, bytes | str, int]]:
        return tree(self.root)

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Nginx(WebServer):
    kind = "nginx"

    def rewrite(self, text: str, path: Path) -> str:
        v4, v6 = ("", "[::]:") if self.stock_listen else (f"{LOOPBACK}:", "[::1]:")
        text = re.sub(
            r"^(\s*)listen 80 default_server;",
            rf"\1listen {v4}{self.http_port} default_server;",
            text,
            flags=re.M,
        )
        text = re.sub(
            r"^(\s*)listen \[::\]:80 default_server;",
            rf"\1listen {v6}{self.http_port} default_server;",
            text,
            flags=re.M,
        )
        text = text.replace("root /var/www/html;", f"root {self.docroot};")
        text = text.replace("pid /run/nginx.pid;", f"pid {self.workdir}/nginx.pid;")
        text = text.replace("/var/log/nginx/", f"{self.logs}/")
        return text

    @property
    def base_cmd(self) -> list[str]:
        return ["nginx", "-e", str(self.logs / "error.log"), "-c", str(self.root / "nginx.conf")]

    def argv(self) -> list[str]:
        return [*self.base_cmd, "-g", "daemon off;"]

    def certsmith_env(self) -> dict[str, str]:
        cmd = shlex.join(self.base_cmd)
        return {
            "CERTSMITH_NGINX_ROOT": str(self.root),
            "CERTSMITH_NGINX_CMD": cmd,
            "CERTSMITH_NGINX_RELOAD": f"{cmd} -s reload",
            "CERTSMITH_NGINX_RESTART": self.restart_command(),
        }


class Apache(WebServer):
    kind = "apache"

    def rewrite(self, text: str, path: Path) -> str:
        if path.name == "envvars":
            run = self.workdir / "run"
            text = re.sub(
                r"^export APACHE_PID_FILE=.*$",
                f"export APACHE_PID_FILE={run}/apache2.pid",
                text,
                flags=re.M,
            )
            text = re.sub(
                r"^export APACHE_RUN_DIR=.*$", f"export APACHE_RUN_DIR={run}", text, flags=re.M
            )
            text = re.sub(
                r"^export APACHE_LOCK_DIR=.*$",
                f"export APACHE_LOCK_DIR={self.workdir}/lock",
                text,
                flags=re.M,
            )
            text = re.sub(
                r"^export APACHE_LOG_DIR=.*$",
                f"export APACHE_LOG_DIR={self.logs}",
                text,
                flags=re.M,
            )
        if path.name == "ports.conf":
            hosts = [""] if self.stock_listen else [f"{LOOPBACK}:", "[::1]:"]
            ports = {"80": self.http_port, "443": self.https_port}
            lines = []
            for line in text.splitlines():
                m = re.match(r"^(\s*)Listen (80|443)$", line)
                lines += (
                    [f"{m.group(1)}Listen {h}{ports[m.group(2)]}" for h in hosts] if m else [line]
                )
            text = "\n".join(lines) + "\n"
        text = re.sub(
            r"<VirtualHost (\*|_default_):80>", rf"<VirtualHost \1:{self.http_port}>", text
        )
        text = re.sub(
            r"<VirtualHost (\*|_default_):443>", rf"<VirtualHost \1:{self.https_port}>", text
        )
        text = text.replace("/var/www/html", str(self.docroot))
        text = text.replace("<Directory /var/www/>", f"<Directory {self.docroot}/>")
        return text

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["APACHE_CONFDIR"] = str(self.root)
        for d in ("run", "lock"):
            (self.workdir / d).mkdir(exist_ok=True)
        out = subprocess.run(
            ["sh", "-c", f". {shlex.quote(str(self.root / 'envvars'))} && env"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout
        for line in out.splitlines():
            k, _, v = line.partition("=")
            if k.startswith("APACHE_") or k == "LANG":
                env[k] = v
        return env

    def argv(self) -> list[str]:
        return [
            "apache2",
            "-d",
            str(self.root),
            "-f",
            str(self.root / "apache2.conf"),
            "-D",
            "FOREGROUND",
        ]

    def certsmith_env(self) -> dict[str, str]:
        ctl = f"env APACHE_CONFDIR={shlex.quote(str(self.root))} apache2ctl"
        return {
            "CERTSMITH_APACHE_ROOT": str(self.root),
            "CERTSMITH_APACHE_CMD": ctl,
            "CERTSMITH_APACHE_RELOAD": f"{ctl} graceful",
            "CERTSMITH_APACHE_RESTART": self.restart_command(),
        }


class Lighttpd(WebServer):
    """Debian's stock lighttpd as Debian runs it: as root, dropping to ``www-data`` after it
    opened its listeners (``server.username``/``server.groupname``, as in the stock
    lighttpd.conf), so a graceful restart re-reads the configuration as www-data, and under a
    stand-in for its systemd unit (as every server here) that restarts it on request."""

    kind = "lighttpd"
    USER = "www-data"

    def rewrite(self, text: str, path: Path) -> str:
        if path.name != "lighttpd.conf":
            return text
        text = text.replace('"/var/www/html"', f'"{self.docroot}"')
        text = text.replace('"/run/lighttpd.pid"', f'"{self.workdir}/lighttpd.pid"')
        text = text.replace('"/var/log/lighttpd/error.log"', f'"{self.logs}/error.log"')
        text = text.replace('"/var/cache/lighttpd/uploads"', f'"{self.uploads}"')
        bind = "" if self.stock_listen else f'\nserver.bind = "{LOOPBACK}"'
        text = re.sub(
            r"^server\.port\s*=\s*80$", f"server.port = {self.http_port}{bind}", text, flags=re.M
        )
        if not self.stock_listen:
            # Debian's use-ipv6.pl adds an IPv6 listener on [::]:PORT: here on [::1] only.
            text = re.sub(
                r'^include_shell "/usr/share/lighttpd/use-ipv6.pl.*$',
                f'$SERVER["socket"] == "[::1]:{self.http_port}" {{ }}',
                text,
                flags=re.M,
            )
        # The privilege drop is what a real machine has; keep it even if the stock file
        # changes.
        for key in ("username", "groupname"):
            if not re.search(rf'^server\.{key}\s*=\s*"{self.USER}"', text, re.M):
                text += f'server.{key} = "{self.USER}"\n'
        return text

    @property
    def uploads(self) -> Path:
        """Debian's /var/cache/lighttpd/uploads: written by the server after the drop."""
        path = self.workdir / "uploads"
        if not path.is_dir():
            path.mkdir()
            shutil.chown(path, self.USER, self.USER)
        return path

    @property
    def conf(self) -> Path:
        return self.root / "lighttpd.conf"

    def argv(self) -> list[str]:
        return ["lighttpd", "-D", "-f", str(self.conf)]

    def certsmith_env(self) -> dict[str, str]:
        pid = shlex.quote(str(self.workdir / "lighttpd.pid"))
        log = shlex.quote(str(self.logs / "error.log"))
        # A graceful restart (SIGUSR1) happens after kill returns and re-reads the config; wait
        # for its "server started" line (as `systemctl reload` would for a notify service), so
        # a test never edits the tree while lighttpd is still re-reading it.
        reload = (
            f"n=$(grep -c 'server started' {log}); kill -USR1 $(cat {pid}) && "
            f"for i in $(seq 500); do [ $(grep -c 'server started' {log}) -gt $n ] "
            "&& exit 0; sleep 0.02; done; exit 1"
        )
        return {
            "CERTSMITH_LIGHTTPD_ROOT": str(self.root),
            "CERTSMITH_LIGHTTPD_CMD": f"lighttpd -f {shlex.quote(str(self.conf))}",
            "CERTSMITH_LIGHTTPD_RELOAD": reload,
            "CERTSMITH_LIGHTTPD_RESTART": self.restart_command(),
        }

    def reload(self) -> None:
        """Graceful restart (SIGUSR1 to lighttpd itself, not to its supervisor)."""
        os.kill(int((self.workdir / "lighttpd.pid").read_text()), signal.SIGUSR1)


SERVERS: dict[str, type[WebServer]] = {"nginx": Nginx, "apache": Apache, "lighttpd": Lighttpd}
