"""The first step of `edge-sent export`: check the options and load what every later step needs, before
anything is written (a bad option fails here, with no temporary directory created)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from edge_sent.calibration import LogitMap
from edge_sent.errors import EdgeSentError
from edge_sent.export import graph, refit, runners, verify
from edge_sent.labeled import DataConfig, label_ids, load_labeled
from edge_sent.readers import read_records
from edge_sent.rundir import RunDir, RunMeta, read_run_meta
from edge_sent.tokenization import Tokenizer
from edge_sent.train.encoders import LoadedEncoder, load_encoder
from edge_sent.train.model import SentimentModel
from edge_sent.variants import DEFAULT_QUANTIZE, QUANTIZE_CHOICES, VARIANTS


@dataclass(frozen=True)
class ExportConfig:
    run_dir: Path
    out: Path
    quantize: tuple[str, ...] = DEFAULT_QUANTIZE
    calibration: Path | None = None
    calibration_size: int = 128
    eval: Path | None = None
    eval_limit: int | None = None
    verify_size: int = 64  # texts fp32 is checked against torch on (one at a time), and the labels recorded
    host_check_size: int = 300  # texts every variant's agreement with fp32 is measured on, here and on each host
    portable: bool = False
    reduce_range: bool = False  # int8 / int8-static with 7-bit weights (answers that move less across x86 CPUs)
    force: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    quiet: bool = False
    refit_head: tuple[str, ...] = ()  # variants whose head is refitted on their own features ("all": every one)
    refit_data: Path | None = None  # labelled training data for the refit (default: the run's own)
    openvino_python: Path | None = None  # an interpreter with onnxruntime-openvino: measure/refit there
    with_tokenizer: bool = False  # string-in graphs (export/strings.py)
    tokenizer_variants: tuple[str, ...] = ()  # the variants to wrap (default: fp32 and int8 when built)
    tokenizer_check: tuple[Path, ...] = ()  # texts whose token ids must match (default: the run's train and dev)
    tokenizer_tolerance: float = 0.0  # corpus token-id mismatch rate accepted


@dataclass(frozen=True)
class Prepared:
    """The record every export step reads."""

    config: ExportConfig
    meta: RunMeta
    encoder: LoadedEncoder
    model: SentimentModel
    tokenizer: Tokenizer
    geometry: graph.Geometry
    source: Path  # where the verification texts come from (the run's dev copy, or its calibration sample)
    verify_texts: list[str]
    host_check_texts: list[str]  # a random sample of the source: agreement on it estimates agreement on the corpus
    calibration: tuple[str, ...]
    calibration_source: Path
    eval_set: tuple[list[str], np.ndarray] | None
    refit_names: tuple[str, ...]
    refit_data: refit.RefitData | None
    openvino: runners.OpenVinoRunner | None
    started: float

    @property
    def max_length(self) -> int:
        return self.meta.max_length

    @property
    def cls_only(self) -> bool:
        return self.meta.pooling == "cls"


def texts_from(path: Path, text_field: str, limit: int | None = None) -> list[str]:
    texts = []
    for record in read_records(path, text_field=text_field):
        if record.text.strip():
            texts.append(record.text)
        if limit and len(texts) >= limit:
            break
    return texts


def load_model(run_dir: Path, meta: RunMeta) -> tuple[LoadedEncoder, SentimentModel]:
    encoder = load_encoder(meta.encoder.spec)
    if encoder.identity != meta.encoder.identity:
        raise EdgeSentError(
            f"encoder {meta.encoder.spec!r} now loads different weights than it did for training "
            f"({run_dir}); retrain or point --encoder at the original weights"
        )
    path = RunDir(run_dir).head_weights
    try:
        weights = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise EdgeSentError(f"{path}: cannot read ({exc})") from None
    head = torch.nn.Linear(weights["weight"].shape[1], weights["weight"].shape[0])
    head.load_state_dict(weights)
    return encoder, SentimentModel(encoder.model, meta.pooling, head, LogitMap.from_json(meta.calibration)).eval()


def _calibration(config: ExportConfig, meta: RunMeta) -> tuple[Path, tuple[str, ...]]:
    path = config.calibration or RunDir(config.run_dir).file(meta.calibration_file)
    if not any(VARIANTS[name].needs_calibration for name in config.quantize):
        return path, ()
    if not Path(path).is_file():
        raise EdgeSentError(f"calibration data not found: {path}")
    field_name = "text" if path.suffix == ".jsonl" and config.calibration is None else config.data.text_field
    texts = texts_from(path, field_name, config.calibration_size)
    if not texts:
        raise EdgeSentError(f"{path}: no calibration texts")
    return path, tuple(texts)


def _eval_set(config: ExportConfig, meta: RunMeta) -> tuple[list[str], np.ndarray] | None:
    if config.eval is None:
        return None
    data = load_labeled(config.eval, config.data)
    ids = label_ids(data, list(meta.labels), [meta.data_labels], known_from="the run's labels")
    n = config.eval_limit or len(data)
    return data.texts[:n], ids[:n]


def prepare(config: ExportConfig, say) -> Prepared:
    started = time.perf_counter()
    unknown = [q for q in config.quantize if q not in QUANTIZE_CHOICES]
    if unknown:
        raise EdgeSentError(f"unknown --quantize value {unknown[0]!r} (choose from {', '.join(QUANTIZE_CHOICES)})")
    meta = read_run_meta(config.run_dir)
    if config.out.exists() and not config.force:
        raise EdgeSentError(f"{config.out} already exists (use --force to replace it)")
    calibration_source, calibration = _calibration(config, meta)
    eval_set = _eval_set(config, meta)
    refit_names = refit.variants_to_refit(config.refit_head, config.quantize)
    openvino = runners.openvino_runner(config.openvino_python)
    say(f"loading encoder {meta.encoder.spec}")
    encoder, model = load_model(config.run_dir, meta)
    refit_data = None
    if refit_names:
        head = (model.head.weight.detach().numpy(), model.head.bias.detach().numpy())
        refit_data = refit.load_refit_data(config.run_dir, meta, config.refit_data, config.data, head)
    tokenizer = Tokenizer(encoder.tokenizer_file, meta.max_length)
    source = RunDir(config.run_dir).file(meta.dev_file or meta.calibration_file)
    source_texts = texts_from(source, "text")
    verify_texts = verify.select_texts(source_texts, tokenizer, config.verify_size)
    host_check_texts = verify.sample_texts(source_texts, config.host_check_size)
    return Prepared(
        config=config,
        meta=meta,
        encoder=encoder,
        model=model,
        tokenizer=tokenizer,
        geometry=graph.Geometry.from_config(encoder.config),
        source=source,
        verify_texts=verify_texts,
        host_check_texts=host_check_texts,
        calibration=calibration,
        calibration_source=Path(calibration_source),
        eval_set=eval_set,
        refit_names=refit_names,
        refit_data=refit_data,
        openvino=openvino,
        started=started,
    )
