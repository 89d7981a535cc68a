"""`edge-sent eval --report`: one self-contained HTML page, checked as a reader sees it in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html import escape
from pathlib import Path

import pytest

from tests.conftest import DATA, assert_user_error, run_cli
from tests.test_js import JS, chromium, node  # noqa: F401  (fixtures: skip outside CI, fail in CI when absent)

N_TEXTS = 200
FIGURES = {"confusion", "reliability-before", "reliability-after", "deltas", "latency"}


@pytest.fixture(scope="module")
def report(tiny_bundle, tmp_path_factory) -> tuple[Path, dict]:
    """`tune` on this host, then `eval --report` with the same host cache: the report's verdict must be tune's."""
    base = tmp_path_factory.mktemp("report")
    env = {"EDGE_SENT_CACHE": str(base / "cache")}
    tune = run_cli("tune", str(tiny_bundle), "--json", env=env)
    assert tune.returncode == 0, tune.stderr
    out = base / "report.html"
    proc = run_cli(
        "eval", str(tiny_bundle), "--data", str(DATA / "test.tsv"), "--limit", str(N_TEXTS), "--variant", "fp32",
        "--report", str(out), "--json", env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout) | {"tune": json.loads(tune.stdout)}


def test_the_verdict_is_tunes_choice_on_this_host_with_the_most_accurate_and_what_was_not_measured(report):
    path, result = report
    verdict, tune = result["verdict"], result["tune"]
    assert (verdict["variant"], verdict["reason"]) == (tune["variant"], tune["reason"])
    assert verdict["decided_by"] == "this host" and verdict["sentence"].startswith(f"deploy {tune['variant']} on")
    html = path.read_text(encoding="utf-8")
    section = html[html.index('<section id="verdict"') : html.index("</section>")]
    assert f'data-variant="{tune["variant"]}"' in section and escape(tune["reason"]) in section
    rows = result["comparison"]["variants"]
    best = max(rows, key=lambda name: rows[name]["accuracy"])
    assert f"Most accurate on these {N_TEXTS} texts: {best}" in section
    assert "Not measured here: fp16 (" in section  # the variant this provider cannot run, with its reason
    share = result["truncated"] / N_TEXTS
    assert result["truncated"] and f"{share:.0%} of the texts ({result['truncated']} of {N_TEXTS})" in section


def test_the_cpu_is_summarised_by_its_class_and_the_flags_that_matter():
    from edge_sent.runtime.report.html import cpu_summary

    dump = ["avx", "avx2", "avx512bw", "avx512cd", "avx512dq", "avx512f", "avx512vl", "avx512_vnni", "f16c", "fma"]
    assert cpu_summary(dump) == "x86-64 AVX-512 VNNI (avx512_vnni, avx512f, avx2, fma; 10 ISA flags in all)"
    assert cpu_summary(["avx", "avx2", "fma"]).startswith("x86-64 AVX2 (avx2, fma;")
    assert cpu_summary(["asimd", "asimddp", "i8mm"], "aarch64").startswith("Arm64 NEON + dotprod, i8mm (")


def test_the_report_names_the_calibration_the_graph_applies(report):
    """A vector-scaled bundle is described as such (not as a temperature), with why it was chosen; an
    uncalibrated one says so and why."""
    from edge_sent.calibration import LogitMap
    from edge_sent.runtime.report import html

    _, result = report
    vector = LogitMap("vector", 1.0, (0.9, 1.2), (0.1, -0.1))
    cal = result["calibration"] | {"method": "vector", "described": vector.describe(), "chosen_because": "vector: best"}
    page = html._summary(result | {"calibration": cal}) + html._calibration(result | {"calibration": cal})
    assert (
        "vector scaling: logits × (0.900, 1.200) + (+0.100, -0.100)" in page and "Chosen on dev: vector: best" in page
    )
    assert "temperature" not in page and "T = " not in page
    none = {"after": cal["after"], "temperature": 1.0, "method": "none", "described": LogitMap().describe()}
    page = html._calibration(result | {"calibration": none | {"chosen_because": "T = 1 kept: no map helps"}})
    assert "applies no calibration (T = 1). Chosen on dev: T = 1 kept: no map helps." in page


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
        # readable: no text drawn over another, none cut off at the figure's edge
        assert figure["overlaps"] == [] and figure["outside"] == [], figure
    assert page["tables"] >= 3 and shot.stat().st_size > 20_000
    assert page["verdict"]["variant"] == report[1]["tune"]["variant"]
    (variants,) = page["wide"]  # the variants table: the page's width, no number broken across lines
    assert variants["nowrap"] and variants["wrapped"] == [] and variants["width"] >= 0.95 * variants["page"]
    assert not page["overflow"]
    texts = {name: " | ".join(figures[name]["texts"]) for name in figures}
    for name in report[1]["comparison"]["variants"]:
        assert name in texts["latency"]
    assert "milliseconds (batch of 1)" in texts["latency"] and " ms" in texts["latency"]
    for name in ("reliability-before", "reliability-after"):
        for label in ("accuracy", "confidence (top probability)", "over-confident gap", "under-confident gap"):
            assert label in texts[name], (name, label)
        # the count per bin is drawn above it, and the confidence axis starts at 1/num_labels
        counts = [b["n"] for b in report[1]["calibration"]["after"]["bins"] if b["n"]]
        assert "0.5" in figures[name]["texts"] and "0.0" not in figures[name]["texts"]
        assert name != "reliability-after" or all(str(n) in figures[name]["texts"] for n in counts)
    assert "≤ 10−7" in figures["deltas"]["texts"] and "≤ 10−1" in figures["deltas"]["texts"]  # 10^-k typeset
    assert any(t.endswith("%") for t in figures["deltas"]["texts"])  # the share on each bar
    if os.environ.get("EDGE_SENT_DOCS_SCREENSHOT"):  # the tiny bundle's page (the docs' is a MiniLM bundle's)
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


def test_eval_prints_per_label_scores_and_titles_on_their_own_lines(tiny_bundle):
    proc = run_cli(
        "eval", str(tiny_bundle), "--data", str(DATA / "test.tsv"), "--limit", "40", "--variant", "fp32",
        env={"COLUMNS": "100"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{DATA / 'test.tsv'} · variant fp32 · CPUExecutionProvider"  # a title, not a table's border
    header = next(line.split() for line in lines if line.startswith("label"))
    assert header == ["label", "precision", "recall", "F1", "support"]
    assert "per label:" in lines and "confusion (rows: true, columns: predicted):" in lines
    assert all(len(line) <= 100 and line == line.rstrip() for line in lines) and "…" not in proc.stdout
