"""``certsmith proxy`` refuses every bad setting before anything starts, and its access log never
takes a worker down: through the real CLI, the real proxy process and curl.

A refused start is one line on stderr naming the setting (and the site), exit 2, no traceback,
no "serving", no port bound and no process left behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.net import free_port, port_open, wait_until
from tests.support.proxy import Proxy, UpstreamApp, processes_mentioning, run_proxy

SITE = '[[site]]\nnames = ["localhost"]\nto = "127.0.0.1:9"\n'
WHERE = "site 1 (localhost): "
PUBLIC = '[[site]]\nnames = ["example.org"]\nto = "127.0.0.1:9"\n'


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamApp]:
    with UpstreamApp(tmp_path_factory.mktemp("upstream")) as app:
        yield app


def site(upstream: UpstreamApp, extra: str = "") -> str:
    return f'[[site]]\nnames = ["localhost"]\nto = "{upstream.address}"\n{extra}'


def assert_refused(home: Path, args: list[str], *expected: str) -> str:
    """Run ``certsmith proxy ARGS --http-port H --https-port S`` (free ports, given first so an
    ``args`` option of the same name wins), which must refuse: its one stderr line."""
    http_port, https_port = free_port(), free_port()
    got = run_proxy(home, ["--http-port", str(http_port), "--https-port", str(https_port), *args])
    line = got.stderr.strip()
    assert got.returncode == 2, (got.returncode, got.stdout, got.stderr)
    assert "\n" not in line and line.startswith("certsmith: "), got.stderr
    assert "Traceback" not in got.stderr and "internal error" not in got.stderr
    assert "serving" not in got.stdout
    for text in expected:
        assert text in line, (text, line)
    assert not port_open(https_port) and not port_open(http_port)
    assert not processes_mentioning(str(home)), "a process was left behind"
    return line


# (the file's text, what its one error line must name)
BAD_FILES = [
    (SITE + "[limits]\nheader_timeout = nan\n", "[limits] header_timeout = nan: expected"),
    (SITE + "[limits]\nheader_timeout = inf\n", "[limits] header_timeout = inf: expected"),
    (SITE + "[limits]\nheader_timeout = -inf\n", "header_timeout = -inf: expected"),
    (SITE + "[limits]\nidle_timeout = 0\n", "idle_timeout = 0: expected"),
    (SITE + "[limits]\nbody_timeout = -1\n", "body_timeout = -1: expected"),
    (SITE + "[limits]\nupstream_timeout = 1e12\n", "upstream_timeout = 1000000000000.0: exp"),
    (SITE + '[limits]\nconnect_timeout = "5"\n', 'connect_timeout = "5": expected'),
    (SITE + "[limits]\ndrain_timeout = true\n", "drain_timeout = true: expected"),
    (SITE + "[limits]\nmax_head = 2.5\n", "max_head = 2.5: expected"),
    (SITE + "[limits]\nmax_head = 1099511627776\n", "max_head = 1099511627776: expected"),
    (SITE + "[limits]\nmax_headers = 0\n", "max_headers = 0: expected"),
    (SITE + "[limits]\nmax_connections = -5\n", "max_connections = -5: expected"),
    (SITE + "[limits]\nheader_timout = 3\n", "did you mean header_timeout?"),
    (SITE + "[limits]\nhttps_port = 3\n", '"https_port"; it belongs in the top level'),
    ("limits = 5\n" + SITE, "limits = 5: expected a [limits] table"),
    ('redirect = "abc"\n' + SITE, 'redirect = "abc": expected 301, 302, 307 or 308'),
    ("redirect = 303\n" + SITE, "redirect = 303: expected"),
    ("redirect = true\n" + SITE, "redirect = true: expected"),
    ("address = 5\n" + SITE, "address = 5: expected an IP address"),
    ('address = "example.org"\n' + SITE, 'address = "example.org": expected an IP address'),
    ("http_port = 0\n" + SITE, "http_port = 0: expected a port number 1-65535"),
    ("https_port = 70000\n" + SITE, "https_port = 70000: expected a port number"),
    ('http_port = "80"\n' + SITE, 'http_port = "80": expected a port number'),
    ("workers = true\n" + SITE, "workers = true: expected"),
    ("workers = -1\n" + SITE, "workers = -1: expected"),
    ("workers = 100000\n" + SITE, "workers = 100000: expected"),
    ("access_log = 5\n" + SITE, "access_log = 5: expected"),
    ('access_log = ""\n' + SITE, 'access_log = "": expected'),
    ('log_format = "xml"\n' + SITE, 'log_format = "xml": expected combined or json'),
    ('agree_tos = "no"\n' + SITE, 'agree_tos = "no": expected true or false'),
    ("email = 5\n" + SITE, "email = 5: expected an e-mail address"),
    ('server = "nope"\n' + SITE, 'server = "nope": unknown CA'),
    (
        'challenge = "dns-02"\n' + SITE,
        'challenge = "dns-02": expected http-01, tls-alpn-01 or dns-01',
    ),
    (
        'challenge = "dns-01"\n' + PUBLIC,
        'site 1 (example.org): challenge = "dns-01" needs a DNS provider',
    ),
    (
        '[[site]]\nnames = ["*.example.org"]\nto = "127.0.0.1:9"\n',
        "site 1 (*.example.org): *.example.org: public wildcard names need DNS-01: set challenge = "
        '"dns-01" with a [site.dns] table',
    ),
    (
        '[dns]\nprovider = "rfc2136"\n[[site]]\nnames = ["*.example.org"]\nto = "127.0.0.1:9"\n'
        'challenge = "dns-01"\n',
        '[dns] provider = "rfc2136" needs tsig_key_file = "FILE"',
    ),
    (
        PUBLIC + 'challenge = "dns-01"\n[site.dns]\nprovider = "hook"\nhook = "x"\ntimeout = -1\n',
        "site 1 (example.org): [site.dns] timeout = -1: expected a number of seconds",
    ),
    (
        PUBLIC + 'challenge = "dns-01"\n[site.dns]\nprovider = "hook"\nhok = "x"\n',
        'site 1 (example.org): [site.dns] unknown setting "hok"; did you mean hook?',
    ),
    ('hsts = "x"\n' + SITE, 'hsts = "x": expected'),
    ("hsts = -1\n" + SITE, "hsts = -1: expected"),
    ('acess_log = "/tmp/x"\n' + SITE, '"acess_log"; did you mean access_log?'),
    ("header_timeout = 3\n" + SITE, '"header_timeout"; it belongs in [limits]'),
    ('to = "127.0.0.1:9"\n' + SITE, '"to"; it belongs in a [[site]] table'),
    ("site = 5\n", "site: expected [[site]] tables"),
    ("workers = 1\n", "no [[site]] tables"),
    ('[[site]]\nnames = 5\nto = "127.0.0.1:9"\n', "site 1: names = 5: expected a list of names"),
    ('[[site]]\nnames = []\nto = "127.0.0.1:9"\n', "site 1: names = []: expected"),
    ('[[site]]\nnames = [5]\nto = "127.0.0.1:9"\n', "site 1: names = [5]: expected"),
    ('[[site]]\nnames = ["a b.test"]\nto = "127.0.0.1:9"\n', "site 1 (a b.test): names = "),
    ('[[site]]\nnames = ["localhost"]\nto = 5\n', WHERE + "to = 5: expected an upstream"),
    ('[[site]]\nnames = ["localhost"]\nto = "x:99999"\n', WHERE + 'to = "x:99999": invalid port'),
    ('[[site]]\nnames = ["localhost"]\nto = "https://a:1"\n', WHERE + 'to = "https://a:1"'),
    (SITE + "redirect = 0\n", WHERE + "redirect = 0: expected 301, 302, 307 or 308"),
    (SITE + 'issuer = "x"\n', WHERE + 'issuer = "x": expected auto, local or acme'),
    (SITE + "hsts = 1.5\n", WHERE + "hsts = 1.5: expected"),
    (SITE + "nmes = 1\n", WHERE + 'unknown setting "nmes"; did you mean names?'),
    (SITE + "idle_timeout = 1\n", WHERE + 'unknown setting "idle_timeout"; it belongs in [limits]'),
    (
        SITE + '[[site]]\nnames = ["app.test"]\nto = "127.0.0.1:9"\nredirect = "x"\n',
        'site 2 (app.test): redirect = "x": expected',
    ),
    (SITE + '[[site]]\nnames = ["app.test"]\n', "site 2 (app.test): needs names = [...] and to"),
    ("[[site]]\nnames = 5\n[[site]]\n", "site 1: needs names"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_FILES, ids=[t[1][:48] for t in BAD_FILES])
def test_bad_config_value_is_one_line_and_nothing_starts(
    tmp_path: Path, text: str, expected: str
) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text(text)
    line = assert_refused(tmp_path / "home", ["--config", str(config)], expected)
    assert str(config) in line  # which file


BAD_OPTIONS = [
    (["--http-port", "x"], "--http-port x: expected a port number 1-65535"),
    (["--https-port", "0"], "--https-port 0: expected a port number"),
    (["--http-port", "65536"], "--http-port 65536: expected"),
    (["--workers", "-1"], "--workers -1: expected"),
    (["--workers", "1.5"], "--workers 1.5: expected"),
    (["--redirect", "303"], "--redirect 303: expected 301, 302, 307 or 308"),
    (["--redirect", "abc"], "--redirect abc: expected"),
    (["--address", "example.org"], "--address example.org: expected an IP address"),
    (["--hsts=x"], "--hsts x: expected a max-age in seconds"),
    (["--hsts=-5"], "--hsts -5: expected"),
    (["--log-format", "xml"], "--log-format xml: expected combined or json"),
    (["--challenge", "dns-02"], "--challenge dns-02: expected http-01, tls-alpn-01 or dns-01"),
    (["--challenge", "dns-01"], "--challenge dns-01 needs --dns PROVIDER"),
    (["--dns-hook", "x"], "--dns-hook is a DNS-01 option: add --dns PROVIDER"),
    (["--dns", "hook", "--dns-hook", "x"], "--dns: localhost gets a local-CA certificate"),
    (["--email", "nobody"], "--email nobody: expected an e-mail address"),
    (["--server", "nope"], "--server nope: unknown CA"),
    (["--to", "127.0.0.1:0"], "--to 127.0.0.1:0: invalid port"),
]


@pytest.mark.parametrize(("args", "expected"), BAD_OPTIONS, ids=[a[1][:40] for a in BAD_OPTIONS])
def test_bad_option_is_one_line_and_nothing_starts(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    assert_refused(tmp_path / "home", ["localhost", "--to", "127.0.0.1:9", *args], expected)


# -- the access log ----------------------------------------------------------------------------


def _unwritable(tmp_path: Path) -> list[tuple[str, str]]:
    """(path, reason): paths the proxy cannot append to, also as root (the tests run as root,
    which writes mode-000 files): no such directory, a directory, sysfs, a FIFO with no
    reader (opening it for writing would block a worker forever)."""
    fifo = tmp_path / "fifo.log"
    os.mkfifo(fifo)
    return [
        (
            str(tmp_path / "missing" / "access.log"),
            f"No such file or directory (the directory {tmp_path / 'missing'} does not exist)",
        ),
        (str(tmp_path), "Is a directory"),
        ("/sys/kernel/certsmith-test-access.log", ""),
        (str(fifo), "No such device or address"),
    ]


@pytest.mark.parametrize("via", ["option", "file"])
def test_unwritable_access_log_refused_at_start(tmp_path: Path, via: str) -> None:
    for path, reason in _unwritable(tmp_path):
        config = tmp_path / "proxy.toml"
        if via == "option":
            config.write_text(SITE)
            args = ["--config", str(config), "--access-log", path]
        else:
            config.write_text(f"access_log = {path!r}\n" + SITE)
            args = ["--config", str(config)]
        line = assert_refused(
            tmp_path / "home", args, f"access log {path}: cannot open it for appending: {reason}"
        )
        assert line.split("appending: ", 1)[1], line  # a reason is given


def _get(proxy: Proxy, path: str = "/hello", timeout: int = 30) -> str:
    got = subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            str(timeout),
            "--cacert",
            str(proxy.root),
            proxy.url("localhost", path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return got.stdout


def test_access_log_full_disk_is_said_once_and_the_proxy_keeps_serving(
    upstream: UpstreamApp, tmp_path: Path
) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text('workers = 1\naccess_log = "/dev/full"\n' + site(upstream))
    proxy = Proxy(tmp_path / "home", ["--config", str(config)]).start()
    try:
        worker = proxy.workers()
        assert _get(proxy) == "hello"
        wait_until(lambda: "No space left on device" in proxy.stderr(), what="said", timeout=30)
        for _ in range(5):
            assert _get(proxy) == "hello"
        assert proxy.workers() == worker  # the same worker: it never died
    finally:
        proxy.close()  # (the worker's last flush fails too)
    assert proxy.proc is not None and proxy.proc.returncode == 0
    err = proxy.stderr()
    assert err.count("access log /dev/full: cannot write it: No space left on device") == 1, err
    assert "exited" not in err and "failed" not in err, err


def test_access_log_removed_then_its_directory_then_back(
    upstream: UpstreamApp, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "access.log"
    config = tmp_path / "proxy.toml"
    config.write_text(f'workers = 1\naccess_log = "{log}"\n' + site(upstream))
    marks = iter(range(1_000_000))

    def logged_after_request() -> bool:
        mark = f"/hello?mark={next(marks)}"
        assert _get(proxy, mark) == "hello"
        return log.exists() and "mark=" in log.read_text()

    with Proxy(tmp_path / "home", ["--config", str(config)]) as proxy:
        wait_until(logged_after_request, what="logged", timeout=30)
        # Removed (rotation without a signal): reopened at its path, lines land there.
        log.unlink()
        wait_until(logged_after_request, what="logged in the new file", timeout=30)
        # The directory removed: said once, requests still served.
        shutil.rmtree(logs)
        wait_until(
            lambda: _get(proxy) == "hello" and "cannot open it for appending" in proxy.stderr(),
            what="said",
            timeout=30,
        )
        # A worker started now cannot open the log either: it serves all the same (it used
        # to die at start-up and be respawned every second, forever).
        [worker] = proxy.workers()
        os.kill(worker, signal.SIGKILL)
        wait_until(lambda: proxy.workers() not in ([], [worker]), what="respawn", timeout=30)
        assert _get(proxy) == "hello"
        assert _get(proxy) == "hello"
        # The directory is back: the log is written again.
        logs.mkdir()
        wait_until(logged_after_request, what="logged again", timeout=30)
        assert len(proxy.workers()) == 1
        err = proxy.stderr()
    assert err.count("exited") == 1, err  # only the worker killed above
    assert "failed" not in err, err
    assert "writing it again" in err


# -- SIGHUP ------------------------------------------------------------------------------------


def test_sighup_with_a_bad_file_keeps_serving_and_says_why_once(
    upstream: UpstreamApp, tmp_path: Path
) -> None:
    config = tmp_path / "proxy.toml"
    good = "workers = 1\n" + site(upstream)
    config.write_text(good)
    with Proxy(tmp_path / "home", ["--config", str(config)]) as proxy:
        workers = proxy.workers()
        bad = [
            (
                "workers = 1\n[limits]\nheader_timeout = nan\n" + site(upstream),
                "[limits] header_timeout = nan: expected",
            ),
            ('workers = 1\nredirect = "abc"\n' + site(upstream), 'redirect = "abc"'),
            (
                f'workers = 1\naccess_log = "{tmp_path / "no" / "a.log"}"\n' + site(upstream),
                "cannot open it for appending",
            ),
        ]
        for number, (text, expected) in enumerate(bad, 1):
            config.write_text(text)
            proxy.signal(signal.SIGHUP)
            wait_until(
                lambda n=number: proxy.stderr().count("reload failed") == n,
                what="refused",
                timeout=30,
            )
            line = [x for x in proxy.stderr().splitlines() if "reload failed" in x][-1]
            assert "still serving the old configuration" in line and expected in line, line
            assert _get(proxy) == "hello"
            assert proxy.workers() == workers  # the running workers were kept
        config.write_text(good)
        proxy.signal(signal.SIGHUP)
        wait_until(lambda: "reloaded" in proxy.stderr(), what="reloaded", timeout=30)
        assert _get(proxy) == "hello"
        err = proxy.stderr()
    assert err.count("reload failed") == len(bad), err  # once each
    assert "exited" not in err and "internal error" not in err, err


def test_temporary_redirects_are_served(upstream: UpstreamApp, tmp_path: Path) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text(
        "workers = 1\nredirect = 307\n"
        + site(upstream)
        + f'[[site]]\nnames = ["app.test"]\nto = "{upstream.address}"\n'
        "redirect = 302\n"
    )
    with Proxy(tmp_path / "home", ["--config", str(config)]) as proxy:
        for host, status in (("localhost", "307 Temporary Redirect"), ("app.test", "302 Found")):
            got = subprocess.run(
                [
                    "curl",
                    "-sS",
                    "-i",
                    "--max-time",
                    "30",
                    "--resolve",
                    f"{host}:{proxy.http_port}:127.0.0.1",
                    f"http://{host}:{proxy.http_port}/a?b",
                ],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            assert got.startswith(f"HTTP/1.1 {status}\n"), got
            assert f"Location: https://{host}:{proxy.https_port}/a?b\n" in got, got
