"""Layering, checked on every run (part of the fast tier): every module under src/certsmith is
parsed with ``ast`` and its imports are held to three rules.

a. No import circle between certsmith's modules.
b. Imports point down or stay in their layer, never up. From the bottom: ``certsmith.errors``,
   ``certsmith.base`` (which may import errors), ``certsmith.core``, ``certsmith.services``,
   ``certsmith.cli`` (``certsmith.__main__``, the ``certsmith`` package itself and any other
   top-level module count as cli).
c. The name ``FileStore`` appears nowhere but in the ``certsmith.base.store`` package and the
   composition root ``certsmith.services.root``: everyone else opens a store through
   ``open_store`` and sees only the ``Store`` protocol.

Every import counts: module level, inside functions (a deferred import hides a circle from the
interpreter, not from the design) and under ``if TYPE_CHECKING:``. The TYPE_CHECKING ones count
for the circle check too, not only for layering: such a circle cannot fail at import time, but
the two modules still cannot be read, typed or changed one without the other, and that knot is
what the rule is about (server.py and upstream.py of the proxy were tied exactly that way). An
edge goes to the module actually imported: ``import a.b.c`` to ``a.b.c``; ``from a.b import c``
to ``a.b.c`` when that is a module, else to ``a.b``. Importing a submodule does not add an edge
to its package's ``__init__``, so a package importing its own submodules is no circle by itself.
``importlib.import_module("certsmith...")`` with a constant name counts as an import as well.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
TOP = "certsmith"

# Layers from the bottom; a module's layer is that of the longest prefix listed here, and
# anything else under certsmith (the package itself, __main__, other top-level modules) is cli.
LAYERS: dict[str, int] = {
    "certsmith.errors": 0,
    "certsmith.base": 1,
    "certsmith.core": 2,
    "certsmith.services": 3,
    "certsmith.cli": 4,
}
LAYER_NAMES = {0: "errors", 1: "base", 2: "core", 3: "services", 4: "cli"}
CLI = 4

FILESTORE = "FileStore"
FILESTORE_HOME = "certsmith.base.store"  # the package, and every module in it
COMPOSITION_ROOT = "certsmith.services.root"


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the module actually imported
    line: int
    type_checking: bool  # under ``if TYPE_CHECKING:``

    def where(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool
    tree: ast.Module


def module_name(root: Path, path: Path) -> tuple[str, bool]:
    """``root/certsmith/a/b.py`` -> ``certsmith.a.b``; ``.../a/__init__.py`` -> ``certsmith.a``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def load(root: Path, top: str = TOP) -> dict[str, Module]:
    """Every module of the package ``top`` under ``root`` (a src directory), parsed."""
    modules: dict[str, Module] = {}
    for path in sorted((root / top).rglob("*.py")):
        name, is_package = module_name(root, path)
        modules[name] = Module(
            name, path, is_package, ast.parse(path.read_text(encoding="utf-8"), str(path))
        )
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, type_checking: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node below ``node``, with whether it sits in the body of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        yield child, type_checking
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield stmt, True
                yield from _walk(stmt, True)
            for stmt in child.orelse:
                yield stmt, type_checking
                yield from _walk(stmt, type_checking)
        else:
            yield from _walk(child, type_checking)


def _package_of(module: Module) -> str:
    return module.name if module.is_package else module.name.rpartition(".")[0]


def imports(module: Module, known: set[str], top: str = TOP) -> list[Import]:
    """The imports of ``module`` that land in the package ``top``, each resolved to the module
    actually imported (``known``: the names of every module in the tree)."""
    found: list[Import] = []

    def add(target: str, node: ast.AST, tc: bool) -> None:
        if target == top or target.startswith(top + "."):
            found.append(Import(module.name, target, getattr(node, "lineno", 0), tc))

    for node, tc in _walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node, tc)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(module)
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in known else base, node, tc)
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (
                    isinstance(node.func, ast.Name)
                    and node.func.id in ("import_module", "__import__")
                )
            )
        ):
            add(node.args[0].value, node, tc)
    return found


def graph(modules: dict[str, Module], top: str = TOP) -> list[Import]:
    known = set(modules)
    return [imp for m in modules.values() for imp in imports(m, known, top)]


# -- a. circles ------------------------------------------------------------------------------------


