"""`edge-sent train`: load data, extract features once (cached), fit the head, write RUN_DIR."""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from edge_sent import __version__, calibration, calibration_choice
from edge_sent.contract import sha256_file, write_json
from edge_sent.errors import EdgeSentError
from edge_sent.labeled import DataConfig, LabeledData, label_ids, label_set, load_labeled
from edge_sent.metrics import classification_report
from edge_sent.rundir import (
    CALIBRATION,
    DEV_COPY,
    HEAD_WEIGHTS,
    REPORT,
    EncoderRef,
    RunMeta,
    TrainingData,
    write_run_meta,
)
from edge_sent.train.encoders import POOLINGS, LoadedEncoder, load_encoder
from edge_sent.train.features import default_cache_dir, extract_features
from edge_sent.train.head import HeadConfig, fit_head, predict_head

CALIBRATION_SAMPLE = 500


@dataclass(frozen=True)
class TrainConfig:
    train: Path
    out: Path
    encoder: str = "random:bert-base-chinese"
    dev: Path | None = None
    test: Path | None = None
    data: DataConfig = field(default_factory=DataConfig)
    max_length: int = 512
    pooling: str = "cls"
    head: HeadConfig = field(default_factory=HeadConfig)
    cache_dir: Path | None = None  # None: the user cache dir
    no_cache: bool = False
    limit: int | None = None  # use only the first N training rows (and N//4 dev/test rows)
    label_names: tuple[str, ...] | None = None
    progress: bool = True
    calibrate: bool = True  # choose a calibration on the dev split (export puts it into the graph)
    calibration: str = "auto"  # auto: the cross-validated choice; or none, temperature, vector


def _limit(data: LabeledData, n: int | None) -> LabeledData:
    if n is None or n >= len(data):
        return data
    return LabeledData(data.path, data.texts[:n], data.labels[:n], data.skipped_empty)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


@dataclass(frozen=True)
class Splits:
    """The labelled data of a run: train plus optional dev/test, label ids and display names."""

    train: LabeledData
    side: dict[str, LabeledData]  # "dev", "test"
    labels: list[str]  # as the data writes them, sorted (label_set)
    names: list[str]  # display names, same order
    ids: dict[str, np.ndarray]


