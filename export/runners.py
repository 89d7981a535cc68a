"""Where the export measures a variant: this interpreter's onnxruntime (CPU), or a second interpreter
with the OpenVINO build of onnxruntime (the two builds cannot share one environment; README)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edge_sent.errors import EdgeSentError
from edge_sent.runtime.measure import MeasureRequest, run_outputs

OPENVINO_PYTHON_ENV = "EDGE_SENT_OPENVINO_PYTHON"


class CpuRunner:
    """onnxruntime's CPU provider in this process."""

    name = "cpu"

    def outputs(self, request: MeasureRequest) -> tuple[dict[str, np.ndarray], dict]:
        return run_outputs(request)


class OpenVinoRunner:
    """onnxruntime's OpenVINO provider, in the interpreter at `python` (a venv with onnxruntime-openvino)."""

    name = "openvino"

    def __init__(self, python: Path) -> None:
        self.python = Path(python)
        if not self.python.is_file():
            raise EdgeSentError(f"--openvino-python {self.python}: no such interpreter")
        code = "import json, onnxruntime as o; print(json.dumps([o.__version__, o.get_available_providers()]))"
        out = self._run(["-c", code], 120, f"--openvino-python {self.python}: cannot import onnxruntime")
        self.version, providers = json.loads(out)
        if "OpenVINOExecutionProvider" not in providers:
            raise EdgeSentError(
                f"--openvino-python {self.python}: onnxruntime {self.version} there has no OpenVINO provider "
                f"(providers: {', '.join(providers)}); create it with scripts/openvino-venv.sh"
            )

    def outputs(self, request: MeasureRequest) -> tuple[dict[str, np.ndarray], dict]:
        with tempfile.TemporaryDirectory(prefix="edge-sent-ov-") as tmp:
            req = Path(tmp) / "request.json"
            payload = asdict(request) | {"outputs": list(request.outputs), "out": str(Path(tmp) / "out.npz")}
            req.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
            failure = f"OpenVINO measurement of {Path(request.model).name} failed"
            info = self._run(["-m", "edge_sent.runtime.measure", str(req)], 3600, failure)
            with np.load(payload["out"]) as data:
                results = {name: data[name] for name in data.files}
        return results, json.loads(info)

    def _run(self, args: list[str], timeout: int, failure: str) -> str:
        """Run this interpreter (without our PYTHONPATH); its last stdout line, or a one-line error."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        proc = subprocess.run([str(self.python), *args], capture_output=True, text=True, env=env, timeout=timeout)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise EdgeSentError(f"{failure}: {last}")
        return proc.stdout.strip().splitlines()[-1]


def openvino_runner(python: Path | None) -> OpenVinoRunner | None:
    """The OpenVINO runner from --openvino-python or $EDGE_SENT_OPENVINO_PYTHON; None when neither is set."""
    chosen = python or (Path(os.environ[OPENVINO_PYTHON_ENV]) if os.environ.get(OPENVINO_PYTHON_ENV) else None)
    return OpenVinoRunner(chosen) if chosen else None
