"""`edge-sent eval --report`: one self-contained HTML page, checked as a reader sees it in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import DATA, assert_user_error, run_cli
from tests.test_js import JS, chromium, node  # noqa: F401  (fixtures: skip outside CI, fail in CI when absent)

N_TEXTS = 200
FIGURES = {"confusion", "reliability-before", "reliability-after", "deltas", "latency"}


@pytest.fixture(scope="module")
def report(tiny_bundle, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("report") / "report.html"
    proc = run_cli(
        "eval", str(tiny_bundle), "--data", str(DATA / "test.tsv"), "--limit", str(N_TEXTS), "--variant", "fp32",
        "--report", str(out), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout)


def test_the_report_holds_every_variant_and_its_own_figures(report, tiny_bundle):
    path, result = report
    manifest = json.loads((tiny_bundle / "manifest.json").read_text(encoding="utf-8"))
    comparison = result["comparison"]
    assert set(comparison["variants"]) | set(comparison["skipped"]) == set(manifest["variants"])
    assert "fp16" in comparison["skipped"] and "CUDA" in comparison["skipped"]["fp16"]
    assert comparison["variants"]["fp32"]["vs_fp32"]["label_agreement"] == 1.0
    assert comparison["variants"]["fp32"]["accuracy"] == pytest.approx(result["accuracy"])
    spread = {name: r["delta"]["quantiles"]["max"] for name, r in comparison["variants"].items() if name != "fp32"}
    assert max(spread.values()) > 1e-3, "the variants' answers should differ from fp32's somewhere"
    assert sum(b["n"] for b in result["calibration"]["after"]["bins"]) == N_TEXTS
    cal = result["calibration"]
    assert cal["temperature"] == manifest["calibration"]["temperature"] != 1.0 and "before" in cal
    assert result["n"] == N_TEXTS and sum(map(sum, result["confusion"])) == N_TEXTS
    html = path.read_text(encoding="utf-8")
    # self-contained: nothing fetched, no script; the only URL is the SVG namespace
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\(", html, re.IGNORECASE)
    assert set(re.findall(r"https?://[^\"' <]+", html)) <= {"http://www.w3.org/2000/svg"}
    for name, row in comparison["variants"].items():
        assert f"<td>{name}</td>" in html and f"{row['accuracy']:.4f}" in html


def test_the_page_in_headless_chromium_loads_without_errors_and_draws_its_figures(report, node, chromium, tmp_path):  # noqa: F811
    path, _ = report
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [node, str(JS / "report-page.mjs"), str(path), chromium, str(shot)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    page = json.loads(proc.stdout)
    assert page["console"] == [], page["console"]
    assert page["requests"] == [path.as_uri()], "the page fetched something besides itself"
    figures = {f["id"]: f for f in page["figures"]}
    assert set(figures) == FIGURES
    for figure in figures.values():
        assert figure["width"] > 100 and figure["height"] > 100 and figure["shapes"] >= 4, figure
    assert page["tables"] >= 3 and shot.stat().st_size > 20_000
    if os.environ.get("EDGE_SENT_DOCS_SCREENSHOT"):  # how docs/assets/eval-report.png is made
        shutil.copyfile(shot, os.environ["EDGE_SENT_DOCS_SCREENSHOT"])


def test_an_unwritable_report_is_one_line_and_leaves_no_file(tiny_bundle, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the report's folder should be", encoding="utf-8")
    proc = run_cli("eval", str(tiny_bundle), "--data", str(DATA / "test.tsv"), "--limit", "20", "--report",
                   str(blocker / "r.html"))  # fmt: skip
    assert_user_error(proc, "cannot write", "r.html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-folder"]


def test_a_report_path_that_is_a_folder_is_refused_before_any_work(tiny_bundle, tmp_path):
    proc = run_cli("eval", str(tiny_bundle), "--data", str(DATA / "test.tsv"), "--report", str(tmp_path))
    assert_user_error(proc, "is a directory")
