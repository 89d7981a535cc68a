"""`edge-sent score --engine ray` on a local Ray instance (the ray flavour's venv, or scripts/ray-venv.sh's):
the same shards as the local engine, byte for byte, resumable across engines; clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import DATA, assert_user_error, run_cli

RAY_PYTHON = os.environ.get("EDGE_SENT_RAY_PYTHON")


@pytest.fixture(scope="session")
def ray_python(request) -> Path:
    """EDGE_SENT_RAY_PYTHON (a venv of scripts/ray-venv.sh), else the ray flavour's venv from the release wheel."""
    if RAY_PYTHON:
        return Path(RAY_PYTHON)
    return request.getfixturevalue("venvs")("ray") / "bin" / "python"


def _score(python: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    command = [str(python), "-m", "edge_sent", "score", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def test_ray_writes_the_local_engines_shards_and_resumes_them(ray_python, tiny_bundle, tmp_path):
    common = [str(tiny_bundle), str(DATA / "dev.tsv"), "--shard-size", "300", "--variant", "int8", "--json"]
    local = run_cli("score", *common, "--out", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    out = tmp_path / "ray"
    ray = _score(ray_python, *common, "--out", str(out), "--engine", "ray", "--actors", "2")
    assert ray.returncode == 0, ray.stderr[-3000:]
    summary = json.loads(ray.stdout)
    assert (summary["engine"], summary["rows"], summary["shards_written"]) == ("ray", 1200, 4)
    shards = sorted(p.name for p in (tmp_path / "local").glob("part-*.jsonl"))
    assert shards == sorted(p.name for p in out.glob("part-*.jsonl")) and len(shards) == 4
    for name in shards:  # int8 depends on its batch: identical only because the shards batch identically
        assert (out / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    # a job interrupted on Ray is finished by the local engine (same job.json, same shard names)
    (out / shards[1]).unlink()
    (out / shards[3]).unlink()
    resumed = run_cli("score", *common, "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert (json.loads(resumed.stdout)["shards_skipped"], json.loads(resumed.stdout)["rows"]) == (2, 600)
    for name in shards:
        assert (out / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name


def test_ray_reads_parquet_into_the_local_engines_shards(ray_python, tiny_bundle, tmp_path):
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI installs the test extra, which has pyarrow")
        pytest.skip("pyarrow is not installed (pip install 'edge-sent[parquet]')")
    texts = [line.split("\t", 1)[1] for line in (DATA / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    source = tmp_path / "dev.parquet"
    pq.write_table(pa.table({"review": texts, "n": list(range(len(texts)))}), source, row_group_size=128)
    common = [str(tiny_bundle), str(source), "--text-column", "review", "--shard-size", "500", "--variant", "int8"]
    common += ["--json"]
    local = run_cli("score", *common, "--out", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    ray = _score(ray_python, *common, "--out", str(tmp_path / "ray"), "--engine", "ray")
    assert ray.returncode == 0, ray.stderr[-3000:]  # the Ray venv reads Parquet: scripts/ray-venv.sh's parquet extra
    assert json.loads(ray.stdout)["rows"] == 1200
    shards = sorted(p.name for p in (tmp_path / "local").glob("part-*.jsonl"))
    assert shards == sorted(p.name for p in (tmp_path / "ray").glob("part-*.jsonl")) and len(shards) == 3
    for name in shards:
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    first = json.loads((tmp_path / "ray" / shards[0]).read_text(encoding="utf-8").splitlines()[0])
    assert (first["id"], first["line"]) == (f"{source}:0", 0)


def test_ray_errors(ray_python, tiny_bundle, tmp_path):
    args = [str(tiny_bundle), str(DATA / "dev.tsv"), "--out", str(tmp_path / "o"), "--engine", "ray"]
    assert_user_error(_score(ray_python, *args, "--address", "127.0.0.1:1"), "cannot reach a Ray cluster")
    assert_user_error(run_cli("score", *args[:-2], "--engine", "spark"), "unknown --engine 'spark'")
    if subprocess.run([os.sys.executable, "-c", "import ray"], capture_output=True).returncode != 0:
        assert_user_error(run_cli("score", *args), "--engine ray needs Ray")


def test_relative_paths_reach_the_workers_of_a_cluster_started_elsewhere(ray_python, tiny_bundle, tmp_path):
    """On a cluster (`--address`) the workers run in another working directory than the driver: the bundle and
    --out must reach them resolved."""
    import socket

    elsewhere, work = tmp_path / "cluster", tmp_path / "job"
    elsewhere.mkdir()
    work.mkdir()
    shutil.copytree(tiny_bundle, work / "bundle")
    shutil.copyfile(DATA / "dev.tsv", work / "dev.tsv")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ray = str(Path(ray_python).parent / "ray")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "RAY_AUTH_MODE": "disabled"}  # a private test cluster on 127.0.0.1
    start = [ray, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2"]
    started = subprocess.run(
        [*start, "--include-dashboard=false", "--disable-usage-stats"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        args = ["bundle", "dev.tsv", "--out", "out", "--shard-size", "600", "--variant", "fp32", "--json"]
        command = [str(ray_python), "-m", "edge_sent", "score", *args, "--engine", "ray"]
        done = subprocess.run(
            [*command, "--address", f"127.0.0.1:{port}"], cwd=work, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(done.stdout)["rows"] == 1200
        assert len(list((work / "out").glob("part-*.jsonl"))) == 2 and not list(elsewhere.glob("out"))
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)
