"""Journeys as installed: for each install flavour docs/install.md tells users about, the release wheel alone in a
fresh venv runs that flavour's commands the way a user runs them (tests/journeys.py: `env -i` with PATH, LANG and
a new empty HOME, from outside the repository), on a bundle from a default `edge-sent export` (its quantized
variants and host-check texts). Every command: exit 0, its expected output, no traceback; first with an empty
cache, then again with the cache the first use left. Bad input: one `error:` line, non-zero exit, nothing
half-written.

None of the variables the rest of the suite sets (HOME of the session, HF_HUB_OFFLINE, EDGE_SENT_*, COLUMNS,
PYTHONPATH) reaches these commands: each journey is the run without them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA, ROOT
from tests.journeys import (
    FLAVOURS,
    User,
    cache_files,
    first_use_note,
    leftovers,
    new_user,
    pip_env,
    post_json,
    serving,
)

pytestmark = pytest.mark.slow
TEXTS = ("房间很干净", "服务太差了")
API = (
    "import sys; from edge_sent.runtime import Classifier; clf = Classifier.load(sys.argv[1]); "
    "[print(p.label, round(sum(p.probabilities.values()), 4)) for p in clf.predict(sys.argv[2:])]"
)


@pytest.fixture(scope="session")
def default_bundle(tiny_run, tmp_path_factory) -> Path:
    """`edge-sent export RUN --out BUNDLE` with every default (the variants `auto` may take, host-check texts)."""
    out = tmp_path_factory.mktemp("journey-bundle") / "bundle"
    proc = subprocess.run(
        [sys.executable, "-m", "edge_sent", "export", str(tiny_run), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert len(manifest["variants"]) > 1 and manifest["host_check"]["n_texts"] > 0
    return out


def labels_of(bundle: Path) -> set[str]:
    return set(json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))["labels"])


def copy_data(user: User, rows: int = 60) -> Path:
    """A labelled TSV of the user's own, in their working folder."""
    lines = (DATA / "test.tsv").read_text(encoding="utf-8").splitlines()[: rows + 1]
    path = user.cwd / "reviews.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def runtime_commands(user: User, bundle: Path, data: Path, use: str) -> dict[str, subprocess.CompletedProcess]:
    """The runtime's documented commands, each checked for its expected output; returns them by name."""
    labels = labels_of(bundle)
    done = {"predict": user.ok("edge-sent", "predict", str(bundle), *TEXTS)}
    assert TEXTS[0] in done["predict"].stdout and any(label in done["predict"].stdout for label in labels)
    done["predict --json"] = user.ok("edge-sent", "predict", str(bundle), TEXTS[0], "--json")
    answer = json.loads(done["predict --json"].stdout)
    assert answer["label"] in labels and abs(sum(answer["probabilities"].values()) - 1) < 1e-4
    done["info"] = user.ok("edge-sent", "info", str(bundle))
    assert "random:tiny" in done["info"].stdout and "int8" in done["info"].stdout
    done["verify"] = user.ok("edge-sent", "verify", str(bundle))
    assert done["verify"].stdout.startswith("ok:")
    done["tune"] = user.ok("edge-sent", "tune", str(bundle))
    assert "auto on cpu" in done["tune"].stdout
    done["eval"] = user.ok("edge-sent", "eval", str(bundle), "--data", str(data), "--json")
    assert 0.0 <= json.loads(done["eval"].stdout)["accuracy"] <= 1.0
    out = user.cwd / f"scored-{use}"
    done["score"] = user.ok("edge-sent", "score", str(bundle), str(data), "--out", str(out), "--shard-size", "25")
    rows = [json.loads(line) for part in sorted(out.glob("part-*.jsonl")) for line in part.read_text().splitlines()]
    assert len(rows) == len(data.read_text(encoding="utf-8").splitlines()) - 1
    done["python API"] = user.ok("python", "-c", API, str(bundle), *TEXTS)
    assert [line.split()[0] in labels for line in done["python API"].stdout.splitlines()] == [True, True]
    assert all(line.split()[1] == "1.0" for line in done["python API"].stdout.splitlines())
    return done


def test_the_release_builds_and_passes_twine(release):
    sdist, wheel = release
    assert sdist.name.endswith(".tar.gz") and wheel.suffix == ".whl"


def test_runtime_only_journey(venvs, default_bundle, tmp_path):
    """`pip install edge-sent`: no torch; every runtime command, first use (probes, caches) then second (cached)."""
    user = new_user(tmp_path, venvs("runtime"))
    found = user.ok("python", "-c", "import importlib.util as u; print(u.find_spec('torch'), u.find_spec('onnx'))")
    assert found.stdout.split() == ["None", "None"]
    data = copy_data(user)
    first = runtime_commands(user, default_bundle, data, "first")
    assert first_use_note(first["predict"].stderr), first["predict"].stderr
    assert cache_files(user.home), "the first use left no host profile in the user's cache folder"
    second = runtime_commands(user, default_bundle, data, "second")
    for name, proc in second.items():
        if name != "tune":  # tune measures again on purpose
            assert not first_use_note(proc.stderr), f"{name} measured again: {proc.stderr}"
    # from the repository root too: nothing there may shadow the installed package (the base lives in src/)
    at_root = User(user.venv, user.home, ROOT)
    assert at_root.ok("python", "-c", API, str(default_bundle), TEXTS[0]).stdout.strip()


