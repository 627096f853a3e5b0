"""Bench (b): ``renew`` with nothing due over N certificates (default 1,000).

How the N certificates are made (issuing 1,000 real ones per tool would measure issuance, not
the no-op scan): each tool issues ONE real certificate from Pebble for ``app.bench.example``
under the certificate name ``tmpl``; the script then copies that state N-1 times under new
certificate names (r0001, r0002, ...), exactly as the tool lays it out:

- certsmith: ``sites/tmpl.toml`` (only its ``name = "tmpl"`` changes), ``archive/tmpl/`` whole,
  ``state/tmpl.json`` (renewal state incl. the cached ARI answer), and a fresh relative symlink
  ``live/<name> -> ../archive/<name>/1``. ``certsmith list --json`` must then show N entries.
- certbot: ``renewal/tmpl.conf`` (paths ``archive/tmpl`` and ``live/tmpl`` rewritten),
  ``archive/tmpl/`` whole, and ``live/<name>/*.pem`` symlinks to ``../../archive/<name>/*1.pem``.

Every copy holds the same valid 5-year certificate, so nothing is due. Then ``certsmith renew``
and ``certbot renew --no-random-sleep-on-renew`` run ``--repeat`` times each; Pebble's order
count must not move (a renewal would show up there).

    .venv/bin/python bench/renew_noop.py [--count 1000] [--repeat 3] [--skip certbot]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path

import _common as c
from tests.support.pebble import Pebble

NAME = "app.bench.example"
TEMPLATE = "tmpl"


def copy_name(i: int) -> str:
    return f"r{i:04d}"


# ----------------------------------------------------------------------------- certsmith
def setup_certsmith(pebble: Pebble, home: Path, count: int) -> str:
    env = c.certsmith_env(pebble.client_env(), home)
    run = c.timed(
        [
            *c.certsmith_cmd(),
            "get",
            NAME,
            "--cert-name",
            TEMPLATE,
            "--standalone",
            "--http-port",
            str(pebble.http_port),
            "--http-address",
            "127.0.0.1",
            "--server",
            pebble.directory,
            "--agree-tos",
        ],
        env=env,
    )
    if run.returncode != 0:
        return "get failed: " + c.last_line(run.stderr or run.stdout)
    # One no-op renew on the template first, so its ARI answer is cached in state/ (as after
    # any earlier renew run of a real installation); the copies carry that cache.
    c.timed([*c.certsmith_cmd(), "renew"], env=env)
    site = (home / "sites" / f"{TEMPLATE}.toml").read_text()
    archive = home / "archive" / TEMPLATE
    state = home / "state" / f"{TEMPLATE}.json"
    versions = sorted(p.name for p in archive.iterdir())
    for i in range(1, count):
        new = copy_name(i)
        (home / "sites" / f"{new}.toml").write_text(
            site.replace(f'name = "{TEMPLATE}"', f'name = "{new}"', 1)
        )
        shutil.copytree(archive, home / "archive" / new, symlinks=True)
        if state.exists():
            shutil.copy2(state, home / "state" / f"{new}.json")
        os.symlink(f"../archive/{new}/{versions[-1]}", home / "live" / new)
    listed = c.timed([*c.certsmith_cmd(), "list", "--json"], env=env)
    try:
        data = json.loads(listed.stdout)
        entries = data if isinstance(data, list) else data.get("certificates", [])
    except (json.JSONDecodeError, AttributeError):
        return "list --json unreadable: " + c.last_line(listed.stderr or listed.stdout)
    if len(entries) != count:
        return f"list shows {len(entries)} certificates, expected {count}"
    return ""


def renew_certsmith(pebble: Pebble, home: Path) -> c.Run:
    env = c.certsmith_env(pebble.client_env(), home)
    return c.timed([*c.certsmith_cmd(), "renew"], env=env)


# ----------------------------------------------------------------------------- certbot
def _certbot_dirs(base: Path) -> list[str]:
    return [
        "--config-dir",
        str(base / "config"),
        "--work-dir",
        str(base / "work"),
        "--logs-dir",
        str(base / "logs"),
    ]


def setup_certbot(pebble: Pebble, base: Path, count: int) -> str:
    cmd = c.certbot_cmd()
    if cmd is None:
        return "certbot not installed"
    run = c.timed(
        [
            *cmd,
            "certonly",
            "--non-interactive",
            "--standalone",
            "--http-01-port",
            str(pebble.http_port),
            "--http-01-address",
            "127.0.0.1",
            "--server",
            pebble.directory,
            "--agree-tos",
            "--register-unsafely-without-email",
            *_certbot_dirs(base),
            "--cert-name",
            TEMPLATE,
            "-d",
            NAME,
        ],
        env=pebble.client_env(),
    )
    if run.returncode != 0:
        return "certonly failed: " + c.last_line(run.stderr or run.stdout)
    config = base / "config"
    conf = (config / "renewal" / f"{TEMPLATE}.conf").read_text()
    archive = config / "archive" / TEMPLATE
    live = config / "live" / TEMPLATE
    links = {p.name: os.readlink(p) for p in live.iterdir() if p.is_symlink()}
    for i in range(1, count):
        new = copy_name(i)
        text = conf.replace(f"archive/{TEMPLATE}", f"archive/{new}").replace(
            f"live/{TEMPLATE}/", f"live/{new}/"
        )
        (config / "renewal" / f"{new}.conf").write_text(text)
        shutil.copytree(archive, config / "archive" / new, symlinks=True)
        (config / "live" / new).mkdir()
        for link, target in links.items():
            os.symlink(target.replace(f"/{TEMPLATE}/", f"/{new}/"), config / "live" / new / link)
    return ""


def renew_certbot(pebble: Pebble, base: Path) -> c.Run:
    cmd = c.certbot_cmd()
    assert cmd is not None
    return c.timed(
        [*cmd, "renew", "--non-interactive", "--no-random-sleep-on-renew", *_certbot_dirs(base)],
        env=pebble.client_env(),
    )


# ----------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma-separated: certsmith,certbot")
    args = parser.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    rows: list[list[object]] = []
    means: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-renew-") as d, Pebble(Path(d) / "pebble") as pb:
        tmp = Path(d)
        tools = {
            "certsmith": (setup_certsmith, renew_certsmith, tmp / "certsmith-home"),
            "certbot": (setup_certbot, renew_certbot, tmp / "certbot"),
        }
        for tool, (setup, renew, where) in tools.items():
            if tool in skip:
                continue
            print(f"{tool}: preparing {args.count} certificates ...", flush=True)
            problem = setup(pb, where, args.count)
            if problem:
                rows.append([tool, "-", "-", "-", "-", problem])
                continue
            orders = pb.count_orders()
            times, note = [], ""
            for _ in range(args.repeat):
                run = renew(pb, where)
                times.append(run.seconds)
                if run.returncode != 0 and not note:
                    note = f"exit {run.returncode}: " + c.last_line(run.stderr or run.stdout)
                seen = (run.stdout + run.stderr).count("(skipped)")
                if tool == "certbot" and seen != args.count and not note:
                    note = f"certbot listed {seen} of {args.count} as skipped"
            if pb.count_orders() != orders:
                note = (note + "; " if note else "") + (
                    f"{pb.count_orders() - orders} orders placed: not a no-op"
                )
            means[tool] = statistics.mean(times)
            rows.append(
                [
                    tool,
                    statistics.mean(times),
                    min(times),
                    statistics.mean(times) / args.count * 1000,
                    "",
                    note,
                ]
            )

    ours = means.get("certsmith")
    for row in rows:
        if row[0] in means:
            row[4] = "1.0x" if row[0] == "certsmith" else c.ratio(means[str(row[0])], ours)
    print()
    print(
        f"renew with nothing due over {args.count} certificates, {args.repeat} runs "
        "(ratio = tool mean / certsmith mean)"
    )
    print(c.table(["tool", "mean s", "min s", "ms/cert", "vs certsmith", "note"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
