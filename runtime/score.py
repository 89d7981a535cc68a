"""`edge-sent score`: classify large files into output shards, streaming, resumable (torch-free).

The inputs are read lazily and cut into shards of `shard_size` rows in input order; shard k of input i is
`part-{i:03d}-{k:06d}.jsonl` in the output directory, written to a temporary file and renamed when
complete, so a shard is either there whole or not at all. A rerun with the same arguments skips the
shards that exist (reading past their rows, not scoring them) and writes the rest: killed at any moment,
the job completes without duplicates or gaps. `job.json` records the arguments; a rerun with different
ones is refused instead of mixing two jobs in one directory.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_sent.errors import EdgeSentError
from edge_sent.readers import Fields, Record, detect_format, open_parquet, read_records
from edge_sent.runtime.classifier import Classifier
from edge_sent.runtime.engine import DEFAULT_BATCH_SIZE

JOB_FILE = "job.json"
SHARD_GLOB = "part-*.jsonl"


@dataclass(frozen=True)
class ScoreConfig:
    inputs: tuple[Path, ...]
    out: Path
    text_column: str = "text_a"
    id_column: str | None = None  # None: a row's id is FILE:LINE (Parquet: FILE:ROW, rows counted from 0)
    fmt: str | None = None
    shard_size: int = 10_000
    batch_size: int = DEFAULT_BATCH_SIZE
    skip_bad_rows: bool = False


@dataclass
class ScoreStats:
    rows: int = 0  # scored and written by this run
    resumed_rows: int = 0  # in shards an earlier run finished
    shards_written: int = 0
    shards_skipped: int = 0
    empty_skipped: int = 0
    bad_rows: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["bad_rows"] = len(self.bad_rows)
        data["first_bad_rows"] = self.bad_rows[:10]
        data["texts_per_s"] = self.rows / self.seconds if self.seconds else 0.0
        return data


def shard_path(out: Path, input_index: int, shard: int) -> Path:
    return out / f"part-{input_index:03d}-{shard:06d}.jsonl"


def job_record(config: ScoreConfig, classifier: Classifier) -> dict[str, Any]:
    inputs = []
    for path in config.inputs:
        stat = Path(path).stat()
        inputs.append({"path": str(Path(path).resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    return {
        "inputs": inputs,
        "bundle": str(classifier.manifest.root.resolve()),
        "variant": classifier.variant,
        "text_column": config.text_column,
        "id_column": config.id_column,
        "format": config.fmt,
        "shard_size": config.shard_size,
        "skip_bad_rows": config.skip_bad_rows,
    }


def claim_directory(config: ScoreConfig, job: dict[str, Any]) -> None:
    """Create the output directory and its job.json, or check that an existing one is this same job."""
    path = config.out / JOB_FILE
    if config.out.exists() and not config.out.is_dir():
        raise EdgeSentError(f"--out {config.out}: exists and is not a directory")
    if path.is_file():
        try:
            existing = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            existing = None
        if existing != job:
            raise EdgeSentError(
                f"{config.out} holds the shards of a different job (its {JOB_FILE} differs: other inputs, bundle or "
                "settings); use another --out, or delete it to start over"
            )
        for stale in config.out.glob(".part-*.tmp"):  # a shard being written when an earlier run was killed
            stale.unlink(missing_ok=True)
        return
    if config.out.is_dir() and any(config.out.glob(SHARD_GLOB)):
        raise EdgeSentError(f"{config.out} holds shards but no {JOB_FILE}: use another --out")
    try:
        config.out.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(job, indent=2, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise EdgeSentError(f"cannot write to {config.out}: {exc.strerror or exc}") from None


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def shards(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    shard: list[Record] = []
    for record in records:
        shard.append(record)
        if len(shard) == size:
            yield shard
            shard = []
    if shard:
        yield shard


def score_shard(classifier: Classifier, source: str, rows: list[Record], batch_size: int) -> str:
    predictions = classifier.predict([r.text for r in rows], batch_size=batch_size)
    lines = []
    for record, p in zip(rows, predictions, strict=True):
        row_id = record.id if record.id is not None else f"{source}:{record.line}"
        lines.append(json.dumps({"id": row_id, "line": record.line} | p.as_dict(), ensure_ascii=False))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Shard:
    source: Path
    target: Path
    rows: list[Record]


def check_job(config: ScoreConfig, classifier: Classifier) -> None:
    """Refuse bad settings and missing inputs, then claim the output directory for this job."""
    if config.shard_size < 1 or config.batch_size < 1:
        raise EdgeSentError("--shard-size and --batch-size must be at least 1")
    for path in config.inputs:
        if not Path(path).is_file():
            raise EdgeSentError(f"{path}: file not found")
        if detect_format(path, config.fmt) == "parquet":  # pyarrow there, columns right: before any file is written
            open_parquet(path, Fields(config.text_column, None, config.id_column)).close()
    claim_directory(config, job_record(config, classifier))


def pending_shards(config: ScoreConfig, stats: ScoreStats) -> Iterator[Shard]:
    """Every shard of every input, in order; the ones an earlier run finished are counted and skipped."""

    def bad_row(error: EdgeSentError) -> None:
        stats.bad_rows.append(str(error))

    for index, path in enumerate(config.inputs):
        records = read_records(
            path,
            text_field=config.text_column,
            id_field=config.id_column,
            fmt=config.fmt,
            on_bad_row=bad_row if config.skip_bad_rows else None,
        )
        for shard_index, rows in enumerate(shards(non_empty(records, stats), config.shard_size)):
            target = shard_path(config.out, index, shard_index)
            if target.is_file():
                stats.shards_skipped += 1
                stats.resumed_rows += len(rows)
            else:
                yield Shard(Path(path), target, rows)


def score(classifier: Classifier, config: ScoreConfig, progress: Callable[[int], None] | None = None) -> ScoreStats:
    """Score every input row into shards; skip the shards an earlier run finished."""
    check_job(config, classifier)
    stats = ScoreStats()
    started = time.perf_counter()
    for shard in pending_shards(config, stats):
        atomic_write(shard.target, score_shard(classifier, str(shard.source), shard.rows, config.batch_size))
        stats.shards_written += 1
        stats.rows += len(shard.rows)
        if progress is not None:
            progress(len(shard.rows))
    stats.seconds = time.perf_counter() - started
    return stats


def non_empty(records: Iterator[Record], stats: ScoreStats) -> Iterator[Record]:
    for record in records:
        if record.text.strip():
            yield record
        else:
            stats.empty_skipped += 1