def test_runtime_only_journey_with_bad_input(venvs, default_bundle, tmp_path):
    """Not a bundle, a tampered file, a malformed TSV, an unknown variant: one line, non-zero, nothing written.
    An unwritable cache folder (HOME a file): the answer still comes, with one warning line, and nothing written."""
    user = new_user(tmp_path, venvs("runtime"))
    empty = user.cwd / "not-a-bundle"
    empty.mkdir()
    user.fails("edge-sent", "predict", str(empty), TEXTS[0], needle="not an edge-sent bundle")
    tampered = user.cwd / "tampered"
    shutil.copytree(default_bundle, tampered)
    model = bytearray((tampered / "model.onnx").read_bytes())
    model[len(model) // 2] ^= 0xFF
    (tampered / "model.onnx").write_bytes(bytes(model))
    user.fails("edge-sent", "predict", str(tampered), TEXTS[0], needle="model.onnx")
    user.fails("edge-sent", "verify", str(tampered), needle="model.onnx")
    malformed = user.cwd / "malformed.tsv"
    malformed.write_text("label\ttext_a\n1\t很好\n0\t太差\t多了一列\n", encoding="utf-8")
    out = user.cwd / "scored"
    user.fails("edge-sent", "score", str(default_bundle), str(malformed), "--out", str(out), needle="malformed.tsv:3")
    assert not list(out.glob("part-*")) and not leftovers(out)
    user.fails("edge-sent", "eval", str(default_bundle), "--data", str(malformed), needle="malformed.tsv:3")
    user.fails("edge-sent", "predict", str(default_bundle), TEXTS[0], "--variant", "int9", needle="int9")
    assert not leftovers(user.home) and not leftovers(user.cwd)

    home_file = tmp_path / "home-is-a-file"
    home_file.write_text("not a folder\n")
    unwritable = User(user.venv, home_file, user.cwd)
    proc = unwritable.ok("edge-sent", "predict", str(default_bundle), TEXTS[0], "--json")
    assert json.loads(proc.stdout)["label"] in labels_of(default_bundle)
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "cannot write the host cache" in warnings[0], proc.stderr
    assert home_file.read_text() == "not a folder\n"


def test_serve_journey(venvs, default_bundle, tmp_path):
    """`pip install 'edge-sent[serve]'`: /health 200 and one /predict, first (probing) and second (cached) start."""
    user = new_user(tmp_path, venvs("serve"))
    for use in ("first", "second"):
        log = tmp_path / f"serve-{use}.log"
        with serving(user, default_bundle, log) as url:
            answer = post_json(url + "/predict", {"inputs": TEXTS[0]})
        assert isinstance(answer, list) and answer[0]["label"] in labels_of(default_bundle), answer
        assert "Traceback" not in log.read_text(), log.read_text()
        if use == "first":
            assert cache_files(user.home), log.read_text()


@pytest.fixture(scope="session")
def strings_bundle(tiny_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("journey-strings") / "bundle"
    command = [sys.executable, "-m", "edge_sent", "export", str(tiny_run), "--out", str(out), "--with-tokenizer"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_strings_journey(venvs, strings_bundle, tmp_path):
    """`pip install 'edge-sent[strings]'`: `predict --strings` runs the string-in graph, twice."""
    user = new_user(tmp_path, venvs("strings"))
    for _ in ("first", "second"):
        proc = user.ok("edge-sent", "predict", str(strings_bundle), TEXTS[0], "--strings", "--json")
        assert json.loads(proc.stdout)["label"] in labels_of(strings_bundle)


def test_parquet_journey(venvs, default_bundle, tmp_path):
    """`pip install 'edge-sent[parquet]'`: `score` reads a Parquet file, twice (the second run skips every shard)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    user = new_user(tmp_path, venvs("parquet"))
    source = user.cwd / "reviews.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3], "text_a": [*TEXTS, "还行"]}), source)
    out = user.cwd / "scored"
    for _ in ("first", "second"):
        user.ok("edge-sent", "score", str(default_bundle), str(source), "--out", str(out), "--id-column", "id")
        rows = [json.loads(line) for part in sorted(out.glob("part-*.jsonl")) for line in part.read_text().splitlines()]
        assert [row["id"] for row in rows] == ["1", "2", "3"]


def test_ray_journey(venvs, default_bundle, tmp_path):
    """`pip install 'edge-sent[ray]'`: `score --engine ray` on a local cluster, twice."""
    user = new_user(tmp_path, venvs("ray"))
    data = copy_data(user, rows=30)
    out = user.cwd / "scored"
    for _ in ("first", "second"):
        user.ok("edge-sent", "score", str(default_bundle), str(data), "--out", str(out), "--engine", "ray", timeout=900)
        rows = [line for part in sorted(out.glob("part-*.jsonl")) for line in part.read_text().splitlines()]
        assert len(rows) == 30


def test_openvino_journey(venvs, default_bundle, tmp_path):
    """`pip install 'edge-sent[openvino]'`: one environment where the CPU path and the OpenVINO path both run,
    `auto` among both; OpenVINO's compiled model is cached for the second use."""
    user = new_user(tmp_path, venvs("openvino"))
    labels = labels_of(default_bundle)
    for use in ("first", "second"):
        answers = {}
        for provider, precision in (("cpu", "auto"), ("openvino", "fp32"), ("auto", "auto")):
            forced = ("--provider", provider, "--precision", precision)
            proc = user.ok("edge-sent", "predict", str(default_bundle), *TEXTS, *forced, "--json")
            answers[provider] = [json.loads(line) for line in proc.stdout.splitlines()]
            assert {a["label"] for a in answers[provider]} <= labels
        for cpu, ov in zip(answers["cpu"], answers["openvino"], strict=True):
            assert max(abs(cpu["probabilities"][k] - ov["probabilities"][k]) for k in labels) < 1e-4
        if use == "first":
            assert list((user.home / ".cache" / "edge-sent" / "openvino").rglob("*.blob")), "no OpenVINO model cache"
    tune = user.ok("edge-sent", "tune", str(default_bundle))
    assert "openvino" in tune.stdout, tune.stdout


def test_openvino_engine_tests_pass_as_installed(venvs, tiny_run, tiny_bundle, tmp_path):
    """tests/test_openvino_engine.py (skipped where openvino is not installed, as in the development venv) runs in
    the openvino flavour's venv, against the installed wheel, on the session's tiny bundle."""
    venv = venvs("openvino")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", "pytest"]
    assert subprocess.run(pip, capture_output=True, text=True, env=pip_env(), timeout=600).returncode == 0
    reuse = tmp_path / "reuse"  # tests/conftest.py: a built run and bundle are reused, not rebuilt (no torch there)
    shutil.copytree(tiny_run, reuse / "tiny-run")
    shutil.copytree(tiny_bundle, reuse / "tiny-bundle")
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(tmp_path)}
    command = [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"]
    proc = subprocess.run(
        [*command, "tests/test_openvino_engine.py"],
        capture_output=True,
        text=True,
        env=env | {"EDGE_SENT_TEST_REUSE": str(reuse)},
        cwd=ROOT,
        timeout=900,
    )
    assert proc.returncode == 0 and " passed" in proc.stdout, proc.stdout[-4000:] + proc.stderr[-2000:]
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import edge_sent; print(edge_sent.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert "site-packages" in where.stdout, where.stdout + where.stderr  # the wheel's code, not the checkout's


def test_train_journey(venvs, tmp_path):
    """`pip install torch==2.13.0 'edge-sent[train]'`: train → export (defaults) → verify → predict, without
    HF_HUB_OFFLINE; a second training run reuses every cached feature."""
    user = new_user(tmp_path, venvs("train"))
    train, dev = user.cwd / "train.tsv", user.cwd / "dev.tsv"
    for name, path, rows in (("train.tsv", train, 160), ("dev.tsv", dev, 60)):
        path.write_text("\n".join((DATA / name).read_text(encoding="utf-8").splitlines()[: rows + 1]) + "\n")
    for use in ("first", "second"):
        run = user.cwd / f"run-{use}"
        common = ("--train", str(train), "--dev", str(dev), "--encoder", "random:tiny", "--out", str(run))
        user.ok("edge-sent", "train", *common, "--label-names", "negative,positive")
        cache = json.loads((run / "report.json").read_text(encoding="utf-8"))["feature_cache"]
        if use == "second":
            assert cache["encoded"] == 0 and cache["reused"] > 0, cache
    bundle = user.cwd / "bundle"
    user.ok("edge-sent", "export", str(user.cwd / "run-first"), "--out", str(bundle))
    user.ok("edge-sent", "verify", str(bundle))
    proc = user.ok("edge-sent", "predict", str(bundle), TEXTS[0], "--json")
    assert json.loads(proc.stdout)["label"] in ("negative", "positive")


def test_every_flavour_is_on_the_install_page():
    """docs/install.md names each flavour's install command, and only those the journeys run."""
    page = (ROOT / "docs" / "install.md").read_text(encoding="utf-8")
    for flavour, extra in FLAVOURS.items():
        command = re.compile(rf"pip install [^`\n]*?'?edge-sent{re.escape(extra)}'?(?=[`\s])")
        assert command.search(page), flavour  # (the train flavour installs the pinned CPU torch in the same line)
