"""The release: `python -m build` makes an sdist and a wheel (built from that sdist), `twine check` passes them,
and a fresh venv with only the wheel installed (no extras) has no torch and runs `edge-sent predict`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def _release(out: Path) -> tuple[Path, Path]:
    """sdist + wheel, as a release would make them; the wheel is built from the sdist, so the sdist is complete."""
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


@pytest.mark.slow
def test_the_release_wheel_alone_runs_predict_without_torch(tiny_bundle, tmp_path):
    _, wheel = _release(tmp_path / "dist")
    venv = tmp_path / "rt"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheel)], capture_output=True, text=True, timeout=900
    )
    if pip.returncode != 0 and "No matching distribution" in pip.stderr + pip.stdout:
        pytest.skip("no package index reachable for onnxruntime/tokenizers")
    assert pip.returncode == 0, pip.stderr[-2000:]
    py = venv / "bin" / "python"
    check = subprocess.run(
        [str(py), "-c", "import importlib.util as u; print(u.find_spec('torch'), u.find_spec('transformers'))"],
        capture_output=True,
        text=True,
    )
    assert check.stdout.split() == ["None", "None"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [str(venv / "bin" / "edge-sent"), "predict", str(tiny_bundle), "很好", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["label"] in ("0", "1")
    # from the repository root too: nothing there may shadow the installed package (the base lives in src/)
    code = (
        "from edge_sent.runtime import Classifier; "
        f"print(Classifier.load({str(tiny_bundle)!r}).predict(['很好'])[0].label)"
    )
    proc = subprocess.run([str(py), "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in ("0", "1")
    print(f"runtime-only venv: {_dir_mb(venv):.0f} MB")
