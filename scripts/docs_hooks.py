"""MkDocs hooks of the documentation site (`hooks:` in mkdocs.yml); nothing here is part of the package.

* `cli.md` is generated at build time from the typer app (`edge_sent.cli:app`) with typer's own Markdown renderer
  (what `typer edge_sent.cli utils docs` prints), so the CLI reference cannot drift from the code.
* Files that live outside `docs/` are served as they are: `benchmarks/RESULTS.md` and `benchmarks/DEVICES.md` (written
  beside the scripts that produce their figures; `benchmarks/devices.py --md` regenerates DEVICES.md) become pages at
  the same path, the plots and raw JSON files they link to come with them, and the browser page's screenshot too.
* mkdocstrings (griffe) reads the package from source, but the installed layout maps `train/`, `export/` and
  `runtime/` into `edge_sent` (pyproject's `[tool.setuptools.package-dir]`): a temporary tree of symlinks mirrors that
  mapping (as `scripts/typecheck.sh` does for mypy) and becomes the python handler's search path.

Needs Python 3.11+ (tomllib), like the project's venv.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import tomllib
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
CLI_PAGE = "cli.md"
# repository files served on the site, and where (relative to docs/): benchmarks/ keeps its layout, so the pages'
# relative links (`results.json`, `latency.png`) keep working
REPOSITORY_GLOBS = {
    "benchmarks/*.md": "benchmarks",
    "benchmarks/*.png": "benchmarks",
    "benchmarks/*.json": "benchmarks",
}
REPOSITORY_FILES = {"examples/web/screenshot.png": "assets/screenshot.png"}
CLI_INTRO = (
    "Generated when the site is built, from the typer app itself (`edge_sent.cli:app`, typer's own Markdown "
    "renderer): every command, argument, option and default as `edge-sent COMMAND --help` prints them. "
    "What all commands share (stdout and stderr, `--json`, exit status 2 on a user error) is in "
    "[Getting started](index.md#conventions-of-every-command), and what bad input does in "
    "[Bad input](index.md#bad-input-what-happens).\n\n"
)

_package_tree: Path | None = None


def package_tree(root: Path, destination: Path) -> Path:
    """Symlinks under `destination` that lay the packages out as installed (pyproject's package-dir); returns it."""
    mapping: dict[str, str] = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"
    ]["package-dir"]
    for name, source in sorted(mapping.items()):
        target = destination.joinpath(*name.split("."))
        if "." in name:
            target.unlink(missing_ok=True)  # a top-level entry of the same name, replaced by the mapped package
            target.symlink_to(root / source, target_is_directory=True)
            continue
        target.mkdir(parents=True, exist_ok=True)
        for entry in sorted((root / source).iterdir()):
            if entry.name != "__pycache__":
                (target / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return destination


def repository_files(root: Path) -> dict[Path, str]:
    """Each repository file the site serves -> its path on the site."""
    found = {root / source: uri for source, uri in REPOSITORY_FILES.items()}
    for pattern, folder in REPOSITORY_GLOBS.items():
        found |= {path: f"{folder}/{path.name}" for path in sorted(root.glob(pattern))}
    return found


def cli_reference() -> str:
    """The `edge-sent` reference in Markdown, rendered from the click command typer builds from the app."""
    import typer
    import typer.main
    from typer.cli import get_docs_for_click

    from edge_sent.cli import app

    command = typer.main.get_command(app)
    text = get_docs_for_click(obj=command, ctx=typer.Context(command), name="edge-sent", title="CLI reference")
    title, _, body = text.partition("\n\n")
    return f"{title}\n\n{CLI_INTRO}{body.strip()}\n"


@event_priority(100)  # before mkdocstrings reads its handler configuration
def on_config(config: MkDocsConfig, **_: Any) -> MkDocsConfig:
    global _package_tree
    if _package_tree is None:
        _package_tree = package_tree(ROOT, Path(tempfile.mkdtemp(prefix="edge-sent-docs-")))
    plugin = config.plugins.get("mkdocstrings")
    if plugin is not None:
        handlers: dict[str, Any] = plugin.config["handlers"]
        handlers.setdefault("python", {})["paths"] = [str(_package_tree)]
    return config


def on_files(files: Files, config: MkDocsConfig, **_: Any) -> Files:
    files.append(File.generated(config, CLI_PAGE, content=cli_reference()))
    for source, uri in repository_files(ROOT).items():
        files.append(File.generated(config, uri, abs_src_path=str(source)))
    return files


def on_shutdown(**_: Any) -> None:
    global _package_tree
    if _package_tree is not None:
        shutil.rmtree(_package_tree, ignore_errors=True)
        _package_tree = None
