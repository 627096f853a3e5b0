"""The solver registry is the only seam a new solver needs: a throw-away HTTP-01 solver, defined
and registered here in the test (no certsmith module knows it), issues and renews against a
real Pebble, is recorded in the site file by its own kind, and sees every challenge of an
order at once: one present, one readiness wait, one cleanup."""

from __future__ import annotations

import threading
import tomllib
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from certsmith.base.identifiers import parse_identifiers
from certsmith.base.solverspec import SolverSpec, register_spec
from certsmith.core.solvers.base import Challenge
from certsmith.core.solvers.registry import register
from certsmith.services.accounts import AccountOptions
from certsmith.services.manager import GetRequest, Manager
from tests.support.net import LOOPBACK
from tests.support.pebble import Pebble

NAMES = ("registry.example.com", "www.registry.example.com")


@register_spec
@dataclass(frozen=True)
class ListenerSpec(SolverSpec):
    kind: ClassVar[str] = "test-listener"
    port: int = 0
    always: ClassVar[frozenset[str]] = frozenset({"port"})


class ListenerSolver:
    """Answers /.well-known/acme-challenge/TOKEN from memory on its own port."""

    challenge_type = "http-01"
    calls: ClassVar[list[tuple[str, int]]] = []  # (method, how many challenges)

    def __init__(self, spec: ListenerSpec) -> None:
        self.port = spec.port
        self.answers: dict[str, str] = {}
        self.server: ThreadingHTTPServer | None = None

    def prepare(self) -> None:
        answers = self.answers

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                token = self.path.rsplit("/", 1)[-1]
                body = answers.get(token, "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def present_all(self, challenges: Sequence[Challenge]) -> None:
        self.calls.append(("present_all", len(challenges)))
        for c in challenges:
            self.answers[c.token] = c.key_authorization

    def wait_ready(self, challenges: Sequence[Challenge], deadline: float) -> None:
        self.calls.append(("wait_ready", len(challenges)))
        for c in challenges:  # ready means: served as the CA will fetch it
            url = f"http://{LOOPBACK}:{self.port}/.well-known/acme-challenge/{c.token}"
            with urllib.request.urlopen(url, timeout=5) as reply:
                assert reply.read().decode() == c.key_authorization

    def cleanup_all(self, challenges: Sequence[Challenge]) -> None:
        self.calls.append(("cleanup_all", len(challenges)))
        for c in challenges:
            self.answers.pop(c.token, None)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        self.calls.append(("close", len(self.answers)))


register(ListenerSpec, ListenerSolver)


def test_a_solver_registered_by_the_test_issues_and_renews(pebble: Pebble, tmp_path: Path) -> None:
    home = tmp_path / "home"
    request = GetRequest(
        groups=(("registry.example.com", parse_identifiers(NAMES)),),
        server=pebble.directory,
        solver=ListenerSpec(port=pebble.http_port),
        account=AccountOptions(agree_tos=True),
        ca_bundle=str(pebble.ca_bundle),
    )
    ListenerSolver.calls.clear()
    [issued] = Manager(home).get(request)
    assert issued.action == "issued", issued.detail
    assert ListenerSolver.calls == [
        ("present_all", 2),
        ("wait_ready", 2),
        ("cleanup_all", 2),
        ("close", 0),
    ]
    site = tomllib.loads((home / "sites" / "registry.example.com.toml").read_text())
    assert site["solver"] == {"kind": "test-listener", "port": pebble.http_port}

    # The renewal reads the solver back from the site file, through the registry.
    ListenerSolver.calls.clear()
    [renewed] = Manager(home).renew(force=True)
    assert renewed.action == "renewed", renewed.detail
    assert renewed.serial != issued.serial
    assert ("present_all", 2) in ListenerSolver.calls
    assert ListenerSolver.calls[-1] == ("close", 0)
