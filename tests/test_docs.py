"""The documentation: every shell and Python example in README.md and docs/ runs (or says why not), the site builds
with `mkdocs build --strict`, its CLI reference names every command, the bundle page names every manifest field, and
the README stays short.

Convention: a fenced `bash`/`sh`/`shell`/`console`/`python` block is run, in page order, in one working directory
per page where `out/bundle` is a copy of the tests' `random:tiny` bundle, `data/` is the repository's data and
`.venv` is this interpreter's environment (its `bin/` first on PATH). A block that must not run says why on the line
right before its fence: `<!-- not run: REASON -->`. Output samples go in `text` blocks.
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.docs_rules import absolute_paths, page_problems, raw_figures, user_pages

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_LIMIT = 10_000  # bytes
RUN_AS = {"bash": "shell", "sh": "shell", "shell": "shell", "console": "shell", "python": "python"}
# other spellings of the same languages: refused, so that no example escapes the check under another name
ALIASES = {"py", "python3", "pycon", "zsh", "shell-session", "shellsession", "bash-session", "terminal", "ipython"}
NOT_RUN = re.compile(r"^\s*<!--\s*not run:(.*?)-->\s*$")
OPENING = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
BLOCK_TIMEOUT = 120  # seconds


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    language: str  # the info string, lower case ("" when none)
    code: str
    not_run: str | None  # the reason, when the line before the fence marks it

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.language in RUN_AS and self.not_run is None


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def parse(path: Path, text: str) -> tuple[list[Block], list[str]]:
    """The fenced blocks of a Markdown text, and the problems of its `not run` markers (FILE:LINE each)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    i = 0
    while i < len(lines):
        opening = OPENING.match(lines[i])
        marker = NOT_RUN.match(lines[i])
        if marker and not (i + 1 < len(lines) and OPENING.match(lines[i + 1])):
            problems.append(f"{where}:{i + 1}: a `not run` marker must be the line right before a fence")
        if not opening:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        closing = re.compile(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = next((j for j in range(i + 1, len(lines)) if closing.match(lines[j])), len(lines))
        code = "\n".join(line if line[:indent].strip() else line[indent:] for line in lines[i + 1 : end])
        previous = NOT_RUN.match(lines[i - 1]) if i > 0 else None
        reason = previous[1].strip() if previous else None
        if previous and not reason:
            problems.append(f"{where}:{i}: `not run` needs a reason: <!-- not run: REASON -->")
        blocks.append(Block(path, i + 1, opening["info"].lower(), code + "\n", reason or None))
        i = end + 1
    return blocks, problems


def collect() -> tuple[list[Block], list[str]]:
    blocks: list[Block] = []
    problems: list[str] = []
    for path in doc_files():
        found, wrong = parse(path, path.read_text(encoding="utf-8"))
        blocks += found
        problems += wrong
    return blocks, problems


def block_problems(blocks: list[Block]) -> list[str]:
    """Blocks that are neither runnable nor marked: no language, another spelling of a runnable one, or code that
    does not even parse (`bash -n`, `compile`)."""
    problems = []
    for block in blocks:
        if not block.language:
            problems.append(f"{block.where}: a fence without a language (`text` for output, `bash`, `python`, ...)")
        elif block.language in ALIASES:
            problems.append(f"{block.where}: `{block.language}`: write bash or python (or mark it not run)")
        elif block.runs and RUN_AS[block.language] == "python":
            try:
                compile(block.code, block.where, "exec")
            except SyntaxError as exc:
                problems.append(f"{block.where}: does not compile: {exc}")
        elif block.runs:
            checked = subprocess.run(["bash", "-n"], input=block.code, capture_output=True, text=True, check=False)
            if checked.returncode:
                problems.append(f"{block.where}: bash -n: {checked.stderr.strip()}")
    return problems


def test_every_block_is_run_or_says_why_not() -> None:
    blocks, problems = collect()
    problems += block_problems(blocks)
    assert not problems, "\n".join(problems)
    assert sum(block.runs for block in blocks) >= 8, "the docs' examples are mostly marked not run"


def test_the_checker_finds_what_is_wrong(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    text = (
        "<!-- not run: starts a server -->\n```bash\nedge-sent serve out/bundle\n```\n\n"
        "<!-- not run: -->\n```bash\ntrue\n```\n"
        "<!-- not run: dangling -->\n\n```python\nprint(1)\n```\n"
        "```\nplain\n```\n```py\nx = (\n```\n"
        "1. a list\n\n   ```python\n   x = (\n   ```\n"
        "```text\n$ edge-sent --help\n```\n"
    )
    blocks, problems = parse(page, text)
    assert [b.line for b in blocks] == [2, 7, 12, 15, 18, 23, 26]
    assert [b.runs for b in blocks] == [False, True, True, False, False, True, False]
    assert problems == [
        f"{page}:6: `not run` needs a reason: <!-- not run: REASON -->",
        f"{page}:10: a `not run` marker must be the line right before a fence",
    ]
    found = block_problems(blocks)
    assert [problem.split(": ", 1)[0].rsplit(":", 1)[1] for problem in found] == ["15", "18", "23"], found


def test_user_pages_read_as_docs() -> None:
    """README, docs/ and the benchmark pages: no work log, no machine path, no list MkDocs renders as a paragraph,
    no link out of the repository; the raw figures they link to hold no machine path either."""
    problems = [found for page in user_pages() for found in page_problems(page, page.read_text(encoding="utf-8"))]
    problems += [found for raw in raw_figures() for found in absolute_paths(raw, raw.read_text(encoding="utf-8"))]
    assert not problems, "\n".join(problems)


PLANTED = {  # a line a user page must not hold -> what the checks say about it
    "Fixed in issue 12.": "work log 'issue 12'",
    "See #29 for the rest.": "work log '#29'",
    "Measured in round 3.": "work log 'round 3'",
    "Done in the second phase.": "work log 'phase'",
    "Honest account: slower.": "work log 'Honest account'",
    "As in the fourth session.": "work log 'fourth session'",
    "The speed-up is not met.": "work log 'not met'",
    "Goal: 2x.": "work log 'Goal'",
    "Before commit 1a2b3c4d.": "work log 'commit 1a2b3c4d'",
    "Raw: `git show b0ebafa^:x.json`.": "work log 'b0ebafa'",
    "Bundle in /work/scratch/bundle.": "absolute machine path '/work/",
    "Run `python /home/me/x.py`.": "absolute machine path '/home/",
    "Written to /tmp/out.": "absolute machine path '/tmp/",
    "Some text\n* an item": "a list right under text",
    "Steps:\n1. first": "a list right under text",
    "See [notes](../../notes.md).": "'../../notes.md' points outside",
    "Cited: `../shared/PROBES.md`.": "'../shared/PROBES.md' points outside",
}
FINE = (
    "An onnxruntime session, `--overload-rounds 8`, sha256 "
    + "ab12" * 16
    + ", [web](https://example.org), [page](other.md), ~/.cache/edge-sent, /usr/bin/chromium.\n\n"
    "Text:\n\n* an item\n* another\n  continued\n\n## Heading\n- right under a heading\n"
    "```text\nout of a fence\n* not a list\n```\n"
)


def test_the_page_checks_find_what_is_wrong(tmp_path: Path) -> None:
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    (page.parent / "other.md").write_text("# other\n")
    assert page_problems(page, FINE, tmp_path) == []
    for line, expected in PLANTED.items():
        found = page_problems(page, f"# Title\n\n{line}\n", tmp_path)
        assert len(found) == 1 and expected in found[0], (line, found)


def undocumented(cls: Any) -> list[str]:
    """The public members (attributes, properties, methods) of a Griffe class without a docstring."""
    return [
        f"{cls.name}.{name}"
        for name, member in cls.members.items()
        if not name.startswith("_") and not member.docstring
    ]


def docs_hooks() -> Any:
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "scripts" / "docs_hooks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_public_attribute_of_the_api_is_documented(tmp_path: Path) -> None:
    import griffe

    tree = docs_hooks().package_tree(ROOT, tmp_path / "tree")
    runtime = griffe.load("edge_sent.runtime", search_paths=[str(tree)])
    missing = undocumented(runtime["Classifier"]) + undocumented(runtime["Prediction"])
    assert not missing, f"document these (a docstring under each attribute, not a # comment): {missing}"
    assert {"labels", "variant", "why", "max_length", "providers"} <= set(runtime["Classifier"].members)
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "planted.py").write_text(
        'class C:\n    """C."""\n\n    def __init__(self) -> None:\n        self.shown = 1\n        """Shown."""\n'
        "        self.hidden = 2  # a comment is not a docstring\n"
    )
    assert undocumented(griffe.load("planted", search_paths=[str(planted)])["C"]) == ["C.hidden"]


def runnable_pages() -> list[Path]:
    return [path for path in doc_files() if any(b.runs for b in parse(path, path.read_text(encoding="utf-8"))[0])]


@pytest.fixture(scope="module")
def docs_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny bundle: the examples can write next to it without touching the session's bundle."""
    copy = tmp_path_factory.mktemp("docs") / "bundle"
    shutil.copytree(tiny_bundle, copy)
    return copy


def workdir(base: Path, bundle: Path) -> Path:
    (base / "out").mkdir(parents=True)
    (base / "out" / "bundle").symlink_to(bundle, target_is_directory=True)
    (base / "data").symlink_to(ROOT / "data", target_is_directory=True)
    (base / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return base


def run_block(block: Block, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env |= {"PYTHONIOENCODING": "utf-8"}
    if RUN_AS[block.language] == "python":
        command = [sys.executable, "-c", block.code]
    else:
        command = ["bash", "-e", "-o", "pipefail", "-c", block.code]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT)


@pytest.mark.parametrize("page", runnable_pages(), ids=lambda path: str(path.relative_to(ROOT)))
def test_examples_run(page: Path, docs_bundle: Path, tmp_path: Path) -> None:
    """A page's runnable blocks, in order, in one working directory (a later block may use an earlier one's files)."""
    cwd = workdir(tmp_path, docs_bundle)
    for block in parse(page, page.read_text(encoding="utf-8"))[0]:
        if not block.runs:
            continue
        done = run_block(block, cwd)
        assert done.returncode == 0, (
            f"{block.where}: exited {done.returncode}\n--- code\n{block.code}--- stdout\n{done.stdout[-3000:]}"
            f"--- stderr\n{done.stderr[-3000:]}"
        )


def command_names() -> list[str]:
    import typer.main

    from edge_sent.cli import app

    return sorted(getattr(typer.main.get_command(app), "commands", {}))


def test_site_builds_strict_with_the_cli_and_api_reference(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = os.environ | {"NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    built = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "WARNING" not in built.stderr, built.stderr
    cli = (site / "cli" / "index.html").read_text(encoding="utf-8")
    names = command_names()
    assert {"train", "export", "predict", "eval", "info", "verify", "serve", "score"} <= set(names)
    missing = [name for name in names if f'id="edge-sent-{name}"' not in cli or f"edge-sent {name}" not in cli]
    assert not missing, f"the CLI reference lacks {missing}"
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("edge_sent.runtime.Classifier", "edge_sent.runtime.Prediction", "predict_iter"):
        assert name in api, name
    shown = html.unescape(re.sub(r"<[^>]+>", "", api))
    # defaults as values (`= 0.98`), not as the constant's name; attributes without `manifest = manifest`
    assert not re.findall(r"= [A-Z][A-Z0-9_]{2,}\b", shown), re.findall(r".{30}= [A-Z][A-Z0-9_]{2,}\b", shown)
    echoed = re.findall(r"^\s*(\w+) = \1\s*$", shown, re.MULTILINE)
    assert not echoed, f"attributes shown as `NAME = NAME`: {echoed}"
    for image in ("benchmarks/latency.png", "benchmarks/serve.png", "assets/screenshot.png"):
        assert (site / image).is_file(), image
    assert (site / "benchmarks" / "RESULTS" / "index.html").is_file()


def test_the_bundle_page_names_every_manifest_field(tiny_bundle: Path) -> None:
    manifest = json.loads((tiny_bundle / "manifest.json").read_text(encoding="utf-8"))
    page = (DOCS / "bundle.md").read_text(encoding="utf-8")
    fields = set(manifest) | {key for variant in manifest["variants"].values() for key in variant}
    assert set(manifest["variants"]["fp32"]) <= fields
    missing = sorted(field for field in fields if f"`{field}`" not in page)
    assert not missing, f"docs/bundle.md does not document these manifest fields: {missing}"


def test_readme_is_short() -> None:
    size = README.stat().st_size
    assert size <= README_LIMIT, f"README.md is {size} bytes (at most {README_LIMIT}: move the rest into docs/)"
