"""Read texts (and labels) from txt, TSV, CSV and JSONL files: one code path for train, eval and predict.

Errors name the file and the line. Invalid UTF-8 is an error (never silently replaced).
TSV is read with quoting disabled: ChnSentiCorp texts contain `"` characters.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edge_sent.errors import EdgeSentError

FORMATS = ("txt", "tsv", "csv", "jsonl")
csv.field_size_limit(sys.maxsize)


@dataclass(frozen=True)
class Record:
    """One row of an input file: its 1-based line number, its text and (when asked for) its label."""

    line: int
    text: str
    label: str | None = None


def detect_format(path: Path | str, fmt: str | None = None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise EdgeSentError(f"unknown file format {fmt!r} (choose from {', '.join(FORMATS)})")
        return fmt
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in ("json", "ndjson"):
        return "jsonl"
    if suffix in FORMATS:
        return suffix
    return "txt"


def _decoded_lines(path: Path, lines: Iterable[bytes]) -> Iterator[str]:
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EdgeSentError(f"{path}:{number}: invalid UTF-8 ({exc.reason} at byte {exc.start})") from None
        if number == 1:
            text = text.removeprefix("\ufeff")
        yield text


def _open_lines(path: Path | str) -> tuple[str, Iterable[bytes]]:
    if str(path) == "-":
        return "<stdin>", sys.stdin.buffer
    p = Path(path)
    if not p.is_file():
        raise EdgeSentError(f"{p}: file not found")
    return str(p), open(p, "rb")


def read_records(
    path: Path | str,
    *,
    text_field: str = "text_a",
    label_field: str | None = None,
    fmt: str | None = None,
) -> Iterator[Record]:
    """Yield the records of a file, streaming (bounded memory). `label_field=None` reads texts only."""
    kind = detect_format(path, fmt) if str(path) != "-" else (fmt or "txt")
    name, raw = _open_lines(path)
    lines = _decoded_lines(Path(name), raw)
    try:
        if kind == "txt":
            if label_field is not None:
                raise EdgeSentError(f"{name}: a .txt file has one text per line and no labels; use tsv, csv or jsonl")
            for number, line in enumerate(lines, start=1):
                yield Record(number, line.rstrip("\r\n"))
        elif kind == "jsonl":
            yield from _jsonl(name, lines, text_field, label_field)
        else:
            yield from _delimited(name, lines, kind, text_field, label_field)
    finally:
        close = getattr(raw, "close", None)
        if close is not None and raw is not sys.stdin.buffer:
            close()


def _delimited(
    name: str, lines: Iterator[str], kind: str, text_field: str, label_field: str | None
) -> Iterator[Record]:
    if kind == "tsv":
        reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(lines, strict=True)  # a stray or unclosed quote is an error, not a merged row
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise EdgeSentError(f"{name}:1: malformed header ({exc})") from None
    header = [h.strip() for h in header]
    wanted = [text_field] + ([label_field] if label_field else [])
    missing = [w for w in wanted if w not in header]
    if missing:
        raise EdgeSentError(f"{name}: no column {missing[0]!r}; columns found: {', '.join(header) or '(none)'}")
    t_idx = header.index(text_field)
    l_idx = header.index(label_field) if label_field else None
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise EdgeSentError(f"{name}:{reader.line_num}: malformed row ({exc})") from None
        if not row:  # a blank line
            continue
        if len(row) != len(header):
            raise EdgeSentError(f"{name}:{reader.line_num}: malformed row: {len(row)} fields, header has {len(header)}")
        label = row[l_idx].strip() if l_idx is not None else None
        if l_idx is not None and not label:
            raise EdgeSentError(f"{name}:{reader.line_num}: empty label")
        yield Record(reader.line_num, row[t_idx], label)


def _jsonl(name: str, lines: Iterator[str], text_field: str, label_field: str | None) -> Iterator[Record]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EdgeSentError(f"{name}:{number}: malformed JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise EdgeSentError(f"{name}:{number}: expected a JSON object, got {type(obj).__name__}")
        if text_field not in obj:
            raise EdgeSentError(f"{name}:{number}: no key {text_field!r}; keys found: {', '.join(obj) or '(none)'}")
        text = obj[text_field]
        if not isinstance(text, str):
            raise EdgeSentError(f"{name}:{number}: {text_field!r} must be a string, got {type(text).__name__}")
        label = None
        if label_field is not None:
            if label_field not in obj:
                raise EdgeSentError(
                    f"{name}:{number}: no key {label_field!r}; keys found: {', '.join(obj) or '(none)'}"
                )
            raw = obj[label_field]
            if isinstance(raw, bool) or not isinstance(raw, (str, int)):
                raise EdgeSentError(f"{name}:{number}: label must be a string or an integer, got {raw!r}")
            label = str(raw).strip()
            if not label:
                raise EdgeSentError(f"{name}:{number}: empty label")
        yield Record(number, text, label)
