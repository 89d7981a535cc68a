"""A `score` output folder's contract: the job it belongs to (`job.json`), who is writing it (a lock), and how a
file gets into it (whole or not at all).

`job.json` records everything that decides the shards' contents: the inputs (path, size, mtime) and reader
settings, and the model that computes the answers: a digest of its files (`Manifest.model_sha256`: a re-export
into the same bundle folder changes it), the variant actually resolved (never `auto`), the provider, the precision
it computes in (`fp32` on OpenVINO is bf16 where the CPU has it), the batch size when the variant's answers
depend on their batch, and the onnxruntime version and the CPU class (`host.cpu`) when they depend on those
(integer-kernel variants and bf16: their labels differ across CPU classes; a resume after an upgrade, on another
machine or by Ray workers on another CPU would mix two sets of answers). A rerun that differs in any of them is
refused with one line naming what changed, instead of writing a second model's answers next to the first's.

The lock is an exclusive `flock` on `OUT/.lock`, taken before `job.json` is read or written and held for the
whole run: a second run on the same folder stops at once, before it touches anything (POSIX systems).
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort

from edge_sent.atomic import atomic_write
from edge_sent.errors import EdgeSentError
from edge_sent.runtime.classifier import Classifier
from edge_sent.runtime.engine import DEFAULT_BATCH_SIZE
from edge_sent.runtime.host.cpu import cpu_fingerprint, describe_change
from edge_sent.variants import VARIANTS

RERUN = "rerun the same command, which keeps the finished shards"  # what a rerun does, in write errors

JOB_FILE = "job.json"
LOCK_FILE = ".lock"
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


def host_dependent(classifier: Classifier) -> bool:
    """Whether the answers depend on the onnxruntime version and the CPU class: batch-dependent or integer-kernel
    variants (the variant table's `cpu_dependent`), bf16 (its kernels differ by CPU), a variant nobody knows."""
    variant = classifier.variant
    spec = VARIANTS.get(variant)
    independent = classifier.manifest.batch_independent(variant) and spec is not None and not spec.cpu_dependent
    return not independent or classifier.precision == "bf16"


def model_record(classifier: Classifier, batch_size: int) -> dict[str, Any]:
    """What computes the answers; the batch size only where the variant's answers depend on their batch, the
    onnxruntime version and the CPU class (`host.cpu`: machine and ISA features) only where they depend on
    those."""
    manifest, variant = classifier.manifest, classifier.variant
    on_host = host_dependent(classifier)
    cpu = cpu_fingerprint()
    return {
        "sha256": manifest.model_sha256(variant),
        "variant": variant,
        "provider": classifier.providers[0],
        "precision": classifier.precision,
        "batch_size": None if manifest.batch_independent(variant) else batch_size,
        "onnxruntime": ort.__version__ if on_host else None,
        "cpu": {"machine": cpu["machine"], "isa": cpu["isa"]} if on_host else None,
    }


def job_record(config: ScoreConfig, classifier: Classifier) -> dict[str, Any]:
    inputs = []
    for path in config.inputs:
        stat = Path(path).stat()
        inputs.append({"path": str(Path(path).resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    return {
        "inputs": inputs,
        "bundle": str(classifier.manifest.root.resolve()),
        "model": model_record(classifier, config.batch_size),
        "text_column": config.text_column,
        "id_column": config.id_column,
        "format": config.fmt,
        "shard_size": config.shard_size,
        "skip_bad_rows": config.skip_bad_rows,
    }


MODEL_FIELDS = {
    "sha256": "the bundle's model (its graph, tokenizer or labels changed: re-exported?)",
    "variant": "the variant",
    "provider": "the provider",
    "precision": "the precision",
    "batch_size": "--batch-size (the variant's answers depend on their batch)",
    "onnxruntime": "the onnxruntime version ({variant}'s answers depend on its kernels)",
    "cpu": "the CPU class ({variant}'s answers depend on it)",
}
# what follows from the variant: compared only when the variant is the same
PER_VARIANT = ("sha256", "batch_size", "onnxruntime", "cpu")
JOB_FIELDS = {
    "inputs": "the inputs (other files, or a file changed since)",
    "bundle": "the bundle folder",
    "text_column": "--text-column",
    "id_column": "--id-column",
    "format": "--format",
    "shard_size": "--shard-size",
    "skip_bad_rows": "--skip-bad-rows",
}


def _shown(value: Any) -> str:
    return "not recorded" if value is None else str(value)


def model_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two model records (job.json's, and what this process loaded), in words. Another variant
    is named alone (its digest, batch and host dependence follow from it), with the flag that resumes the job."""
    found: list[str] = []
    other_variant = old.get("variant") != new.get("variant")
    for key, what in MODEL_FIELDS.items():
        if old.get(key) == new.get(key) or (other_variant and key in PER_VARIANT):
            continue
        detail = f": {_shown(old.get(key))} → {_shown(new.get(key))}"
        if key == "sha256":
            detail = ""
        elif key == "cpu":
            detail = f": {describe_change(old.get(key), new.get(key))}"
        elif key == "variant" and isinstance(old.get(key), str):
            detail += f" (`auto` may choose another on a new probe: --variant {old[key]} resumes with the job's)"
        found.append(what.format(variant=new.get("variant")) + detail)
    return found


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two job records, in words."""
    found: list[str] = []
    old_model = old.get("model")
    if not isinstance(old_model, dict):
        found.append("the model (job.json predates the model record)")
    else:
        found += model_changes(old_model, new["model"])
    for key, what in JOB_FIELDS.items():
        if old.get(key) != new.get(key):
            detail = "" if key in ("inputs", "bundle") else f": {_shown(old.get(key))} → {_shown(new.get(key))}"
            found.append(what + detail)
    return found or ["job.json was altered"]


def claim_directory(out: Path, job: dict[str, Any]) -> None:
    """Write `job.json` in a folder without one, or check that the existing one is this same job (call it under
    `output_lock`); removes what a killed run left half-written."""
    path = out / JOB_FILE
    if path.is_file():
        try:
            existing = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            existing = {}
        if existing != job:
            what = "; ".join(changes(existing if isinstance(existing, dict) else {}, job))
            raise EdgeSentError(
                f"{out} holds the shards of a different job (changed: {what}); use another --out, or delete {out} "
                "to start over"
            )
        for stale in out.glob(".*.tmp"):  # a file being written when an earlier run was killed
            stale.unlink(missing_ok=True)
        return
    if any(out.glob(SHARD_GLOB)):
        raise EdgeSentError(f"{out} holds shards but no {JOB_FILE}: use another --out")
    atomic_write(path, json.dumps(job, indent=2, ensure_ascii=False) + "\n", rerun=RERUN)


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on the output folder (created if absent) for the duration of the block."""
    if out.exists() and not out.is_dir():
        raise EdgeSentError(f"--out {out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = open(out / LOCK_FILE, "a+b")  # noqa: SIM115 - closed in the finally below, which releases the lock
    except OSError as exc:
        raise EdgeSentError(f"cannot write to {out}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EdgeSentError(
                f"{out} is being written by another `edge-sent score` run (it holds {out / LOCK_FILE}); wait for it "
                "to finish, or use another --out"
            ) from None
        yield
    finally:
        handle.close()
