"""`edge-sent score` in process with a fake classifier (no bundle, no onnxruntime session): the shards and their
lines, resuming, the summary, the input checks, the job record and what a rerun may change, the folder lock and
the whole-or-nothing write. (The CLI, kill and Ray tests show the same rules end to end.)"""

from __future__ import annotations

import fcntl
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest

from edge_sent import atomic
from edge_sent.errors import EdgeSentError
from edge_sent.readers import Record
from edge_sent.runtime.scoring import job as score_job
from edge_sent.runtime.scoring.job import (
    RERUN,
    changes,
    claim_directory,
    host_dependent,
    job_record,
    model_changes,
    model_record,
    output_lock,
)
from edge_sent.runtime.scoring.run import ScoreConfig, ScoreStats, check_inputs, score, score_shard, shard_path, shards

CPU = {"machine": "x86_64", "system": "Linux", "isa": ["avx2", "fma"], "source": "cpuid"}


@dataclass
class _Prediction:
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {"label": "positive" if "好" in self.text else "negative", "n": len(self.text)}


@dataclass
class _Manifest:
    root: Path
    batch_dependent: tuple[str, ...] = ("int8",)

    def model_sha256(self, variant: str) -> str:
        return f"sha-{variant}"

    def batch_independent(self, variant: str) -> bool:
        return variant not in self.batch_dependent


@dataclass
class FakeClassifier:
    manifest: _Manifest
    variant: str = "fp32"
    precision: str = "fp32"
    providers: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])
    batches: list[tuple[int, int]] = field(default_factory=list)  # (texts, batch size) per call

    def predict(self, texts: list[str], batch_size: int) -> list[_Prediction]:
        self.batches.append((len(texts), batch_size))
        return [_Prediction(t) for t in texts]


@pytest.fixture(autouse=True)
def _cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(score_job, "cpu_fingerprint", lambda: dict(CPU))


def _clf(tmp_path: Path, **kw: Any) -> FakeClassifier:
    return FakeClassifier(_Manifest(tmp_path / "bundle"), **kw)


def _jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text_a": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return path


def _lines(out: Path) -> dict[str, list[dict]]:
    return {p.name: [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines()] for p in sorted(out.glob("p*"))}


def test_shard_names_and_cuts() -> None:
    assert shard_path(Path("/o"), 3, 12) == Path("/o/part-003-000012.jsonl")
    records = [Record(i, str(i)) for i in range(7)]
    assert [len(s) for s in shards(iter(records), 3)] == [3, 3, 1]
    assert [len(s) for s in shards(iter(records[:6]), 3)] == [3, 3]  # no empty shard at the end
    assert list(shards(iter([]), 3)) == []
    assert [r.line for s in shards(iter(records), 3) for r in s] == list(range(7))


def test_a_shards_lines_carry_the_id_the_line_and_the_answer(tmp_path: Path) -> None:
    clf = _clf(tmp_path)
    rows = [Record(2, "很好", id="好评"), Record(5, "差")]
    text = score_shard(clf, "in.tsv", rows, batch_size=7)
    assert text.endswith("\n") and text.count("\n") == 2
    assert text.splitlines()[0] == '{"id": "好评", "line": 2, "label": "positive", "n": 2}'
    assert json.loads(text.splitlines()[1]) == {"id": "in.tsv:5", "line": 5, "label": "negative", "n": 1}
    assert clf.batches == [(2, 7)]


def test_the_summary() -> None:
    stats = ScoreStats()
    assert (stats.rows, stats.resumed_rows, stats.shards_written, stats.shards_skipped) == (0, 0, 0, 0)
    assert (stats.empty_skipped, stats.bad_rows, stats.seconds) == (0, [], 0.0)
    summary = ScoreStats(rows=10, seconds=4.0, bad_rows=[f"r{i}" for i in range(11)]).as_dict()
    assert summary["texts_per_s"] == 2.5 and summary["bad_rows"] == 11 and len(summary["first_bad_rows"]) == 10
    assert set(summary) == {
        *("rows", "resumed_rows", "shards_written", "shards_skipped", "empty_skipped", "bad_rows", "seconds"),
        *("first_bad_rows", "texts_per_s"),
    }


