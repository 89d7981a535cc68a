"""`edge-sent score`: classify large files into output shards, streaming, resumable (torch-free).

The inputs are read lazily and cut into shards of `shard_size` rows in input order; shard k of input i is
`part-{i:03d}-{k:06d}.jsonl` in the output directory, written to a temporary file and renamed when
complete, so a shard is either there whole or not at all. A rerun with the same arguments skips the
shards that exist (reading past their rows, not scoring them) and writes the rest: killed at any moment,
the job completes without duplicates or gaps. `job.json` records the arguments; a rerun with different
ones (another model, variant, provider, precision, inputs or settings) is refused instead of mixing two jobs in
one directory, and the directory is locked for the run (`job`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_sent.atomic import atomic_write
from edge_sent.errors import EdgeSentError
from edge_sent.readers import Fields, Record, detect_format, open_parquet, read_records
from edge_sent.runtime.classifier import Classifier
from edge_sent.runtime.scoring.job import RERUN, ScoreConfig, claim_directory, job_record, output_lock

__all__ = ["ScoreConfig", "ScoreStats", "score"]


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


def check_inputs(config: ScoreConfig) -> None:
    """Refuse bad settings and missing or unreadable inputs before anything is written."""
    if config.shard_size < 1 or config.batch_size < 1:
        raise EdgeSentError("--shard-size and --batch-size must be at least 1")
    for path in config.inputs:
        if not Path(path).is_file():
            raise EdgeSentError(f"{path}: file not found")
        if detect_format(path, config.fmt) == "parquet":  # pyarrow there, columns right: before any file is written
            open_parquet(path, Fields(config.text_column, None, config.id_column)).close()


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
    check_inputs(config)
    with output_lock(config.out):
        claim_directory(config.out, job_record(config, classifier))
        stats = ScoreStats()
        started = time.perf_counter()
        for shard in pending_shards(config, stats):
            atomic_write(
                shard.target, score_shard(classifier, str(shard.source), shard.rows, config.batch_size), rerun=RERUN
            )
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
