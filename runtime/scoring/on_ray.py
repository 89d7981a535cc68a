"""`edge-sent score --engine ray`: the same job as the local engine, scaled out on Ray Data.

The driver reads the inputs with edge-sent's own readers (same formats, same file:line errors, same shard
boundaries as the local engine) and hands the shards that are not finished yet to Ray Data in windows of a
few shards (bounded memory); `map_batches` runs them on an actor pool in which every actor loads and
verifies the bundle once and writes each shard atomically, exactly as the local engine does. So the output
of the two engines is identical, shard for shard, and a job started on one can be resumed on the other.

The bundle must be readable at the same path on every worker (a shared file system, or the same path
provisioned on each node); Ray's runtime environment (`working_dir`) can ship it with the job.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_sent.atomic import atomic_write
from edge_sent.errors import EdgeSentError
from edge_sent.readers import Record
from edge_sent.runtime.classifier import Classifier
from edge_sent.runtime.scoring.job import (
    RERUN,
    ScoreConfig,
    claim_directory,
    job_record,
    model_changes,
    model_record,
    output_lock,
)
from edge_sent.runtime.scoring.run import ScoreStats, check_inputs, pending_shards, score_shard


@dataclass(frozen=True)
class RayConfig:
    address: str | None = None  # None: start a local Ray instance
    actors: int = 1
    threads_per_actor: int = 1
    window_shards: int = 0  # shards per Ray Data run (0: 32 per actor); each run starts its actor pool anew


@dataclass(frozen=True)
class LoadOptions:
    """What every worker loads: exactly what the driver resolved (never `auto`), and the job's model record that
    the loaded bundle must match."""

    bundle: str
    variant: str
    provider: str
    precision: str
    model: dict[str, Any]  # job.json's "model": the driver's digest, variant, provider, precision (`job`)

    @classmethod
    def resolved(cls, classifier: Classifier, model: dict[str, Any]) -> LoadOptions:
        bundle = str(classifier.manifest.root.resolve())
        return cls(bundle, classifier.variant, classifier.provider, classifier.precision, model)


class ShardScorer:
    """A Ray actor: loads and verifies the bundle once, checks that it computes the driver's model, then scores
    and writes whole shards."""

    def __init__(self, options: LoadOptions, threads: int, out: str, batch_size: int) -> None:
        self.classifier = Classifier.load(
            options.bundle, variant=options.variant, provider=options.provider, threads=threads, strict=True,
            precision=options.precision,
        )  # fmt: skip
        differs = model_changes(options.model, model_record(self.classifier, batch_size))
        if differs:
            raise EdgeSentError(
                f"the worker on {socket.gethostname()} does not compute the driver's model from {options.bundle} "
                f"(changed: {'; '.join(differs)}); give every node the same bundle and runtime"
            )
        self.out = Path(out)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        written = []
        for target, source, lines, texts, ids in zip(
            batch["target"], batch["source"], batch["lines"], batch["texts"], batch["ids"], strict=True
        ):
            rows = [
                Record(int(n), str(t), None, None if i is None else str(i))
                for n, t, i in zip(lines, texts, ids, strict=True)
            ]
            atomic_write(Path(target), score_shard(self.classifier, str(source), rows, self.batch_size), rerun=RERUN)
            written.append(len(rows))
        return {"rows": np.asarray(written, dtype=np.int64)}


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise EdgeSentError("--engine ray needs Ray: pip install 'edge-sent[ray]' (or scripts/ray-venv.sh)") from None
    return ray


def _reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a host:port nobody listens on (ray.init would retry for minutes)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # ray://, auto, or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise EdgeSentError(f"cannot reach a Ray cluster at {address}: {exc.strerror or exc}") from None


def _connect(ray: Any, config: RayConfig) -> None:
    if ray.is_initialized():
        return
    if config.address:
        _reachable(config.address)
    try:
        if config.address:
            ray.init(address=config.address, log_to_driver=False, configure_logging=False)
        else:
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise EdgeSentError(
            f"cannot reach a Ray cluster at {config.address or 'a new local instance'}: {exc}"
        ) from None
    ray.data.DataContext.get_current().enable_progress_bars = False


def _pending(config: ScoreConfig, stats: ScoreStats) -> Iterator[dict[str, Any]]:
    """The shards not written yet, as Ray items (the local engine's shards, so the outputs are identical)."""
    for shard in pending_shards(config, stats):
        yield {
            "target": str(shard.target),
            "source": str(shard.source),
            "lines": [r.line for r in shard.rows],
            "texts": [r.text for r in shard.rows],
            "ids": [r.id for r in shard.rows],
        }


def score_on_ray(
    classifier: Classifier,
    config: ScoreConfig,
    ray_config: RayConfig,
    progress: Callable[[int], None] | None = None,
) -> ScoreStats:
    """The local engine's job (same shards, same files) run by an actor pool on Ray Data.

    Every actor loads the variant, provider and precision the driver resolved, and refuses a bundle whose model
    differs from the job's (another export at the same path on that node). The bundle and the output folder reach
    the actors as absolute paths: on a cluster the workers do not share the driver's working directory. (The
    inputs are read by the driver; a row's id keeps the path as given.)"""
    if ray_config.actors < 1:
        raise EdgeSentError("--actors must be at least 1")
    config = replace(config, out=config.out.resolve())
    check_inputs(config)
    ray = _ray()
    with output_lock(config.out):
        job = job_record(config, classifier)
        claim_directory(config.out, job)
        options = LoadOptions.resolved(classifier, job["model"])
        _connect(ray, ray_config)
        stats = ScoreStats()
        started = time.perf_counter()
        window = ray_config.window_shards or 32 * ray_config.actors
        items: list[dict[str, Any]] = []
        for item in _pending(config, stats):
            items.append(item)
            if len(items) == window:
                _run_window(ray, items, options, config, ray_config, stats, progress)
                items = []
        if items:
            _run_window(ray, items, options, config, ray_config, stats, progress)
        stats.seconds = time.perf_counter() - started
    return stats


def _run_window(
    ray: Any,
    items: list[dict[str, Any]],
    options: LoadOptions,
    config: ScoreConfig,
    ray_config: RayConfig,
    stats: ScoreStats,
    progress: Callable[[int], None] | None,
) -> None:
    dataset = ray.data.from_items(items).map_batches(
        ShardScorer,
        fn_constructor_args=(options, ray_config.threads_per_actor, str(config.out), config.batch_size),
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=ray_config.actors),
        num_cpus=ray_config.threads_per_actor,
    )
    try:
        for row in dataset.iter_rows():
            stats.rows += int(row["rows"])
            stats.shards_written += 1
            if progress is not None:
                progress(int(row["rows"]))
    except EdgeSentError:
        raise
    except Exception as exc:  # a worker's failure reaches the driver wrapped (RayTaskError): its own last line
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise EdgeSentError(f"a Ray worker failed: {lines[-1] if lines else type(exc).__name__}") from None
