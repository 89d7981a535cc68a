"""`edge-sent score` on Parquet (the `parquet` extra): the TSV path's answers, bad rows by row number, batches
across row groups, a one-line error without pyarrow, resumable after kill -9."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge_sent.errors import EdgeSentError
from edge_sent.runtime import Classifier
from edge_sent.runtime.scoring.run import ScoreConfig, score
from tests.conftest import DATA, assert_user_error, kill_after_shards, run_cli

ROWS = 1200  # ChnSentiCorp dev


@pytest.fixture(scope="module")
def pq() -> Any:
    try:
        import pyarrow.parquet
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI installs the test extra, which has pyarrow")
        pytest.skip("pyarrow is not installed (pip install 'edge-sent[parquet]')")
    return pyarrow.parquet


@pytest.fixture(scope="module")
def fp32(tiny_bundle: Path) -> Classifier:
    return Classifier.load(tiny_bundle, variant="fp32", provider="cpu")


def _dev_texts() -> list[str]:
    return [line.split("\t", 1)[1] for line in (DATA / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]]


def _write(pq: Any, path: Path, columns: dict[str, list], row_group_size: int = 100) -> Path:
    import pyarrow as pa

    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def _rows(out: Path) -> list[dict]:
    rows = []
    for shard in sorted(out.glob("part-*.jsonl")):
        rows += [json.loads(line) for line in shard.read_text(encoding="utf-8").splitlines()]
    return rows


def test_parquet_gives_the_tsv_paths_answers_in_batches_across_row_groups(pq, fp32, tmp_path, monkeypatch):
    texts = _dev_texts()
    source = _write(pq, tmp_path / "dev.parquet", {"review": texts, "n": list(range(ROWS))}, row_group_size=97)
    monkeypatch.setattr("edge_sent.readers.PARQUET_BATCH_ROWS", 61)  # batches that straddle row groups
    score(fp32, ScoreConfig(inputs=(DATA / "dev.tsv",), out=tmp_path / "tsv", shard_size=250))
    stats = score(fp32, ScoreConfig(inputs=(source,), out=tmp_path / "pq", text_column="review", shard_size=250))
    assert (stats.rows, stats.shards_written) == (ROWS, 5)
    tsv, parquet = _rows(tmp_path / "tsv"), _rows(tmp_path / "pq")
    # the default id is FILE:ROW, rows counted from 0 (pyarrow's and pandas' numbering)
    assert [r["id"] for r in parquet] == [f"{source}:{n}" for n in range(ROWS)]
    assert [r["line"] for r in parquet] == list(range(ROWS))
    strip = ("id", "line")
    assert [{k: v for k, v in r.items() if k not in strip} for r in parquet] == [
        {k: v for k, v in r.items() if k not in strip} for r in tsv
    ]
    assert len({r["probabilities"][fp32.labels[0]] for r in parquet}) > 100  # answers that differ across rows
    with_ids = score(
        fp32, ScoreConfig(inputs=(source,), out=tmp_path / "ids", text_column="review", id_column="n", shard_size=500)
    )
    assert with_ids.rows == ROWS and [r["id"] for r in _rows(tmp_path / "ids")] == [str(n) for n in range(ROWS)]


def test_bad_rows_by_row_number_or_counted(pq, fp32, tmp_path):
    source = _write(
        pq,
        tmp_path / "in.parquet",
        {"text": ["很好", None, "  ", "太差", "还行"], "id": ["a", "b", "c", None, "e"], "stars": [5, 1, 3, 1, 4]},
        row_group_size=2,
    )
    with pytest.raises(EdgeSentError, match=rf"^{source}:row 1: 'text' must be a string, got null$"):
        score(fp32, ScoreConfig(inputs=(source,), out=tmp_path / "strict", text_column="text", id_column="id"))
    config = ScoreConfig(inputs=(source,), out=tmp_path / "o", text_column="text", id_column="id", skip_bad_rows=True)
    stats = score(fp32, config)
    assert [r["id"] for r in _rows(tmp_path / "o")] == ["a", "e"]
    assert (stats.rows, stats.empty_skipped) == (2, 1)
    assert stats.bad_rows == [
        f"{source}:row 1: 'text' must be a string, got null",
        f"{source}:row 3: 'id' is null",
    ]
    # a column that is not text, or absent: refused before the output directory is created
    for column, needle in (("stars", "column 'stars' holds int64, not strings"), ("body", "no column 'body'")):
        with pytest.raises(EdgeSentError, match=needle):
            score(fp32, ScoreConfig(inputs=(source,), out=tmp_path / column, text_column=column))
        assert not (tmp_path / column).exists()
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"PAR1 not really")
    with pytest.raises(EdgeSentError, match=rf"^{junk}: not a readable Parquet file"):
        score(fp32, ScoreConfig(inputs=(junk,), out=tmp_path / "junk"))


def test_without_pyarrow_a_one_line_error_and_nothing_written(pq, tiny_bundle, tmp_path):
    source = _write(pq, tmp_path / "in.parquet", {"text_a": ["很好"]})
    blocker = tmp_path / "blocked" / "pyarrow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('pyarrow blocked by the test')\n")
    out = tmp_path / "o"
    proc = run_cli("score", str(tiny_bundle), str(source), "--out", str(out), env={"PYTHONPATH": str(blocker.parent)})
    assert_user_error(proc, "reading Parquet needs pyarrow: pip install 'edge-sent[parquet]'")
    assert not out.exists()


@pytest.mark.parametrize("shards_before_kill", [2, 7])
def test_kill_9_then_rerun_scores_every_parquet_row_exactly_once(pq, tiny_bundle, tmp_path, shards_before_kill):
    source = _write(pq, tmp_path / "dev.parquet", {"text_a": _dev_texts()}, row_group_size=250)
    out = tmp_path / "o"
    command = [sys.executable, "-m", "edge_sent", "score", str(tiny_bundle), str(source), "--out", str(out)]
    command += ["--shard-size", "100", "--variant", "fp32", "--provider", "cpu", "--json"]
    done_before = kill_after_shards(command, out, shards_before_kill)
    assert 0 < done_before < 12  # killed in the middle of the job
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert (summary["shards_skipped"], summary["shards_written"]) == (done_before, 12 - done_before)
    assert summary["resumed_rows"] == 100 * done_before
    assert [r["id"] for r in _rows(out)] == [f"{source}:{n}" for n in range(ROWS)]
    assert not list(out.glob(".part-*"))
