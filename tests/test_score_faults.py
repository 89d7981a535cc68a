"""`edge-sent score` under faults: a rerun against another model, two runs on one folder, a kill while a shard is
half-written, a full disk. Each fault is planted where it matters (tests/score_child.py), not left to timing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_sent.contract import MANIFEST
from edge_sent.integrity import file_entry
from edge_sent.runtime.scoring.job import changes
from tests.conftest import DATA, ROOT, assert_user_error, run_cli

ROWS = 1200  # ChnSentiCorp dev
IDS = [f"{DATA / 'dev.tsv'}:{n}" for n in range(2, ROWS + 2)]


def _ids(out: Path) -> list[str]:
    return [json.loads(line)["id"] for p in sorted(out.glob("part-*.jsonl")) for line in p.read_text().splitlines()]


def _score(bundle: Path, out: Path, *extra: str) -> list[str]:
    return [str(bundle), str(DATA / "dev.tsv"), "--out", str(out), "--shard-size", "100", "--provider", "cpu", *extra]


def _child(mode: str, at: int, flag: Path, args: list[str]) -> subprocess.Popen:
    command = [sys.executable, str(ROOT / "tests" / "score_child.py"), mode, str(at), str(flag), "--", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_a_rerun_on_another_model_variant_or_batch_is_refused_naming_what_changed(tiny_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    out = tmp_path / "o"
    first = run_cli("score", *_score(bundle, out, "--variant", "int8", "--batch-size", "32"))
    assert first.returncode == 0, first.stderr
    job = json.loads((out / "job.json").read_text())
    assert job["model"]["variant"] == "int8" and job["model"]["batch_size"] == 32 and job["model"]["provider"]
    (out / "part-000-000003.jsonl").unlink()  # something left to resume
    # int8's answers move with their batch: another --batch-size is another job
    assert_user_error(
        run_cli("score", *_score(bundle, out, "--variant", "int8", "--batch-size", "8")),
        "different job",
        "--batch-size (the variant's answers depend on their batch): 32 → 8",
        f"delete {out} to start over",
    )
    assert_user_error(
        run_cli("score", *_score(bundle, out, "--variant", "int8-block")), "the variant: int8 → int8-block"
    )
    # the same bundle folder re-exported (here: another graph under the same name, the manifest rewritten)
    manifest = json.loads((bundle / MANIFEST).read_text())
    graph = manifest["variants"]["int8"]["file"]
    shutil.copyfile(bundle / manifest["variants"]["int8-block"]["file"], bundle / graph)
    manifest["files"][graph] = file_entry(bundle / graph)
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    assert_user_error(
        run_cli("score", *_score(bundle, out, "--variant", "int8", "--batch-size", "32")),
        "the bundle's model (its graph, tokenizer or labels changed",
    )
    assert len(list(out.glob("part-*.jsonl"))) == 11  # nothing written by the refused runs


def test_a_batch_independent_variant_resumes_with_another_batch_size(tiny_bundle, tmp_path):
    out = tmp_path / "o"
    first = run_cli("score", *_score(tiny_bundle, out, "--variant", "fp32", "--batch-size", "32"))
    assert first.returncode == 0, first.stderr
    assert json.loads((out / "job.json").read_text())["model"]["batch_size"] is None
    (out / "part-000-000005.jsonl").unlink()
    again = run_cli("score", *_score(tiny_bundle, out, "--variant", "fp32", "--batch-size", "8", "--json"))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["rows"] == 100 and _ids(out) == IDS


def test_changes_name_every_field_and_an_old_job_file() -> None:
    model = {"sha256": "a", "variant": "fp32", "provider": "cpu", "precision": "fp32", "batch_size": None}
    job = {"inputs": [], "bundle": "/b", "model": model, "text_column": "t", "shard_size": 10}
    moved = job | {"model": model | {"provider": "openvino", "precision": "bf16"}, "shard_size": 20}
    assert changes(job, moved) == [
        "the provider: cpu → openvino",
        "the precision: fp32 → bf16",
        "--shard-size: 10 → 20",
    ]
    old = {k: v for k, v in job.items() if k != "model"}
    assert changes(old, job) == ["the model (job.json predates the model record)"]


def test_two_runs_on_one_folder_the_second_stops_at_once_and_the_first_finishes(tiny_bundle, tmp_path):
    out, flag = tmp_path / "o", tmp_path / "paused"
    first = _child("pause", 2, flag, _score(tiny_bundle, out, "--variant", "fp32", "--json"))
    try:
        _wait_for(flag, first)  # the first run holds a written, not yet renamed shard
        assert len(list(out.glob(".part-*.tmp"))) == 1
        for other in (DATA / "dev.tsv", DATA / "test.tsv"):  # the same job, and another job on the same folder
            args = [str(tiny_bundle), str(other), "--out", str(out), "--shard-size", "100", "--variant", "fp32"]
            assert_user_error(run_cli("score", *args), f"{out} is being written by another `edge-sent score` run")
        assert len(list(out.glob(".part-*.tmp"))) == 1  # the second run deleted nothing
        flag.with_name(flag.name + ".go").write_text("")
        stdout, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr
    assert json.loads(stdout)["rows"] == ROWS and _ids(out) == IDS


@pytest.mark.parametrize("at", [0, 5, 11])
def test_killed_with_a_shard_half_written_then_rerun_scores_every_row_once(tiny_bundle, tmp_path, at):
    out = tmp_path / "o"
    args = _score(tiny_bundle, out, "--variant", "fp32", "--json")
    proc = _child("kill", at, tmp_path / "unused", args)
    proc.communicate(timeout=300)
    assert proc.returncode == -9
    assert len(list(out.glob(".part-*.tmp"))) == 1 and len(list(out.glob("part-*.jsonl"))) == at
    rerun = run_cli("score", *args)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert (summary["shards_skipped"], summary["shards_written"]) == (at, 12 - at)
    assert _ids(out) == IDS and not list(out.glob(".*.tmp"))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted for the test (root only; CI runs as root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_one_line_no_partial_shard_and_the_rerun_finishes(tiny_bundle, small_disk):
    out = small_disk / "o"
    args = _score(tiny_bundle, out, "--variant", "fp32", "--json")
    full = run_cli("score", *args)
    assert_user_error(full, "No space left on device", "rerun the same command")
    done_before = len(list(out.glob("part-*.jsonl")))
    assert 0 < done_before < 12 and not list(out.glob(".*.tmp"))
    subprocess.run(["mount", "-o", "remount,size=2m", str(small_disk)], check=True)
    rerun = run_cli("score", *args)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["shards_skipped"] == done_before
    assert _ids(out) == IDS and not list(out.glob(".*.tmp"))


def test_in_process_the_lock_excludes_a_second_holder_and_the_job_check_names_the_change(tmp_path):
    """(the same rules as the CLI tests above, in one process: fast enough for the mutation run)"""
    from edge_sent.errors import EdgeSentError
    from edge_sent.runtime.scoring.job import claim_directory, output_lock

    out = tmp_path / "o"
    model = {"sha256": "a", "variant": "int8", "provider": "cpu", "precision": "fp32", "batch_size": 32}
    job = {"inputs": [], "bundle": "/b", "model": model, "shard_size": 10}
    with output_lock(out):
        with pytest.raises(EdgeSentError, match="is being written by another"), output_lock(out):
            pass
        claim_directory(out, job)
        claim_directory(out, job)  # the same job: accepted
        (out / ".part-000-000001.jsonl.77.tmp").write_text("half")
        (out / "part-000-000000.jsonl").write_text("{}\n")
        with pytest.raises(EdgeSentError, match=r"changed: --batch-size .*: 32 → 8; --shard-size: 10 → 20"):
            claim_directory(out, job | {"model": model | {"batch_size": 8}, "shard_size": 20})
        assert (out / ".part-000-000001.jsonl.77.tmp").exists()  # a refused run removes nothing
        claim_directory(out, job)
        assert not list(out.glob(".*.tmp"))  # the same job clears what a killed run left
    with output_lock(out):  # released at the end of the block
        pass
    other = tmp_path / "other"
    other.mkdir()
    (other / "part-000-000000.jsonl").write_text("{}\n")
    with pytest.raises(EdgeSentError, match=r"holds shards but no job\.json"):
        claim_directory(other, job)
    (tmp_path / "file").write_text("")
    with pytest.raises(EdgeSentError, match="exists and is not a directory"), output_lock(tmp_path / "file"):
        pass


def test_in_process_summary_input_checks_and_shard_lines(tiny_bundle, tmp_path):
    """(fast, for the mutation run) the summary's fields, the setting and input checks, a shard's JSON lines"""
    import re

    from edge_sent.errors import EdgeSentError
    from edge_sent.runtime import Classifier
    from edge_sent.runtime.scoring.run import ScoreConfig, ScoreStats, check_inputs, score

    summary = ScoreStats(rows=10, seconds=2.0, bad_rows=[f"r{i}" for i in range(12)]).as_dict()
    assert (summary["rows"], summary["seconds"], summary["texts_per_s"]) == (10, 2.0, 5.0)
    assert summary["bad_rows"] == 12 and summary["first_bad_rows"] == [f"r{i}" for i in range(10)]
    assert ScoreStats().as_dict()["texts_per_s"] == 0.0 and ScoreStats().seconds == 0.0
    for sizes in ({"shard_size": 0}, {"batch_size": 0}):
        with pytest.raises(EdgeSentError, match=r"^--shard-size and --batch-size must be at least 1$"):
            check_inputs(ScoreConfig(inputs=(), out=tmp_path, **sizes))  # type: ignore[arg-type]
    check_inputs(ScoreConfig(inputs=(), out=tmp_path, shard_size=1, batch_size=1))
    missing = tmp_path / "missing.tsv"
    with pytest.raises(EdgeSentError, match=rf"^{re.escape(str(missing))}: file not found$"):
        check_inputs(ScoreConfig(inputs=(missing,), out=tmp_path))
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "好评", "t": "很好"}\n{"id": "差评", "t": "太差"}\n', encoding="utf-8")
    clf = Classifier.load(tiny_bundle, variant="fp32", provider="cpu", probe=False)
    config = ScoreConfig(inputs=(source,), out=tmp_path / "o", text_column="t", id_column="id", batch_size=1)
    assert score(clf, config).rows == 2
    lines = (tmp_path / "o" / "part-000-000000.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["line"] for line in lines] == [1, 2] and '"id": "好评"' in lines[0]