def load_splits(config: TrainConfig) -> Splits:
    train_data = _limit(load_labeled(config.train, config.data), config.limit)
    labels = label_set(train_data)
    side = {}
    for name, path in (("dev", config.dev), ("test", config.test)):
        if path is not None:
            side[name] = _limit(load_labeled(path, config.data), config.limit and max(config.limit // 4, 1))
    ids = {"train": label_ids(train_data, labels)} | {k: label_ids(v, labels) for k, v in side.items()}
    names = list(config.label_names) if config.label_names else labels
    if len(names) != len(labels):
        raise EdgeSentError(f"--label-names gives {len(names)} names for {len(labels)} labels ({', '.join(labels)})")
    return Splits(train_data, side, labels, names, ids)


def train(config: TrainConfig) -> dict:
    if config.pooling not in POOLINGS:
        raise EdgeSentError(f"unknown pooling {config.pooling!r} (choose from {', '.join(POOLINGS)})")
    if config.head.epochs < 1:
        raise EdgeSentError("--epochs must be at least 1")
    splits = load_splits(config)
    train_data, side, labels, names, ids = splits.train, splits.side, splits.labels, splits.names, splits.ids

    encoder = load_encoder(config.encoder)
    max_length = min(config.max_length, encoder.max_positions)
    all_texts = train_data.texts + [t for d in side.values() for t in d.texts]
    cache_dir = None if config.no_cache else (config.cache_dir or default_cache_dir())
    features = extract_features(
        encoder,
        all_texts,
        max_length=max_length,
        pooling=config.pooling,
        cache_dir=cache_dir,
        progress=config.progress,
    )
    start = time.perf_counter()
    x = {"train": features.rows(train_data.texts)} | {k: features.rows(v.texts) for k, v in side.items()}
    result = fit_head(x["train"], ids["train"], len(labels), config.head, x.get("dev"), ids.get("dev"))
    head_s = time.perf_counter() - start

    report: dict = {
        "encoder": config.encoder,
        "encoder_is_random": encoder.is_random,
        "n_train": len(train_data),
        "n_dev": len(side["dev"]) if "dev" in side else 0,
        "n_test": len(side["test"]) if "test" in side else 0,
        "n_distinct_texts": len(features.texts),
        "skipped_empty": {"train": train_data.skipped_empty} | {k: v.skipped_empty for k, v in side.items()},
        "truncated_texts": features.truncated,
        "max_length": max_length,
        "pooling": config.pooling,
        "labels": names,
        "feature_cache": features.cache_report(),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "history": result.history,
        "timings": {"features_s": round(features.seconds, 3), "head_s": round(head_s, 3)},
    }
    logits = {split: predict_head(result.head, x[split]) for split in ("train", *side)}
    for split, split_logits in logits.items():
        report[split] = classification_report(ids[split], split_logits.argmax(axis=1), names)
    report["calibration"] = fit_calibration(logits, ids, config.calibrate, config.calibration)

    write_run(config, splits, encoder, result.head, max_length, report)
    return report


def fit_calibration(
    logits: dict[str, np.ndarray], ids: dict[str, np.ndarray], calibrate: bool, method: str = "auto"
) -> dict:
    """The calibration chosen on dev by cross-validation (`calibration_choice.choose`: none, a temperature or vector
    scaling) with why, every candidate's held-out dev figures, and ECE (15 bins) and NLL before and after on dev and
    test; on test also every candidate fitted on the whole dev split, for comparison."""
    record: dict = {"method": "none", "temperature": 1.0, "bins": calibration.ECE_BINS, "fitted_on": None}
    choice = None
    if not calibrate:
        record["skipped"] = "--no-calibrate"
    elif "dev" not in logits or len(logits["dev"]) == 0:
        record["skipped"] = "no --dev split to fit a calibration on"
    else:
        force = None if method == "auto" else method
        choice = calibration_choice.choose(logits["dev"], ids["dev"], force=force)
        record |= choice.chosen.to_json() | {"fitted_on": "dev", "chosen_because": choice.reason}
        record["cross_validation"] = choice.cross_validation
        fitted_t = choice.fitted["temperature"].temperature if "temperature" in choice.fitted else 1.0
        if not calibration.T_RANGE[0] * 1.01 < fitted_t < calibration.T_RANGE[1] * 0.99:
            record["warning"] = (
                f"the temperature fitted on dev reached its search bound ({fitted_t:g}): on dev the head is "
                "no better than chance (T -> infinity: uniform probabilities) or separates it perfectly (T -> 0)"
            )
    chosen = calibration.LogitMap.from_json(record)
    for split in ("dev", "test"):
        if split in logits and len(logits[split]):
            record[split] = calibration.summary(logits[split], ids[split], chosen)
    if choice is not None and "test" in record:
        record["test"]["candidates"] = {
            name: {"ece": round(calibration.ece(calibration.softmax(m.apply(logits["test"])), ids["test"]), 5)}
            | {"nll": round(calibration.nll(m.apply(logits["test"]), ids["test"]), 5)}
            for name, m in choice.fitted.items()
        }
    return record


def write_run(
    config: TrainConfig, splits: Splits, encoder: LoadedEncoder, head: torch.nn.Linear, max_length: int, report: dict
) -> None:
    """RUN_DIR: head weights, calibration sample, dev copy, head.json (RunMeta) and the report."""
    train_data, side, labels, names = splits.train, splits.side, splits.labels, splits.names
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    save_file(
        {"weight": head.weight.detach().contiguous(), "bias": head.bias.detach().contiguous()},
        str(out / HEAD_WEIGHTS),
    )
    rng = random.Random(config.head.seed)
    sample = rng.sample(range(len(train_data)), min(CALIBRATION_SAMPLE, len(train_data)))
    _write_jsonl(out / CALIBRATION, [{"text": train_data.texts[i], "label": train_data.labels[i]} for i in sample])
    if "dev" in side:
        _write_jsonl(
            out / DEV_COPY,
            [{"text": t, "label": lab} for t, lab in zip(side["dev"].texts, side["dev"].labels, strict=True)],
        )
    meta = RunMeta(
        edge_sent_version=__version__,
        encoder=EncoderRef(config.encoder, encoder.identity, encoder.revision),
        tokenizer_sha256=sha256_file(encoder.tokenizer_file),
        max_length=max_length,
        pooling=config.pooling,
        labels=tuple(names),
        data_labels=tuple(labels),
        hidden_size=encoder.hidden_size,
        hyperparameters=asdict(config.head),
        calibration_file=CALIBRATION,
        dev_file=DEV_COPY if "dev" in side else None,
        calibration=report["calibration"],
        data=TrainingData(  # what `edge-sent export --refit-head` refits on
            str(Path(config.train).resolve()), config.limit, config.data.text_field, config.data.label_field
        ),
    )
    write_run_meta(out, meta)
    write_json(out / REPORT, report)
