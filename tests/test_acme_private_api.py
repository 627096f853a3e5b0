"""No private ``acme``/``josepy`` API outside ``core/issuers/acme_adapter.py`` (fast, no servers).

The check is a documented heuristic over each module's ``ast`` (flow- and scope-insensitive,
so it over-approximates; a false positive is fixed by moving the call into the adapter):

- *acme names*: names bound by ``import acme...``/``import josepy...`` and ``from acme...``/
  ``from josepy... import ...``; classes of the module whose bases are acme expressions; and,
  to a fixpoint, variables assigned (or unpacked, or iterated) from an acme expression or
  annotated with an annotation naming an acme name, and functions whose return annotation
  names one (a call of a function by that name is an acme expression).
- an *acme expression* is an attribute/call/subscript chain whose root is an acme name, or
  ``self``/``cls``/``super()`` inside a class that subclasses an acme class.
- reported: ``x._y`` (not a dunder) on an acme expression; ``getattr``/``setattr``/``hasattr``/
  ``delattr`` of a ``"_y"`` on one; a class subclassing an acme/josepy class (its field set and
  internals are the library's), and a ``_y`` method defined in one (an override of an
  internal); any attribute assignment on an imported acme module or name (monkey-patching);
  importing a ``_``-prefixed name or module from acme/josepy.
"""

from __future__ import annotations

import ast
import contextlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "certsmith"
ADAPTER = SRC / "core" / "issuers" / "acme_adapter.py"
LIBRARIES = ("acme", "josepy")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _from_library(module: str | None) -> bool:
    return bool(module) and str(module).split(".")[0] in LIBRARIES


def _root(node: ast.expr) -> ast.expr:
    while True:
        if isinstance(node, ast.Attribute | ast.Subscript):
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        else:
            return node


def _names_in(node: ast.AST | None) -> set[str]:
    if node is None:
        return set()
    found = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    for n in ast.walk(node):  # a string annotation ("acme_client.ClientV2")
        if isinstance(n, ast.Constant) and isinstance(n.value, str):
            with contextlib.suppress(SyntaxError):
                found |= _names_in(ast.parse(n.value, mode="eval"))
    return found


def _target_names(target: ast.expr) -> set[str]:
    return {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}