def cycles(edges: list[Import]) -> list[list[str]]:
    """One circle per strongly connected component that has one, as ``[a, b, ..., a]``."""
    succ: dict[str, set[str]] = {}
    for e in edges:
        succ.setdefault(e.source, set()).add(e.target)
        succ.setdefault(e.target, set())
    # Tarjan's algorithm, iterative (no recursion limit to meet on a deep tree).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[set[str]] = []
    for start in sorted(succ):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(succ[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp: set[str] = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        comp.add(member)
                        if member == node:
                            break
                    if len(comp) > 1 or node in succ[node]:
                        components.append(comp)
            elif nxt not in index:
                index[nxt] = low[nxt] = len(index)
                stack.append(nxt)
                on_stack.add(nxt)
                work.append((nxt, iter(sorted(succ[nxt]))))
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
    return [_circle_in(comp, succ) for comp in components]


def _circle_in(comp: set[str], succ: dict[str, set[str]]) -> list[str]:
    """A shortest circle through the smallest-named module of a strongly connected component."""
    start = min(comp)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(succ[node] & comp):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    raise AssertionError(f"no circle in component {sorted(comp)}")  # pragma: no cover


def circle_problems(edges: list[Import]) -> list[str]:
    lines = {(e.source, e.target): e.line for e in edges}
    out = []
    for circle in cycles(edges):
        steps = ", ".join(
            f"{a} imports {b} (line {lines[a, b]})" for a, b in itertools.pairwise(circle)
        )
        out.append(f"import circle: {' -> '.join(circle)}: {steps}")
    return out


# -- b. layers -------------------------------------------------------------------------------------


def layer(module: str) -> int:
    best = ""
    for prefix in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    return LAYERS[best] if best else CLI


def upward_problems(edges: list[Import]) -> list[str]:
    out = []
    for e in edges:
        src, dst = layer(e.source), layer(e.target)
        if dst > src:
            tc = " (under TYPE_CHECKING)" if e.type_checking else ""
            out.append(
                f"upward import at {e.where()}{tc}: {e.source} ({LAYER_NAMES[src]}) "
                f"imports {e.target} ({LAYER_NAMES[dst]})"
            )
    return out


# -- c. FileStore ----------------------------------------------------------------------------------


def _names_filestore(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id == FILESTORE
    if isinstance(node, ast.Attribute):
        return node.attr == FILESTORE
    if isinstance(node, ast.alias):
        return FILESTORE in (node.name.rpartition(".")[2], node.asname)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        # a name spelt as a string (an annotation, getattr(module, "FileStore")), not prose
        return node.value.rpartition(".")[2] == FILESTORE
    return False


def filestore_problems(modules: dict[str, Module]) -> list[str]:
    out = []
    for m in modules.values():
        if (
            m.name == FILESTORE_HOME
            or m.name.startswith(FILESTORE_HOME + ".")
            or m.name == COMPOSITION_ROOT
        ):
            continue
        for node in ast.walk(m.tree):
            if _names_filestore(node):
                out.append(
                    f"{m.name}:{getattr(node, 'lineno', '?')} names {FILESTORE}: only "
                    f"{FILESTORE_HOME} and {COMPOSITION_ROOT} may; use open_store() "
                    f"and the Store protocol"
                )
    return out


# -- the real tree ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real() -> tuple[dict[str, Module], list[Import]]:
    modules = load(SRC)
    return modules, graph(modules)


def test_the_checker_sees_the_tree(real: tuple[dict[str, Module], list[Import]]) -> None:
    """Guards the checks below against passing on nothing (a wrong path, a resolver bug)."""
    modules, edges = real
    assert {"certsmith.errors", "certsmith.base.store", "certsmith.cli.main"} <= set(modules)
    assert len(edges) > 100
    assert {e.target for e in edges if e.source == "certsmith.__main__"} == {"certsmith.cli.main"}


def test_no_import_circles(real: tuple[dict[str, Module], list[Import]]) -> None:
    problems = circle_problems(real[1])
    assert not problems, "\n".join(["modules of certsmith import each other:", *problems])


def test_imports_point_down(real: tuple[dict[str, Module], list[Import]]) -> None:
    problems = upward_problems(real[1])
    assert not problems, "\n".join(
        ["imports must point down (cli -> services -> core -> base -> errors):", *problems]
    )


def test_filestore_only_in_the_store_and_the_composition_root(
    real: tuple[dict[str, Module], list[Import]],
) -> None:
    problems = filestore_problems(real[0])
    assert not problems, "\n".join(problems)


# -- the checker itself, on synthetic trees --------------------------------------------------------


def make_tree(root: Path, files: dict[str, str]) -> dict[str, Module]:
    """Writes ``files`` (path under root -> source) plus any missing ``__init__.py``; loads it."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for directory in [root / TOP, *(root / TOP).rglob("*")]:
        if directory.is_dir() and not (directory / "__init__.py").exists():
            (directory / "__init__.py").write_text("")
    return load(root)


def test_a_circle_is_found_with_its_modules(tmp_path: Path) -> None:
    modules = make_tree(
        tmp_path,
        {
            "certsmith/core/a.py": "from certsmith.core import b\n",
            "certsmith/core/b.py": "def f():\n    from certsmith.core.c import x\n",
            "certsmith/core/c.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    import certsmith.core.a\nx = 1\n",
            "certsmith/core/d.py": "from certsmith.core import a\n",  # into the circle, not in it
        },
    )
    problems = circle_problems(graph(modules))
    assert len(problems) == 1, problems
    assert problems[0].startswith(
        "import circle: certsmith.core.a -> certsmith.core.b -> certsmith.core.c"
        " -> certsmith.core.a:"
    )
    assert "certsmith.core.d" not in problems[0]


def test_a_relative_import_circle_is_found(tmp_path: Path) -> None:
    modules = make_tree(
        tmp_path,
        {
            "certsmith/services/p/server.py": "from .upstream import Pool\n",
            "certsmith/services/p/upstream.py": "from . import server\n",
        },
    )
    assert cycles(graph(modules)) == [
        [
            "certsmith.services.p.server",
            "certsmith.services.p.upstream",
            "certsmith.services.p.server",
        ]
    ]


def test_a_package_importing_its_submodules_is_no_circle(tmp_path: Path) -> None:
    modules = make_tree(
        tmp_path,
        {
            "certsmith/base/store/__init__.py": "from certsmith.base.store.fs import FileStore\n"
            "from . import base\n",
            "certsmith/base/store/fs.py": "from certsmith.base.store.base import Store\n"
            "from certsmith.base.store import base\n",
            "certsmith/base/store/base.py": "import certsmith.errors\n",
            "certsmith/errors.py": "",
        },
    )
    edges = graph(modules)
    assert ("certsmith.base.store.fs", "certsmith.base.store.base") in {
        (e.source, e.target) for e in edges
    }
    assert circle_problems(edges) == []
    # ... but a submodule taking a name from its package's __init__ that imports it is one
    (tmp_path / "certsmith/base/store/base.py").write_text(
        "from certsmith.base.store import fs\nfrom certsmith.base.store import X\n"
    )
    assert cycles(graph(load(tmp_path))) == [
        ["certsmith.base.store", "certsmith.base.store.base", "certsmith.base.store"]
    ]


def test_an_upward_import_is_found(tmp_path: Path) -> None:
    modules = make_tree(
        tmp_path,
        {
            "certsmith/errors.py": "import certsmith.base.model\n",
            "certsmith/base/model.py": "from certsmith import errors\n"  # down: fine
            "from certsmith.base import keys\n",  # same layer: fine
            "certsmith/base/keys.py": "def f():\n    from certsmith.core.deploy import x\n",
            "certsmith/core/deploy.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from certsmith.services.manager import M\n",
            "certsmith/services/manager.py": "import certsmith.cli.main\n",
            "certsmith/cli/main.py": "import certsmith.services.manager\n",
            "certsmith/__main__.py": "from certsmith.cli.main import main\n",
            "certsmith/errors_extra.py": "",  # top level: counts as cli
        },
    )
    problems = upward_problems(graph(modules))
    assert problems == [
        "upward import at certsmith.base.keys:2: certsmith.base.keys (base) imports "
        "certsmith.core.deploy (core)",
        "upward import at certsmith.core.deploy:3 (under TYPE_CHECKING): certsmith.core.deploy "
        "(core) imports certsmith.services.manager (services)",
        "upward import at certsmith.errors:1: certsmith.errors (errors) imports "
        "certsmith.base.model (base)",
        "upward import at certsmith.services.manager:1: certsmith.services.manager (services) "
        "imports certsmith.cli.main (cli)",
    ]
    assert layer("certsmith.errors_extra") == layer("certsmith.__main__") == CLI


def test_filestore_outside_the_store_is_found(tmp_path: Path) -> None:
    modules = make_tree(
        tmp_path,
        {
            "certsmith/base/store/__init__.py": "from certsmith.base.store.fs import FileStore\n",
            "certsmith/base/store/fs.py": "class FileStore: ...\n",
            "certsmith/services/root.py": "from certsmith.base.store import FileStore\n",
            "certsmith/services/manager.py": "from certsmith.base import store\n"
            "s = store.FileStore('/x')\n",
            "certsmith/core/deploy.py": "def f(s: 'FileStore') -> None:\n"
            "    '''Works on any Store, not only a FileStore.'''\n",
            "certsmith/cli/main.py": "from certsmith.base.store import FileStore as FS\n",
        },
    )
    problems = filestore_problems(modules)
    assert [p.partition(" ")[0] for p in problems] == [
        "certsmith.cli.main:1",
        "certsmith.core.deploy:1",
        "certsmith.services.manager:2",
    ]
