"""The map of the house (docs/architecture.md, "What may import what"), enforced: each folder imports only the
layers below it, no two modules import each other (directly or round a loop), no module is over ~300 lines and no
function body over 80 (a typer command's option declarations are its signature, not its body)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT

# source folder -> the package it installs as (pyproject.toml's package-dir)
PACKAGES = {
    "src/edge_sent": "edge_sent",
    "runtime": "edge_sent.runtime",
    "train": "edge_sent.train",
    "export": "edge_sent.export",
}
# layer -> the layers it may import (besides itself); the base is every edge_sent module outside these folders
MAY_IMPORT = {
    "base": set(),
    "runtime": {"base"},
    "train": {"base"},
    "export": {"base", "runtime", "train"},
    "cli": {"base", "runtime", "train", "export"},
}
MAX_MODULE_LINES = 310
MAX_BODY_LINES = 80


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module


def modules(root: Path = ROOT) -> Iterator[Module]:
    for folder, package in PACKAGES.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = path.relative_to(root / folder).with_suffix("").parts
            name = ".".join([package, *parts]).removesuffix(".__init__")
            yield Module(name, path, ast.parse(path.read_text(encoding="utf-8")))


def layer(module: str) -> str:
    for prefix in ("runtime", "train", "export", "cli"):
        if module == f"edge_sent.{prefix}" or module.startswith(f"edge_sent.{prefix}."):
            return prefix
    return "cli" if module == "edge_sent.__main__" else "base"


def imports(module: Module, known: set[str]) -> set[str]:
    """The edge_sent modules this one imports, at module level or inside functions (`from X import name` counts
    as importing X.name when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("edge_sent"))
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:
                package = module.name.split(".")
                package = package if module.path.name == "__init__.py" else package[:-1]
                base = ".".join([*package[: len(package) - node.level + 1], node.module])
            if base.startswith("edge_sent"):
                subs = {f"{base}.{alias.name}" for alias in node.names} & known
                found.update(subs or {base})
    return {name for name in found if name in known}


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    found = {m.name: m for m in modules(root)}
    return {name: imports(m, set(found)) - {name} for name, m in found.items()}


def layer_violations(edges: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{a} ({layer(a)}) imports {b} ({layer(b)})"
        for a, targets in edges.items()
        for b in targets
        if layer(a) != layer(b) and layer(b) not in MAY_IMPORT[layer(a)]
    )


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), package `__init__` faces excluded."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def long_bodies(root: Path = ROOT) -> list[str]:
    found = []
    for module in modules(root):
        for node in ast.walk(module.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                body = node.body[1:] if ast.get_docstring(node) and len(node.body) > 1 else node.body
                lines = body[-1].end_lineno - body[0].lineno + 1  # type: ignore[operator]
                if lines > MAX_BODY_LINES:
                    found.append(f"{module.path.relative_to(root)}:{node.lineno} {node.name}: {lines} lines")
    return found


def long_modules(root: Path = ROOT) -> list[str]:
    return [
        f"{m.path.relative_to(root)}: {n} lines"
        for m in modules(root)
        if (n := len(m.path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    ]


def test_each_layer_imports_only_the_layers_below_it():
    assert layer_violations(graph()) == []


def test_no_import_cycles():
    edges = {a: {b for b in targets if not b.endswith("__init__")} for a, targets in graph().items()}
    assert cycles(edges) == []


def test_no_long_modules_or_functions():
    assert long_modules() == [] and long_bodies() == []


def test_the_checks_see_what_they_name():
    """Planted: the runtime importing export, a two-module loop, a long body."""
    edges = {"edge_sent.runtime.a": {"edge_sent.export.b"}, "edge_sent.export.b": {"edge_sent.runtime.a"}}
    assert layer_violations(edges) == ["edge_sent.runtime.a (runtime) imports edge_sent.export.b (export)"]
    assert cycles(edges) == [["edge_sent.export.b", "edge_sent.runtime.a"]]
    assert layer("edge_sent.cli.build") == "cli" and layer("edge_sent.contract") == "base"


def test_a_long_body_and_a_long_module_are_seen(tmp_path):
    folder = tmp_path / "runtime"
    folder.mkdir()
    for other in ("src/edge_sent", "train", "export"):
        (tmp_path / other).mkdir(parents=True)
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_BODY_LINES + 1))
    (folder / "long.py").write_text(f'def typer_like(\n    a: int = 1,\n) -> None:\n    """Doc."""\n{body}')
    (folder / "short.py").write_text("def fine():\n" + "".join(body.splitlines(keepends=True)[:MAX_BODY_LINES]))
    assert long_bodies(tmp_path) == [f"runtime/long.py:1 typer_like: {MAX_BODY_LINES + 1} lines"]
    (folder / "big.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    assert long_modules(tmp_path)[0].startswith("runtime/big.py")
