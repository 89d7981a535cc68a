"""Every module imports only what its install flavour declares: the base dependencies, plus its own extra's.

A module that runs in the plain install (the runtime, the base, the runtime commands) may import a package only if
pyproject.toml lists it in `dependencies`; a module of an extra (serve, ray, strings, openvino, train) may also
import that extra's packages. A base module may reach into an extra lazily only where OPTIONAL says so (it then
stops with a one-line error naming the extra). Imports inside functions count: the runtime once imported
platformdirs lazily on its first load while only the train extra declared it."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import tomllib

from tests.conftest import ROOT

SOURCES = {"src/edge_sent": "edge_sent", "runtime": "edge_sent.runtime", "train": "edge_sent.train", "export": ""}
# source path prefix -> the extra whose install runs it (anything else runs in the plain install)
EXTRA_OF = {
    "runtime/serve/": "serve",
    "src/edge_sent/cli/serve_cmd.py": "serve",
    "runtime/scoring/on_ray.py": "ray",
    "runtime/strings.py": "strings",
    "runtime/openvino_engine.py": "openvino",
    "train/": "train",
    "export/": "train",
    "src/edge_sent/cli/build.py": "train",
}
# (module, imported package) -> the extra a base module reaches into lazily, behind a one-line error naming it
OPTIONAL = {("src/edge_sent/readers.py", "pyarrow"): "parquet"}
# import names that a declared requirement provides as part of its own API (FastAPI is Starlette + pydantic)
COMES_WITH = {"starlette": "fastapi", "pydantic": "fastapi"}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def declared() -> dict[str, set[str]]:
    """'base' and each extra -> the distribution names pyproject.toml lists for it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    found = {"base": {_name(r) for r in project["dependencies"]}}
    for extra, requirements in project["optional-dependencies"].items():
        found[extra] = {_name(r) for r in requirements}
    return found


def third_party_imports(path: Path) -> set[str]:
    """Top-level names of every absolute import in the file, module level or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("edge_sent", "__future__")}


def flavour_of(relative: str) -> str:
    return next((extra for prefix, extra in EXTRA_OF.items() if relative.startswith(prefix)), "base")


def undeclared_imports() -> list[str]:
    deps, distributions = declared(), packages_distributions()
    problems = []
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            flavour = flavour_of(relative)
            allowed = deps["base"] | deps.get(flavour, set())
            for name in sorted(third_party_imports(path)):
                providers = {d.lower().replace("_", "-") for d in distributions.get(name, [name])}
                providers |= {COMES_WITH[name]} if name in COMES_WITH else set()
                extra = OPTIONAL.get((relative, name))
                if providers & allowed or (extra and providers & deps[extra]):
                    continue
                problems.append(f"{relative} imports {name} ({'/'.join(sorted(providers))}), not in {flavour}")
    return problems


def test_every_import_is_declared_by_its_flavour():
    assert undeclared_imports() == []


def test_the_check_sees_a_lazy_import_of_another_extra(tmp_path, monkeypatch):
    """Planted: a runtime module importing torch inside a function is reported."""
    fake = tmp_path / "runtime"
    fake.mkdir()
    (fake / "probe.py").write_text("def first_load():\n    import torch\n    return torch\n", encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "SOURCES", {"runtime": "edge_sent.runtime"})
    assert undeclared_imports() == ["runtime/probe.py imports torch (torch), not in base"]


def test_no_script_folder_module_shadows_a_dependency() -> None:
    """A script folder that goes on sys.path (benchmarks/, put there by its scripts and by tests/test_devices.py)
    must not hold a module named like a package the project installs: benchmarks/openvino.py once made `import
    openvino` find the script, so the OpenVINO engine tests ran (and failed) in a venv without OpenVINO."""
    names = set().union(*declared().values()) | set(packages_distributions())
    names = {n.lower().replace("-", "_") for n in names}
    for folder in ("benchmarks", "scripts", "examples"):
        clashes = sorted(p.name for p in (ROOT / folder).rglob("*.py") if p.stem.lower() in names)
        assert not clashes, f"{folder}/ modules named like an installed package: {clashes}"
