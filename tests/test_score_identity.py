"""What a `score` job's answers depend on, and who may write them: Ray workers run exactly the driver's resolved
model and refuse another; job.json records the runtime and the CPU for the variants whose answers depend on them.
In one process (a fake Ray runs the real worker class), fast enough for the mutation run."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from edge_sent.errors import EdgeSentError
from edge_sent.runtime.scoring import on_ray as score_ray
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


def _job(out: Path) -> dict[str, Any]:
    return json.loads((out / "job.json").read_text(encoding="utf-8"))


def test_the_job_records_the_runtime_and_cpu_class_where_answers_depend_on_them(tiny_bundle, tmp_path, monkeypatch):
    import onnxruntime as ort

    from edge_sent.runtime import Classifier
    from edge_sent.runtime.host.cpu import cpu_fingerprint
    from edge_sent.runtime.scoring import job as score_job
    from edge_sent.runtime.scoring.run import ScoreConfig, score

    here, version = cpu_fingerprint(), ort.__version__
    source = tmp_path / "in.txt"
    source.write_text("很好\n太差\n还行\n", encoding="utf-8")
    int8 = Classifier.load(tiny_bundle, variant="int8", provider="cpu", probe=False)
    fp32 = Classifier.load(tiny_bundle, variant="fp32", provider="cpu", probe=False)
    config = ScoreConfig(inputs=(source,), out=tmp_path / "int8", shard_size=1)
    score(int8, config)
    model = _job(config.out)["model"]
    assert model["onnxruntime"] == version
    assert model["cpu"] == {"machine": here["machine"], "isa": here["isa"]}
    score(fp32, replace(config, out=tmp_path / "fp32"))
    assert (_job(tmp_path / "fp32")["model"]["onnxruntime"], _job(tmp_path / "fp32")["model"]["cpu"]) == (None, None)
    for shard in (config.out / "part-000-000001.jsonl", tmp_path / "fp32" / "part-000-000001.jsonl"):
        shard.unlink()  # something left to resume
    # an onnxruntime upgrade, then another CPU class: int8's resume is refused, naming why; fp32's goes on
    monkeypatch.setattr(score_job.ort, "__version__", "9.9.9")
    with pytest.raises(EdgeSentError, match=rf"the onnxruntime version \(int8's answers depend on its kernels\): "
                       rf"{re.escape(version)} → 9\.9\.9"):  # fmt: skip
        score(int8, config)
    monkeypatch.undo()
    other_cpu = here | {"isa": [*here["isa"], "amx_int8"]}
    monkeypatch.setattr(score_job, "cpu_fingerprint", lambda: other_cpu)
    with pytest.raises(EdgeSentError, match=r"changed: the CPU class \(int8's answers depend on it\): amx_int8 new\)"):
        score(int8, config)
    assert not (config.out / "part-000-000001.jsonl").exists()
    assert score(fp32, replace(config, out=tmp_path / "fp32")).rows == 1
    monkeypatch.undo()
    assert score(int8, config).rows == 1  # the same runtime on the same CPU resumes it


def test_another_variant_is_named_alone_with_the_flag_that_resumes_the_job() -> None:
    from edge_sent.runtime.scoring.job import model_changes

    cpu = {"machine": "x86_64", "isa": ["avx2"]}
    old = {"sha256": "a", "variant": "int8", "provider": "cpu", "precision": "fp32", "batch_size": 32}
    old |= {"onnxruntime": "1.32.0", "cpu": cpu}
    new = {"sha256": "b", "variant": "fp32", "provider": "cpu", "precision": "fp32", "batch_size": None}
    new |= {"onnxruntime": None, "cpu": None}
    assert model_changes(old, new) == [
        "the variant: int8 → fp32 (`auto` may choose another on a new probe: --variant int8 resumes with the job's)"
    ]
    assert model_changes(old, old | {"sha256": "b"}) == [
        "the bundle's model (its graph, tokenizer or labels changed: re-exported?)"
    ]
    arm = {"machine": "aarch64", "isa": ["asimd"]}
    assert model_changes(old, old | {"cpu": arm}) == [
        "the CPU class (int8's answers depend on it): x86_64 → aarch64; avx2 gone; asimd new"
    ]


def test_a_ray_worker_on_another_cpu_class_refuses_a_cpu_dependent_variant(tiny_bundle, tmp_path):
    from edge_sent.runtime import Classifier
    from edge_sent.runtime.scoring.job import model_record

    clf = Classifier.load(tiny_bundle, variant="int8", provider="cpu", probe=False)
    driver = model_record(clf, 32) | {"cpu": {"machine": "x86_64", "isa": ["avx2", "fma"]}}
    options = score_ray.LoadOptions.resolved(clf, driver)
    with pytest.raises(EdgeSentError, match=r"does not compute the driver's model .*the CPU class \(int8's answers"):
        score_ray.ShardScorer(options, 1, str(tmp_path), 32)
    score_ray.ShardScorer(replace(options, model=model_record(clf, 32)), 1, str(tmp_path), 32)  # the same: accepted