def test_input_checks_come_before_anything_is_written(tmp_path: Path) -> None:
    for sizes in ({"shard_size": -1}, {"batch_size": 0}, {"shard_size": 0, "batch_size": 0}):
        with pytest.raises(EdgeSentError, match=r"^--shard-size and --batch-size must be at least 1$"):
            check_inputs(ScoreConfig(inputs=(), out=tmp_path, **sizes))
    with pytest.raises(EdgeSentError, match=r"file not found$"):
        check_inputs(ScoreConfig(inputs=(tmp_path,), out=tmp_path / "o"))  # a folder is not an input file
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = tmp_path / "in.parquet"
    pq.write_table(pa.table({"other": ["好"]}), parquet)
    out = tmp_path / "o"
    with pytest.raises(EdgeSentError, match="text_a"):
        score(_clf(tmp_path), ScoreConfig(inputs=(parquet,), out=out))
    assert not out.exists()
    check_inputs(ScoreConfig(inputs=(parquet,), out=out, text_column="other"))


def test_score_writes_every_shard_then_a_rerun_writes_only_the_missing_ones(tmp_path: Path) -> None:
    first = _jsonl(tmp_path / "a.jsonl", ["好1", "", "差2", "  ", "好3", "差4", "好5"])
    second = _jsonl(tmp_path / "b.jsonl", ["好6"])
    out = tmp_path / "o"
    config = ScoreConfig(inputs=(first, second), out=out, shard_size=2, batch_size=3)
    seen: list[int] = []
    clf = _clf(tmp_path)
    stats = score(clf, config, progress=seen.append)
    assert (stats.rows, stats.shards_written, stats.shards_skipped, stats.resumed_rows) == (6, 4, 0, 0)
    assert stats.empty_skipped == 2 and seen == [2, 2, 1, 1] and 0 < stats.seconds < 60
    assert {batch for _, batch in clf.batches} == {3}
    lines = _lines(out)
    assert list(lines) == [
        "part-000-000000.jsonl",
        "part-000-000001.jsonl",
        "part-000-000002.jsonl",
        "part-001-000000.jsonl",
    ]
    assert [row["line"] for row in lines["part-000-000001.jsonl"]] == [5, 6]  # empty rows skipped, lines kept
    assert lines["part-001-000000.jsonl"][0]["id"] == f"{second}:1"
    assert json.loads((out / "job.json").read_text()) == job_record(config, clf)
    assert (out / ".lock").is_file()
    (out / "part-000-000001.jsonl").unlink()
    again = score(_clf(tmp_path), config)
    assert (again.rows, again.shards_written, again.shards_skipped, again.resumed_rows) == (2, 1, 3, 4)
    assert again.empty_skipped == 2 and _lines(out) == lines


def test_bad_rows_are_skipped_only_when_asked(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"text_a": "好"}\nnot json\n{"text_a": "差"}\n', encoding="utf-8")
    with pytest.raises(EdgeSentError, match=":2"):
        score(_clf(tmp_path), ScoreConfig(inputs=(source,), out=tmp_path / "strict"))
    config = ScoreConfig(inputs=(source,), out=tmp_path / "o", skip_bad_rows=True)
    stats = score(_clf(tmp_path), config)
    assert stats.rows == 2 and len(stats.bad_rows) == 1 and ":2" in stats.bad_rows[0]


def test_which_answers_depend_on_the_host(tmp_path: Path) -> None:
    assert not host_dependent(_clf(tmp_path))
    assert host_dependent(_clf(tmp_path, precision="bf16"))
    assert host_dependent(_clf(tmp_path, variant="int8"))  # batch-dependent
    assert host_dependent(_clf(tmp_path, variant="int8-block"))  # integer kernels
    assert host_dependent(_clf(tmp_path, variant="custom"))  # nobody knows it
    # a float variant the manifest calls batch-dependent
    assert host_dependent(FakeClassifier(_Manifest(tmp_path, ("fp32",))))


def test_the_model_record(tmp_path: Path) -> None:
    steady = model_record(_clf(tmp_path, providers=["OpenVINOExecutionProvider", "CPU"]), 64)
    assert steady == {
        "sha256": "sha-fp32",
        "variant": "fp32",
        "provider": "OpenVINOExecutionProvider",
        "precision": "fp32",
        "batch_size": None,
        "onnxruntime": None,
        "cpu": None,
    }
    moving = model_record(_clf(tmp_path, variant="int8"), 64)
    assert moving["batch_size"] == 64 and moving["onnxruntime"] == ort.__version__
    assert moving["cpu"] == {"machine": "x86_64", "isa": ["avx2", "fma"]}
    block = model_record(_clf(tmp_path, variant="int8-block"), 64)
    assert block["batch_size"] is None and block["onnxruntime"] == ort.__version__ and block["cpu"]


