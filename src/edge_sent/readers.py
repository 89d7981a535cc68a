"""Read texts (and labels) from txt, TSV, CSV, JSONL and Parquet files: one code path for train, eval and predict.

Errors name the file and the line (Parquet: the row, counted from 0 as pyarrow and pandas do). Invalid UTF-8
is an error (never silently replaced). TSV is read with quoting disabled: ChnSentiCorp texts contain `"`
characters. Parquet needs the optional `parquet` extra (pyarrow) and is read in batches of rows, never whole.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_sent.errors import EdgeSentError

FORMATS = ("txt", "tsv", "csv", "jsonl", "parquet")
PARQUET_BATCH_ROWS = 4096  # rows decoded at a time: memory stays bounded whatever the row groups' size
csv.field_size_limit(sys.maxsize)


@dataclass(frozen=True)
class Record:
    """One row of an input file: its 1-based line number (Parquet: its 0-based row number), its text and (when
    asked for) its label and id."""

    line: int
    text: str
    label: str | None = None
    id: str | None = None


def detect_format(path: Path | str, fmt: str | None = None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise EdgeSentError(f"unknown file format {fmt!r} (choose from {', '.join(FORMATS)})")
        return fmt
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in ("json", "ndjson"):
        return "jsonl"
    if suffix == "pq":
        return "parquet"
    if suffix in FORMATS:
        return suffix
    return "txt"


BadRow = Callable[[EdgeSentError], None]  # given: a malformed row is reported to it and skipped


def _decoded_lines(path: Path, lines: Iterable[bytes], on_bad: BadRow | None) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            error = EdgeSentError(f"{path}:{number}: invalid UTF-8 ({exc.reason} at byte {exc.start})")
            if on_bad is None:
                raise error from None
            on_bad(error)
            continue
        if number == 1:
            text = text.removeprefix("\ufeff")
        yield number, text


def _open_lines(path: Path | str) -> tuple[str, Iterable[bytes]]:
    if str(path) == "-":
        return "<stdin>", sys.stdin.buffer
    p = Path(path)
    if not p.is_file():
        raise EdgeSentError(f"{p}: file not found")
    return str(p), open(p, "rb")


@dataclass(frozen=True)
class Fields:
    """Which column (TSV/CSV) or key (JSONL) holds what."""

    text: str = "text_a"
    label: str | None = None  # None: texts only
    id: str | None = None  # None: rows are named by file and line


def read_records(
    path: Path | str,
    *,
    text_field: str = "text_a",
    label_field: str | None = None,
    id_field: str | None = None,
    fmt: str | None = None,
    on_bad_row: BadRow | None = None,
) -> Iterator[Record]:
    """Yield the records of a file, streaming (bounded memory). `label_field=None` reads texts only.
    Malformed rows raise EdgeSentError naming file and line, unless `on_bad_row` is given: then each is
    reported to it and skipped (a malformed header or a missing column still raises)."""
    kind = detect_format(path, fmt) if str(path) != "-" else (fmt or "txt")
    fields = Fields(text_field, label_field, id_field)
    if kind == "parquet":
        yield from _parquet(path, fields, on_bad_row)
        return
    name, raw = _open_lines(path)
    lines = _decoded_lines(Path(name), raw, on_bad_row)
    try:
        if kind == "txt":
            if label_field is not None:
                raise EdgeSentError(f"{name}: a .txt file has one text per line and no labels; use tsv, csv or jsonl")
            for number, line in lines:
                yield Record(number, line.rstrip("\r\n"))
        else:
            parse = _jsonl if kind == "jsonl" else _delimited
            for item in parse(name, lines, kind, fields):
                if isinstance(item, EdgeSentError):
                    if on_bad_row is None:
                        raise item
                    on_bad_row(item)
                else:
                    yield item
    finally:
        close = getattr(raw, "close", None)
        if close is not None and raw is not sys.stdin.buffer:
            close()


def _delimited(
    name: str, lines: Iterator[tuple[int, str]], kind: str, fields: Fields
) -> Iterator[Record | EdgeSentError]:
    last = [0]  # the file line the csv reader consumed last (csv's own line_num skips lines we dropped)

    def texts() -> Iterator[str]:
        for number, line in lines:
            last[0] = number
            yield line

    if kind == "tsv":
        reader = csv.reader(texts(), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(texts(), strict=True)  # a stray or unclosed quote is an error, not a merged row
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise EdgeSentError(f"{name}:1: malformed header ({exc})") from None
    header = [h.strip() for h in header]
    wanted = [f for f in (fields.text, fields.label, fields.id) if f]
    missing = [w for w in wanted if w not in header]
    if missing:
        raise EdgeSentError(f"{name}: no column {missing[0]!r}; columns found: {', '.join(header) or '(none)'}")
    index = {f: header.index(f) for f in wanted}
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield EdgeSentError(f"{name}:{last[0]}: malformed row ({exc})")
            continue
        if not row:  # a blank line
            continue
        if len(row) != len(header):
            yield EdgeSentError(f"{name}:{last[0]}: malformed row: {len(row)} fields, header has {len(header)}")
            continue
        label = row[index[fields.label]].strip() if fields.label else None
        if fields.label and not label:
            yield EdgeSentError(f"{name}:{last[0]}: empty label")
            continue
        row_id = row[index[fields.id]] if fields.id else None
        yield Record(last[0], row[index[fields.text]], label, row_id)


def _jsonl(name: str, lines: Iterator[tuple[int, str]], kind: str, fields: Fields) -> Iterator[Record | EdgeSentError]:
    for number, line in lines:
        if line.strip():
            try:
                yield _json_record(name, number, line, fields)
            except EdgeSentError as exc:
                yield exc


def _json_record(name: str, number: int, line: str, fields: Fields) -> Record:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise EdgeSentError(f"{name}:{number}: malformed JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise EdgeSentError(f"{name}:{number}: expected a JSON object, got {type(obj).__name__}")
    for key in (f for f in (fields.text, fields.label, fields.id) if f):
        if key not in obj:
            raise EdgeSentError(f"{name}:{number}: no key {key!r}; keys found: {', '.join(obj) or '(none)'}")
    text = obj[fields.text]
    if not isinstance(text, str):
        raise EdgeSentError(f"{name}:{number}: {fields.text!r} must be a string, got {type(text).__name__}")
    label = None
    if fields.label is not None:
        raw = obj[fields.label]
        if isinstance(raw, bool) or not isinstance(raw, (str, int)):
            raise EdgeSentError(f"{name}:{number}: label must be a string or an integer, got {raw!r}")
        label = str(raw).strip()
        if not label:
            raise EdgeSentError(f"{name}:{number}: empty label")
    row_id = str(obj[fields.id]) if fields.id is not None else None
    return Record(number, text, label, row_id)


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise EdgeSentError("reading Parquet needs pyarrow: pip install 'edge-sent[parquet]'") from None
    return pq


def _string_like(kind: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    string_view = getattr(pa.types, "is_string_view", lambda _: False)
    return bool(
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or string_view(kind) or pa.types.is_null(kind)
    )


def open_parquet(path: Path | str, fields: Fields) -> Any:
    """Open a Parquet file and check its columns (pyarrow installed, columns present, text column of strings);
    returns the `pyarrow.parquet.ParquetFile`. Reads the footer only."""
    if str(path) == "-":
        raise EdgeSentError("Parquet cannot be read from stdin: give a file")
    pq = _pyarrow_parquet()
    p = Path(path)
    if not p.is_file():
        raise EdgeSentError(f"{p}: file not found")
    try:
        # stream each column chunk through a 1 MiB buffer; pre-buffering would hold a whole row group's chunks
        parquet = pq.ParquetFile(p, buffer_size=1 << 20, pre_buffer=False)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
        raise EdgeSentError(f"{p}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    schema = parquet.schema_arrow
    wanted = [f for f in (fields.text, fields.label, fields.id) if f]
    missing = [w for w in wanted if w not in schema.names]
    if missing:
        raise EdgeSentError(f"{p}: no column {missing[0]!r}; columns found: {', '.join(schema.names) or '(none)'}")
    kind = schema.field(fields.text).type
    if not _string_like(kind):
        raise EdgeSentError(f"{p}: column {fields.text!r} holds {kind}, not strings")
    return parquet


def _parquet(path: Path | str, fields: Fields, on_bad: BadRow | None) -> Iterator[Record]:
    parquet = open_parquet(path, fields)
    name = str(path)
    columns = list(dict.fromkeys(f for f in (fields.text, fields.label, fields.id) if f))
    number = 0
    batches = parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns, use_threads=False)
    try:
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except (OSError, ValueError) as exc:
                raise EdgeSentError(f"{name}:row {number}: unreadable ({str(exc).splitlines()[0]})") from None
            values = {column: batch.column(column).to_pylist() for column in columns}
            texts = values[fields.text]
            labels = values[fields.label] if fields.label else None
            ids = values[fields.id] if fields.id else None
            for k, text in enumerate(texts):
                item = _parquet_record(
                    name,
                    number,
                    text,
                    labels[k] if labels is not None else None,
                    ids[k] if ids is not None else None,
                    fields,
                )
                number += 1
                if isinstance(item, Record):
                    yield item
                elif on_bad is None:
                    raise item
                else:
                    on_bad(item)
    finally:
        parquet.close()


def _parquet_record(name: str, row: int, text: Any, label: Any, row_id: Any, fields: Fields) -> Record | EdgeSentError:
    where = f"{name}:row {row}"
    if not isinstance(text, str):
        got = "null" if text is None else type(text).__name__
        return EdgeSentError(f"{where}: {fields.text!r} must be a string, got {got}")
    clean = None
    if fields.label is not None:
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            return EdgeSentError(f"{where}: label must be a string or an integer, got {label!r}")
        clean = str(label).strip()
        if not clean:
            return EdgeSentError(f"{where}: empty label")
    if fields.id is not None and row_id is None:
        return EdgeSentError(f"{where}: {fields.id!r} is null")
    return Record(row, text, clean, None if row_id is None else str(row_id))
