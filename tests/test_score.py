"""`edge-sent score`: shards equal to `Classifier.predict`, resumable after kill -9 at any moment, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_sent.runtime import Classifier
from edge_sent.runtime.scoring.run import ScoreConfig, score
from tests.conftest import DATA, assert_user_error, kill_after_shards, run_cli

ROWS = 1200  # ChnSentiCorp dev


def _rows(out: Path) -> list[dict]:
    rows = []
    for shard in sorted(out.glob("part-*.jsonl")):
        rows += [json.loads(line) for line in shard.read_text(encoding="utf-8").splitlines()]
    return rows


def _dev_texts() -> list[str]:
    return [line.split("\t", 1)[1] for line in (DATA / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]]


@pytest.fixture(scope="module")
def fp32(tiny_bundle: Path) -> Classifier:
    return Classifier.load(tiny_bundle, variant="fp32", provider="cpu")


def test_shards_hold_every_row_once_with_the_classifiers_answers(fp32, tmp_path):
    stats = score(fp32, ScoreConfig(inputs=(DATA / "dev.tsv",), out=tmp_path / "o", shard_size=250))
    assert (stats.rows, stats.shards_written, stats.shards_skipped) == (ROWS, 5, 0)
    rows = _rows(tmp_path / "o")
    # ids follow FILE:LINE (line 1 is the header), in input order
    assert [r["id"] for r in rows] == [f"{DATA / 'dev.tsv'}:{n}" for n in range(2, ROWS + 2)]
    expected = fp32.predict(_dev_texts())
    got = np.array([[r["probabilities"][label] for label in fp32.labels] for r in rows])
    want = np.array([[p.probabilities[label] for label in fp32.labels] for p in expected])
    assert np.ptp(want[:, 0]) > 1e-3  # answers that differ across texts
    assert np.abs(got - want).max() < 1e-5
    assert [r["label"] for r in rows] == [p.label for p in expected]
    assert sum(r["truncated"] for r in rows) == sum(p.truncated for p in expected)
    again = score(fp32, ScoreConfig(inputs=(DATA / "dev.tsv",), out=tmp_path / "o", shard_size=250))
    assert (again.rows, again.shards_skipped, again.resumed_rows) == (0, 5, ROWS)


def test_a_shard_is_tokenized_in_chunks(fp32, tmp_path, monkeypatch):
    """Memory over large inputs: a 10,000-row shard tokenized in one call held ~75 MB of the tokenizer's native
    objects at once and fragmented the heap shard after shard; the calls stay at ENCODE_CHUNK texts."""
    from edge_sent.tokenization import ENCODE_CHUNK

    real = fp32.engine.tokenizer.tokenizer
    calls: list[int] = []

    class Counting:
        truncation = real.truncation

        def encode_batch(self, texts, **kw):
            calls.append(len(texts))
            return real.encode_batch(texts, **kw)

    monkeypatch.setattr(fp32.engine.tokenizer, "tokenizer", Counting())
    stats = score(fp32, ScoreConfig(inputs=(DATA / "dev.tsv",), out=tmp_path / "o", shard_size=ROWS))
    assert stats.rows == ROWS and sum(calls) == ROWS
    assert max(calls) == ENCODE_CHUNK < ROWS


def test_ids_from_a_column_several_inputs_empty_and_bad_rows(fp32, tmp_path):
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text(
        '{"id": "a", "t": "很好"}\n{"id": "b", "t": "   "}\nnot json\n{"id": "c", "t": "太差"}\n', encoding="utf-8"
    )
    txt = tmp_path / "in.txt"
    txt.write_text("一\n\n二\n", encoding="utf-8")
    with pytest.raises(Exception, match=rf"{jsonl}:3: malformed JSON"):
        score(fp32, ScoreConfig(inputs=(jsonl,), out=tmp_path / "strict", text_column="t", id_column="id"))
    stats = score(
        fp32,
        ScoreConfig(inputs=(jsonl,), out=tmp_path / "o", text_column="t", id_column="id", skip_bad_rows=True),
    )
    assert [r["id"] for r in _rows(tmp_path / "o")] == ["a", "c"]
    assert (stats.rows, stats.empty_skipped, len(stats.bad_rows)) == (2, 1, 1)
    assert stats.bad_rows[0].startswith(f"{jsonl}:3: malformed JSON")
    stats = score(fp32, ScoreConfig(inputs=(txt, txt), out=tmp_path / "two", shard_size=1))
    assert [r["id"] for r in _rows(tmp_path / "two")] == [f"{txt}:1", f"{txt}:3", f"{txt}:1", f"{txt}:3"]
    assert sorted(p.name for p in (tmp_path / "two").glob("part-*")) == [
        "part-000-000000.jsonl",
        "part-000-000001.jsonl",
        "part-001-000000.jsonl",
        "part-001-000001.jsonl",
    ]


def test_cli_errors(tiny_bundle, tmp_path):
    out = tmp_path / "o"
    proc = run_cli("score", str(tiny_bundle), str(DATA / "dev.tsv"), "--out", str(out), "--shard-size", "600")
    assert proc.returncode == 0, proc.stderr
    assert "scored 1200 texts into 2 shard(s)" in proc.stderr
    other = tmp_path / "other.tsv"
    other.write_text("label\ttext_a\n1\t好\n", encoding="utf-8")
    assert_user_error(
        run_cli("score", str(tiny_bundle), str(other), "--out", str(out)), "holds the shards of a different job"
    )
    assert_user_error(
        run_cli("score", str(tiny_bundle), str(tmp_path / "nope.tsv"), "--out", str(tmp_path / "x")),
        "nope.tsv: file not found",
    )
    bad = tmp_path / "bad.tsv"
    bad.write_text("label\ttext_a\n1\t好\n0\t差\textra\n", encoding="utf-8")
    assert_user_error(
        run_cli("score", str(tiny_bundle), str(bad), "--out", str(tmp_path / "b")), f"{bad}:3: malformed row"
    )
    proc = run_cli("score", str(tiny_bundle), str(bad), "--out", str(tmp_path / "c"), "--skip-bad-rows", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["rows"], summary["bad_rows"]) == (1, 1) and summary["first_bad_rows"][0].startswith(f"{bad}:3:")


@pytest.mark.parametrize("shards_before_kill", [1, 6, 10])
def test_kill_9_at_any_moment_then_rerun_scores_every_row_exactly_once(tiny_bundle, tmp_path, shards_before_kill):
    out = tmp_path / "o"
    command = [sys.executable, "-m", "edge_sent", "score", str(tiny_bundle), str(DATA / "dev.tsv"), "--out", str(out)]
    command += ["--shard-size", "100", "--variant", "fp32", "--provider", "cpu", "--json"]
    done_before = kill_after_shards(command, out, shards_before_kill)
    assert 0 < done_before < 12  # killed in the middle of the job (a kill with a shard half-written: test_score_faults)
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["shards_skipped"] == done_before and summary["shards_written"] == 12 - done_before
    ids = [r["id"] for r in _rows(out)]
    assert len(ids) == ROWS and ids == [f"{DATA / 'dev.tsv'}:{n}" for n in range(2, ROWS + 2)]
    assert not list(out.glob(".part-*"))  # no temporary shard left behind
