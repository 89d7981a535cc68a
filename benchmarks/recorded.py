"""How the benchmark scripts record their command line and paths in their raw JSON: without the machine's own
folders. A path inside the repository is written relative to it; any other absolute path keeps only its last two
parts (`/scratch/b/tokenizer.json` -> `b/tokenizer.json`), which say what was measured without saying where."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ABSOLUTE = re.compile(r"(?<![\w.~-])/[^\s|,;:\"']+")


def portable_path(path: str | Path) -> str:
    """`path` as the raw figures record it: repository-relative, or its last two parts when outside."""
    text = str(path)
    if not text.startswith("/"):
        return text
    resolved = Path(text).resolve()
    if resolved.is_relative_to(ROOT):
        return str(resolved.relative_to(ROOT)) or "."
    return str(Path(*resolved.parts[-2:])) if len(resolved.parts) > 2 else resolved.name


def command_line(argv: list[str] | None = None) -> str:
    """The script's command line (`python SCRIPT ARGS`), its absolute paths made portable."""
    words = ["python", *(sys.argv if argv is None else argv)]
    return ABSOLUTE.sub(lambda found: portable_path(found[0]), " ".join(words))