class _Checker:
    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.imported: set[str] = set()
        self.names: set[str] = set()
        self.functions: set[str] = set()
        self.classes: set[str] = set()
        self.problems: list[tuple[int, str]] = []

    # -- the acme names --------------------------------------------------------------------------

    def _is_acme(self, node: ast.expr, in_acme_class: bool) -> bool:
        while True:
            if isinstance(node, ast.Attribute | ast.Subscript):
                node = node.value
            elif isinstance(node, ast.Call):
                func = node.func
                called = (
                    func.attr
                    if isinstance(func, ast.Attribute)
                    else func.id
                    if isinstance(func, ast.Name)
                    else None
                )
                if called in self.functions:  # returns something annotated as acme
                    return True
                node = func
            elif isinstance(node, ast.Name):
                return node.id in self.names or (
                    in_acme_class and node.id in ("self", "cls", "super")
                )
            else:
                return False

    def _collect_imports(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if _from_library(alias.name):
                        self.imported.add(alias.asname or alias.name.split(".")[0])
                        if any(_private(p) for p in alias.name.split(".")):
                            self.problems.append((node.lineno, f"import {alias.name}"))
            elif isinstance(node, ast.ImportFrom) and _from_library(node.module):
                for alias in node.names:
                    self.imported.add(alias.asname or alias.name)
                    if _private(alias.name) or any(
                        _private(p) for p in str(node.module).split(".")
                    ):
                        self.problems.append(
                            (node.lineno, f"from {node.module} import {alias.name}")
                        )
        self.names |= self.imported

    def _propagate(self) -> None:
        changed = True
        while changed:
            before = (len(self.names), len(self.functions), len(self.classes))
            self._visit(self.tree, in_acme_class=False, report=False)
            changed = before != (len(self.names), len(self.functions), len(self.classes))

    # -- one walk, used to propagate and then to report --------------------------------------------

    def _visit(self, node: ast.AST, *, in_acme_class: bool, report: bool) -> None:
        if isinstance(node, ast.ClassDef):
            acme_class = any(self._is_acme(b, False) for b in node.bases)
            if acme_class:
                self.classes.add(node.name)
                self.names.add(node.name)
                if report:
                    self.problems.append(
                        (node.lineno, f"class {node.name} subclasses an acme/josepy class")
                    )
            for child in node.body:
                if (
                    report
                    and acme_class
                    and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                    and _private(child.name)
                ):
                    self.problems.append(
                        (child.lineno, f"{node.name}.{child.name} overrides an internal")
                    )
                self._visit(child, in_acme_class=acme_class, report=report)
            for expr in (*node.bases, *node.decorator_list):
                self._visit(expr, in_acme_class=in_acme_class, report=report)
            return
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if _names_in(node.returns) & self.names:
                self.functions.add(node.name)
            args = node.args
            for arg in (
                *args.posonlyargs,
                *args.args,
                *args.kwonlyargs,
                *(a for a in (args.vararg, args.kwarg) if a),
            ):
                if _names_in(arg.annotation) & self.names:
                    self.names.add(arg.arg)
        elif isinstance(node, ast.AnnAssign):
            if isinstance(node.target, ast.Name) and (
                _names_in(node.annotation) & self.names
                or (node.value is not None and self._is_acme(node.value, in_acme_class))
            ):
                self.names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            if self._is_acme(node.value, in_acme_class):
                for target in node.targets:
                    self.names |= _target_names(target)
            if report:
                for target in node.targets:
                    self._monkeypatch(target)
        elif isinstance(node, ast.AugAssign) and report:
            self._monkeypatch(node.target)
        elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            if self._is_acme(node.iter, in_acme_class):
                self.names |= _target_names(node.target)
        elif isinstance(node, ast.NamedExpr):
            if self._is_acme(node.value, in_acme_class):
                self.names.add(node.target.id)
        elif report and isinstance(node, ast.Attribute):
            if _private(node.attr) and self._is_acme(node.value, in_acme_class):
                self.problems.append((node.lineno, f"{ast.unparse(node)}"))
        elif report and isinstance(node, ast.Call):
            func = node.func
            if (
                isinstance(func, ast.Name)
                and func.id in ("getattr", "setattr", "hasattr", "delattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
                and _private(node.args[1].value)
                and self._is_acme(node.args[0], in_acme_class)
            ):
                self.problems.append((node.lineno, ast.unparse(node)))
        for child in ast.iter_child_nodes(node):
            self._visit(child, in_acme_class=in_acme_class, report=report)

    def _monkeypatch(self, target: ast.expr) -> None:
        for node in ast.walk(target):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                root = _root(node)
                if isinstance(root, ast.Name) and root.id in self.imported:
                    self.problems.append((node.lineno, f"assigns {ast.unparse(node)}"))

    def run(self) -> list[tuple[int, str]]:
        self._collect_imports()
        if not self.imported:
            return self.problems
        self._propagate()
        self._visit(self.tree, in_acme_class=False, report=True)
        return sorted(set(self.problems))


def private_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) for each use of private acme/josepy API the heuristic finds in ``source``."""
    return _Checker(ast.parse(source)).run()


def test_no_private_acme_api_outside_the_adapter() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path == ADAPTER:
            continue
        found += [
            f"{path.relative_to(SRC)}:{line}: {what}"
            for line, what in private_uses(path.read_text())
        ]
    assert not found, (
        "private acme/josepy API outside core/issuers/acme_adapter.py "
        "(move it into the adapter):\n" + "\n".join(found)
    )


def test_the_check_sees_the_adapters_own_uses() -> None:
    """The adapter is where the private calls are: the heuristic must see them there (else it
    would pass whatever acme.py did)."""
    whats = {what for _line, what in private_uses(ADAPTER.read_text())}
    expected = {
        "client._post",
        "client._post_as_get",
        "client._authzr_from_response",
        "client._get_links",
        "super()._send_request",
        "self._post_once",
        "_Network._send_request overrides an internal",
    }
    assert expected <= whats, expected - whats


@pytest.mark.parametrize(
    "source",
    [
        # an annotated parameter, as in the former acme.py
        "from acme import client as acme_client\n"
        "def f(client: acme_client.ClientV2, url: str):\n    return client._post(url, None)\n",
        # an instance from a method whose return annotation is an acme class
        "from acme import client as acme_client\n"
        "class C:\n"
        "    def client(self) -> acme_client.ClientV2: ...\n"
        "    def go(self):\n        client = self.client()\n        client._post_as_get('u')\n",
        # a direct constructor call, and a bound method passed as a value
        "from acme.client import ClientV2\nc = ClientV2(d, n)\ncall(c._post, 'u')\n",
        # overriding an internal in a subclass, and super() into it
        "from acme import client\nclass N(client.ClientNetwork):\n"
        "    def _send_request(self, *a):\n        return super()._send_request(*a)\n",
        # subclassing a library message to add a field
        "import josepy as jose\nfrom acme import messages\n"
        "class O(messages.NewOrder):\n    replaces = jose.field('replaces')\n",
        # a private module-level name and a private module
        "import josepy as jose\nx = jose._private_helper()\n",
        "from acme._internal import thing\n",
        "from acme.client import _renewal_info_path_component\n",
        # getattr with a private name, monkey-patching
        "from acme import messages\nx = getattr(messages.NewOrder, '_fields')\n",
        "from acme import client\nclient.ClientV2.new_order = lambda *a: None\n",
    ],
)
def test_the_check_finds(source: str) -> None:
    assert private_uses(source)


@pytest.mark.parametrize(
    "source",
    [
        "from acme import client as acme_client\n"
        "class C:\n    def __init__(self):\n        self._lock = 1\n"
        "    def go(self, c: acme_client.ClientV2):\n        self._lock\n        c.net.key\n",
        "import requests\nrequests.Session()._private\n",
        "import josepy as jose\nclass K:\n    def _mine(self): ...\nk = jose.JWK\n",
    ],
)
def test_the_check_passes(source: str) -> None:
    assert private_uses(source) == []
