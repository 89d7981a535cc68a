"""`edge-sent bench` runs on a random:tiny bundle and writes valid JSON with every field (no timing asserted)."""

from __future__ import annotations

import json

from tests.conftest import DATA, run_cli


def test_bench_writes_json_with_every_field(tiny_bundle, tmp_path):
    out = tmp_path / "bench.json"
    proc = run_cli(
        "bench", str(tiny_bundle), "--seq", "16,64", "--runs", "6", "--data", str(DATA / "dev.tsv"), "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert set(result) >= {"edge_sent_version", "bundle", "machine", "random_weights", "batch_size", "variants"}
    assert set(result["variants"]) == {"fp32", "int8", "int8-block", "int8-static", "int4"}  # fp16 is CUDA-only
    for entry in result["variants"].values():
        assert entry["file_bytes"] > 0 and entry["provider"] == "CPUExecutionProvider"
        assert set(entry["latency"]) == {"16", "64"}
        for stats in entry["latency"].values():
            assert stats["runs"] >= 6 and 0 < stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"]
        assert entry["throughput"]["texts"] == 1200 and entry["throughput"]["texts_per_s"] > 0
