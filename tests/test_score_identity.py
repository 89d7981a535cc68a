"""What a `score` job's answers depend on, and who may write them: Ray workers run exactly the driver's resolved
model and refuse another; job.json records the runtime and the CPU for the variants whose answers depend on them.
In one process (a fake Ray runs the real worker class), fast enough for the mutation run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from edge_sent.errors import EdgeSentError
from edge_sent.runtime import score_ray
from tests.conftest import DATA


def _fake_ray(monkeypatch: pytest.MonkeyPatch) -> list[score_ray.LoadOptions]:
    """Ray Data replaced by a loop that builds the real worker (ShardScorer) and feeds it one shard at a time;
    returns the options every window handed to the workers."""
    seen: list[score_ray.LoadOptions] = []

    def run_window(ray: Any, items: Any, options: Any, config: Any, ray_config: Any, stats: Any, _: Any) -> None:
        seen.append(options)
        worker = score_ray.ShardScorer(options, ray_config.threads_per_actor, str(config.out), config.batch_size)
        for item in items:
            rows = worker({k: [v] for k, v in item.items()})["rows"]
            stats.rows += int(rows[0])
            stats.shards_written += 1

    monkeypatch.setattr(score_ray, "_ray", lambda: object())
    monkeypatch.setattr(score_ray, "_connect", lambda ray, config: None)
    monkeypatch.setattr(score_ray, "_run_window", run_window)
    return seen


def test_ray_workers_load_the_drivers_resolved_model_and_refuse_another(tiny_bundle, tmp_path, monkeypatch):
    from edge_sent.cli.score_cmd import score_cmd

    seen = _fake_ray(monkeypatch)
    out = tmp_path / "o"
    score_cmd(
        bundle=tiny_bundle, inputs=[DATA / "dev.tsv"], out=out, engine="ray", variant="int8", provider="auto",
        precision="auto", shard_size=600, json_out=True,
    )  # fmt: skip
    job = json.loads((out / "job.json").read_text(encoding="utf-8"))
    assert len(list(out.glob("part-*.jsonl"))) == 2 and seen
    options = seen[0]
    # never `auto`: the provider and precision the driver resolved, and job.json's model to check against
    assert (options.variant, options.provider, options.precision) == ("int8", "cpu", "fp32")
    assert options.model == job["model"] and Path(options.bundle).is_absolute()
    # a worker whose bundle at that path is another export (its model digest differs) refuses before scoring
    other = replace(options, model=options.model | {"sha256": "0" * 64})
    with pytest.raises(EdgeSentError, match=r"does not compute the driver's model .*changed: the bundle's model"):
        score_ray.ShardScorer(other, 1, str(tmp_path / "x"), 32)
    with pytest.raises(EdgeSentError, match=r"changed: the variant: fp32 → int8"):
        score_ray.ShardScorer(replace(options, model=options.model | {"variant": "fp32"}), 1, str(tmp_path), 32)
    assert not (tmp_path / "x").exists()
