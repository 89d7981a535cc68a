"""The run-directory contract: what `edge-sent train` writes and `edge-sent export` and the benchmarks read.

Standard library only. The files of a run directory, and `head.json` as a typed, validated record: train
writes it through `write_run_meta`, everything else reads it through `read_run_meta`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_sent.contract import write_json
from edge_sent.errors import EdgeSentError

HEAD_WEIGHTS = "head.safetensors"  # Linear(hidden, labels): weight, bias
HEAD_META = "head.json"  # RunMeta
REPORT = "report.json"  # the training report
CALIBRATION = "calibration.jsonl"  # a sample of training texts: int8-static calibration, verification fallback
DEV_COPY = "dev.jsonl"  # the dev texts and labels: export verification and head refit


@dataclass(frozen=True)
class EncoderRef:
    spec: str  # what --encoder said
    identity: str  # hash of the weights it loaded
    revision: str | None = None


@dataclass(frozen=True)
class TrainingData:
    """Where the head's training rows came from (what `export --refit-head` refits on)."""

    train: str
    limit: int | None = None
    text_column: str = "text_a"
    label_column: str = "label"


@dataclass(frozen=True)
class RunMeta:
    edge_sent_version: str
    encoder: EncoderRef
    max_length: int
    pooling: str
    labels: tuple[str, ...]  # display names, in label-id order
    data_labels: tuple[str, ...]  # the same labels as the training data wrote them
    tokenizer_sha256: str = ""
    hidden_size: int = 0
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    calibration_file: str = CALIBRATION
    dev_file: str | None = None
    data: TrainingData | None = None
    calibration: dict[str, Any] | None = None  # the fitted temperature and ECE figures (train's report)

    @property
    def temperature(self) -> float:
        """What export divides the logits by (1.0: uncalibrated, or a run from before calibration)."""
        return float((self.calibration or {}).get("temperature") or 1.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "edge_sent_version": self.edge_sent_version,
            "encoder": asdict(self.encoder),
            "tokenizer_sha256": self.tokenizer_sha256,
            "max_length": self.max_length,
            "pooling": self.pooling,
            "labels": list(self.labels),
            "data_labels": list(self.data_labels),
            "hidden_size": self.hidden_size,
            "hyperparameters": dict(self.hyperparameters),
            "files": {"calibration": self.calibration_file, "dev": self.dev_file},
            "data": asdict(self.data) if self.data else None,
            "calibration": self.calibration,
        }

    @classmethod
    def from_json(cls, data: object, where: Path) -> RunMeta:
        required = ("encoder", "max_length", "pooling", "labels", "files")
        missing = [k for k in required if not isinstance(data, dict) or k not in data]
        encoder = data.get("encoder") if isinstance(data, dict) else None
        if missing or not isinstance(encoder, dict) or "spec" not in encoder:
            raise EdgeSentError(f"{where}: incomplete run metadata (missing {missing or ['encoder.spec']})")
        assert isinstance(data, dict)
        files = data["files"] if isinstance(data["files"], dict) else {}
        recorded = data.get("data")
        try:
            return cls(
                edge_sent_version=str(data.get("edge_sent_version", "")),
                encoder=EncoderRef(str(encoder["spec"]), str(encoder.get("identity", "")), encoder.get("revision")),
                max_length=int(data["max_length"]),
                pooling=str(data["pooling"]),
                labels=tuple(str(label) for label in data["labels"]),
                data_labels=tuple(str(label) for label in data.get("data_labels") or data["labels"]),
                tokenizer_sha256=str(data.get("tokenizer_sha256", "")),
                hidden_size=int(data.get("hidden_size") or 0),
                hyperparameters=dict(data.get("hyperparameters") or {}),
                calibration_file=str(files.get("calibration") or CALIBRATION),
                dev_file=files.get("dev"),
                data=TrainingData(**recorded) if isinstance(recorded, dict) and recorded.get("train") else None,
                calibration=data["calibration"] if isinstance(data.get("calibration"), dict) else None,
            )
        except (TypeError, ValueError) as exc:
            raise EdgeSentError(f"{where}: malformed run metadata ({exc})") from None


@dataclass(frozen=True)
class RunDir:
    """A run directory's paths."""

    root: Path

    @property
    def head_weights(self) -> Path:
        return self.root / HEAD_WEIGHTS

    @property
    def meta_file(self) -> Path:
        return self.root / HEAD_META

    @property
    def report(self) -> Path:
        return self.root / REPORT

    def file(self, name: str) -> Path:
        return self.root / name


def read_run_meta(run_dir: Path) -> RunMeta:
    run = RunDir(Path(run_dir))
    for path in (run.head_weights, run.meta_file):
        if not path.is_file():
            raise EdgeSentError(
                f"{run.root}: not a complete run directory ({path.name} is missing; run `edge-sent train`)"
            )
    try:
        data = json.loads(run.meta_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgeSentError(f"{run.meta_file}: not valid JSON ({exc})") from None
    return RunMeta.from_json(data, run.meta_file)


def write_run_meta(run_dir: Path, meta: RunMeta) -> None:
    write_json(RunDir(run_dir).meta_file, meta.to_json())
