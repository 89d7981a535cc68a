"""What the pages users read must not hold, as checks over a Markdown text (used by tests/test_docs.py).

* no work log: the project's work phases, sessions, rounds, issue numbers, commit hashes, "honest account", goals
  marked "not met" (the history lives in CHANGELOG.md and benchmarks/history/, which are not user pages);
* no absolute machine paths (`/work/...`, `/home/...`, `/tmp/...`), in the pages and in the raw JSON they link to;
* no list that MkDocs renders as a paragraph: a list item right under a line of text, without a blank line;
* no link, and no `../` path, that leaves the repository.

Each check returns problems as `FILE:LINE: what`, code blocks included (a command is read too), except the list
rule, which looks at prose only.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the pages users read: the README, the site's pages, and the benchmark pages the site serves
USER_PAGES = ("README.md", "docs/**/*.md", "benchmarks/*.md")
RAW_FIGURES = ("benchmarks/*.json",)

WORK_LOG = re.compile(
    r"\bissues?[ -]?#?\d+"
    r"|(?<![\w&/#])#\d+\b"
    r"|(?<![\w-])rounds? \d"
    r"|\bphases?\b"
    r"|\bhonest account"
    r"|\b(?:first|second|third|fourth|fifth|sixth|previous|earlier|later|last|next|this|that) session\b"
    r"|\bsession's run\b"
    r"|\bnot met\b"
    r"|\bgoals?\b"
    r"|\bcommit [`']?[0-9a-f]{7,40}\b"
    r"|(?<![\w-])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}(?![\w-])",
    re.IGNORECASE,
)
# a hash-like word that is not a commit: hex colours and sha256 digests (64 hex) are not matched by the rule above
ABSOLUTE_PATH = re.compile(r"(?<![\w.~$}-])/(?:work|home|root|tmp|Users|mnt|srv|scratch)(?:/|\b)")
LIST_ITEM = re.compile(r"^\s{0,3}(?:[*+-]|\d{1,3}[.)])\s+\S")
HEADING = re.compile(r"^\s{0,3}#{1,6}\s")
FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)


def user_pages(root: Path = ROOT) -> list[Path]:
    return sorted({path for pattern in USER_PAGES for path in root.glob(pattern)})


def raw_figures(root: Path = ROOT) -> list[Path]:
    return sorted({path for pattern in RAW_FIGURES for path in root.glob(pattern)})


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{line}"


def work_log(path: Path, text: str) -> list[str]:
    """Words of the project's history: they belong in CHANGELOG.md or benchmarks/history/."""
    return [
        f"{where(path, number)}: work log {found[0]!r} (history goes to CHANGELOG.md or benchmarks/history/)"
        for number, line in enumerate(text.splitlines(), 1)
        for found in WORK_LOG.finditer(line)
    ]


def absolute_paths(path: Path, text: str) -> list[str]:
    """Paths of the machine the page was written on: write them relative to the repository."""
    return [
        f"{where(path, number)}: absolute machine path {line[found.start() : found.start() + 40]!r}"
        for number, line in enumerate(text.splitlines(), 1)
        for found in ABSOLUTE_PATH.finditer(line)
    ]


def lists_without_blank_line(path: Path, text: str) -> list[str]:
    """A list item whose paragraph starts with text: GitHub renders a list, MkDocs (Python-Markdown) a paragraph
    with literal `*`. A list may follow a heading or another item; anything else needs a blank line first."""
    problems = []
    first: str | None = None  # the first line of the current paragraph, None between paragraphs
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        opening = FENCE.match(line)
        if fence is not None:
            if (
                opening
                and opening[1][0] == fence[0]
                and len(opening[1]) >= len(fence)
                and not line.strip(fence[0] + " ")
            ):
                fence = None
            continue
        if opening:
            fence, first = opening[1], None
            continue
        if not line.strip():
            first = None
        elif HEADING.match(line):
            first = None  # a heading is a block of its own
        elif first is None:
            first = line
        elif LIST_ITEM.match(line) and not LIST_ITEM.match(first) and not first.lstrip().startswith(("|", "<")):
            problems.append(f"{where(path, number)}: a list right under text: put a blank line before it")
            first = line
    return problems


def outside_links(path: Path, text: str, root: Path = ROOT) -> list[str]:
    """Relative links, and `../` paths in code, that point outside the repository (or nowhere in it). Web links
    (`https://...`) are allowed; a link into the author's machine is not."""
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        links = [target for match in LINK.finditer(line) for target in match.groups() if target]
        spans = [span.split()[0] for span in CODE_SPAN.findall(line) if span.startswith("../")]
        for target, is_link in [(link, True) for link in links] + [(span, False) for span in spans]:
            relative = target.split("#", 1)[0]
            if EXTERNAL.match(target) or not relative:
                continue
            resolved = (path.parent / relative).resolve()
            inside = resolved.is_relative_to(root.resolve())
            # the site's own links are checked by `mkdocs build --strict` (some pages are generated at build time)
            checked_by_mkdocs = is_link and inside and path.resolve().is_relative_to(root.resolve() / "docs")
            if not inside or not (resolved.exists() or checked_by_mkdocs):
                problems.append(f"{where(path, number)}: {target!r} points outside the repository (or nowhere)")
    return problems


def page_problems(path: Path, text: str, root: Path = ROOT) -> list[str]:
    return (
        work_log(path, text)
        + absolute_paths(path, text)
        + lists_without_blank_line(path, text)
        + outside_links(path, text, root)
    )