def test_the_job_record(tmp_path: Path) -> None:
    source = _jsonl(tmp_path / "a.jsonl", ["好"])
    config = ScoreConfig(
        inputs=(Path(os.path.relpath(source)),),
        out=tmp_path / "o",
        text_column="t",
        id_column="i",
        fmt="jsonl",
        shard_size=5,
        skip_bad_rows=True,
    )
    clf = _clf(tmp_path)
    job = job_record(config, clf)
    stat = source.stat()
    assert job == {
        "inputs": [{"path": str(source.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}],
        "bundle": str((tmp_path / "bundle").resolve()),
        "model": model_record(clf, config.batch_size),
        "text_column": "t",
        "id_column": "i",
        "format": "jsonl",
        "shard_size": 5,
        "skip_bad_rows": True,
    }


MODEL = {"sha256": "a", "variant": "int8", "provider": "cpu", "precision": "fp32", "batch_size": 32}
MODEL |= {"onnxruntime": "1.2.0", "cpu": {"machine": "x86_64", "isa": ["avx2"]}}


def test_model_changes_name_each_field() -> None:
    assert model_changes(MODEL, MODEL) == []
    assert model_changes(MODEL, MODEL | {"sha256": "b"}) == [
        "the bundle's model (its graph, tokenizer or labels changed: re-exported?)"
    ]
    assert model_changes(MODEL, MODEL | {"provider": "openvino", "precision": "bf16"}) == [
        "the provider: cpu → openvino",
        "the precision: fp32 → bf16",
    ]
    assert model_changes(MODEL, MODEL | {"batch_size": 8}) == [
        "--batch-size (the variant's answers depend on their batch): 32 → 8"
    ]
    assert model_changes(MODEL, MODEL | {"onnxruntime": "1.3.0"}) == [
        "the onnxruntime version (int8's answers depend on its kernels): 1.2.0 → 1.3.0"
    ]
    assert model_changes({k: v for k, v in MODEL.items() if k != "onnxruntime"}, MODEL) == [
        "the onnxruntime version (int8's answers depend on its kernels): not recorded → 1.2.0"
    ]
    assert model_changes(MODEL, MODEL | {"cpu": {"machine": "x86_64", "isa": ["avx2", "avx512f"]}}) == [
        "the CPU class (int8's answers depend on it): avx512f new"
    ]
    # another variant is named alone: its digest, batch and host dependence follow from it
    other = MODEL | {"sha256": "b", "variant": "int8-block", "batch_size": None, "onnxruntime": None, "cpu": None}
    assert model_changes(MODEL, other) == [
        "the variant: int8 → int8-block (`auto` may choose another on a new probe: --variant int8 resumes with "
        "the job's)"
    ]
    assert model_changes(MODEL | {"variant": None}, MODEL | {"provider": "x"}) == [
        "the variant: not recorded → int8",
        "the provider: cpu → x",
    ]


def test_changes_over_the_whole_job() -> None:
    job: dict[str, Any] = {"inputs": [1], "bundle": "/b", "model": MODEL, "text_column": "t"}
    job |= {"id_column": None, "format": None}
    job |= {"shard_size": 10, "skip_bad_rows": False}
    assert changes(job, job) == ["job.json was altered"]
    every = job | {"inputs": [2], "bundle": "/c", "text_column": "u", "id_column": "i", "format": "tsv"}
    every |= {"shard_size": 20, "skip_bad_rows": True}
    assert changes(job, every) == [
        "the inputs (other files, or a file changed since)",
        "the bundle folder",
        "--text-column: t → u",
        "--id-column: not recorded → i",
        "--format: not recorded → tsv",
        "--shard-size: 10 → 20",
        "--skip-bad-rows: False → True",
    ]
    assert changes({**job, "model": "old"}, job)[0] == "the model (job.json predates the model record)"
    assert changes(job, job | {"model": MODEL | {"precision": "bf16"}}) == ["the precision: fp32 → bf16"]


JOB = {"inputs": [], "bundle": "/b", "model": MODEL, "shard_size": 10, "text_column": "文本"}


def test_claim_directory_writes_the_job_then_accepts_only_the_same_one(tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    claim_directory(out, JOB)
    text = (out / "job.json").read_text(encoding="utf-8")
    assert text == json.dumps(JOB, indent=2, ensure_ascii=False) + "\n" and "文本" in text
    claim_directory(out, JOB)
    with pytest.raises(EdgeSentError) as refused:
        claim_directory(out, JOB | {"shard_size": 20})
    assert str(refused.value) == (
        f"{out} holds the shards of a different job (changed: --shard-size: 10 → 20); use another --out, or delete "
        f"{out} to start over"
    )
    for damaged in (b"{not json", b"\xff\xfe", b"[1, 2]"):
        (out / "job.json").write_bytes(damaged)
        with pytest.raises(EdgeSentError, match=r"changed: the model \(job.json predates the model record\); "):
            claim_directory(out, JOB)
    other = tmp_path / "other"
    other.mkdir()
    (other / "part-000-000000.jsonl").write_text("{}\n")
    with pytest.raises(EdgeSentError, match=rf"^{re.escape(str(other))} holds shards but no job\.json: use another"):
        claim_directory(other, JOB)
    assert not (other / "job.json").exists()


def test_the_lock_is_exclusive_held_for_the_block_and_released(tmp_path: Path) -> None:
    out = tmp_path / "a" / "o"

    def locked() -> bool:
        with open(out / ".lock", "a+b") as other:
            try:
                fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(other.fileno(), fcntl.LOCK_UN)
            return False

    with output_lock(out):
        assert locked()
        with pytest.raises(EdgeSentError) as busy, output_lock(out):
            pass
        assert str(busy.value) == (
            f"{out} is being written by another `edge-sent score` run (it holds {out / '.lock'}); wait for it to "
            "finish, or use another --out"
        )
        assert locked()  # the refused run does not release the first run's lock
    assert not locked()
    with pytest.raises(RuntimeError), output_lock(out):
        raise RuntimeError("the run failed")
    assert not locked()
    (tmp_path / "file").write_text("")
    with (
        pytest.raises(EdgeSentError, match=r"^--out .*file: exists and is not a directory$"),
        output_lock(tmp_path / "file"),
    ):
        pass
    with (
        pytest.raises(EdgeSentError, match=r"^cannot write to .*file/o: Not a directory$"),
        output_lock(tmp_path / "file" / "o"),
    ):
        pass


def test_a_write_that_fails_keeps_nothing_of_it_and_says_a_rerun_keeps_the_finished_shards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _jsonl(tmp_path / "a.jsonl", ["好1", "好2", "好3"])
    real_replace = os.replace
    failing = {"part-000-000001.jsonl"}

    def replace(src: Path, dst: Path) -> None:
        if Path(dst).name in failing:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    out = tmp_path / "o"
    config = ScoreConfig(inputs=(source,), out=out, shard_size=1)
    with pytest.raises(EdgeSentError) as full:
        score(_clf(tmp_path), config)
    assert str(full.value) == (
        f"cannot write {out / 'part-000-000001.jsonl'}: No space left on device; nothing of it was kept: free space "
        f"(or fix the folder) and {RERUN}"
    )
    assert RERUN == "rerun the same command, which keeps the finished shards"
    assert sorted(p.name for p in out.iterdir()) == [".lock", "job.json", "part-000-000000.jsonl"]
    failing = {"job.json"}
    with pytest.raises(EdgeSentError, match=rf"cannot write .*job\.json: .*; nothing of it was kept: .* {RERUN}$"):
        score(_clf(tmp_path), ScoreConfig(inputs=(source,), out=tmp_path / "o2"))
    assert sorted(p.name for p in (tmp_path / "o2").iterdir()) == [".lock"]
    failing = set()
    assert score(_clf(tmp_path), config).shards_written == 2  # the rerun finishes


def test_the_defaults_and_frozen_settings(tmp_path: Path) -> None:
    from dataclasses import FrozenInstanceError

    from edge_sent.runtime.engine import DEFAULT_BATCH_SIZE
    from edge_sent.runtime.scoring.run import Shard

    config = ScoreConfig(inputs=(), out=tmp_path)
    assert (config.text_column, config.id_column, config.fmt) == ("text_a", None, None)
    assert (config.shard_size, config.batch_size, config.skip_bad_rows) == (10_000, DEFAULT_BATCH_SIZE, False)
    with pytest.raises(FrozenInstanceError):
        config.shard_size = 1
    with pytest.raises(FrozenInstanceError):
        Shard(tmp_path, tmp_path, []).rows = []
    check_inputs(ScoreConfig(inputs=(), out=tmp_path, shard_size=1, batch_size=1))  # the least allowed
    assert ScoreStats().as_dict()["texts_per_s"] == 0.0  # nothing timed: no rate


def test_a_classifier_that_drops_an_answer_never_writes_a_short_shard(tmp_path: Path) -> None:
    clf = _clf(tmp_path)
    clf.predict = lambda texts, batch_size: [_Prediction(t) for t in texts[:-1]]  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="shorter"):
        score_shard(clf, "in.tsv", [Record(1, "好"), Record(2, "差")], batch_size=2)


def test_the_same_job_clears_what_a_killed_run_left_and_a_refused_one_clears_nothing(tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    claim_directory(out, JOB)
    half = out / ".part-000-000001.jsonl.77.tmp"
    half.write_text("half")
    with pytest.raises(EdgeSentError):
        claim_directory(out, JOB | {"shard_size": 20})
    assert half.exists()
    claim_directory(out, JOB)
    assert not half.exists() and (out / "job.json").exists()
