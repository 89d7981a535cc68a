"""`edge-sent export`: RUN_DIR -> a verified bundle with the requested quantized variants."""

from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx
import torch
from edge_sent.export import graph, quantize, refit, runners, verify
from edge_sent.export.bundle import finalize_manifest, hf_config, staging_dir, write_json
from edge_sent.runtime.labeled import DataConfig, label_ids, load_labeled
from edge_sent.runtime.measure import MeasureRequest
from edge_sent.runtime.readers import read_records
from edge_sent.runtime.tokenize import TextEncoder
from edge_sent.train.encoders import load_encoder
from edge_sent.train.model import SentimentModel
from edge_sent.train.run import HEAD_WEIGHTS, load_head_meta
from safetensors.torch import load_file

from edge_sent import __version__
from edge_sent.contract import (
    FORMAT,
    FORMAT_VERSION,
    PORTABLE_FILE,
    QUANTIZE_CHOICES,
    TOKENIZER,
    VARIANT_FILES,
)
from edge_sent.errors import EdgeSentError
from edge_sent.progress import stderr

VERIFY_BATCH = 8  # dynamic int8 scales activations per batch: recorded so the labels can be reproduced


@dataclass(frozen=True)
class ExportConfig:
    run_dir: Path
    out: Path
    quantize: tuple[str, ...] = ("int8",)
    calibration: Path | None = None
    calibration_size: int = 128
    eval: Path | None = None
    eval_limit: int | None = None
    verify_size: int = 64
    portable: bool = False
    force: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    quiet: bool = False
    refit_head: tuple[str, ...] = ()  # variants whose head is refitted on their own features ("all": every one)
    refit_data: Path | None = None  # labelled training data for the refit (default: the run's own)
    openvino_python: Path | None = None  # an interpreter with onnxruntime-openvino: measure/refit there


def _checkpoint(stage: str) -> None:
    """Crash-safety tests kill the export at named stages (EDGE_SENT_TEST_KILL_AT=<stage>)."""
    if os.environ.get("EDGE_SENT_TEST_KILL_AT") == stage:
        os.kill(os.getpid(), signal.SIGKILL)


def _say(config: ExportConfig, message: str) -> None:
    if not config.quiet:
        stderr.print(f"[dim]export:[/dim] {message}")


def _texts_from(path: Path, text_field: str, limit: int | None = None) -> list[str]:
    texts = []
    for record in read_records(path, text_field=text_field):
        if record.text.strip():
            texts.append(record.text)
        if limit and len(texts) >= limit:
            break
    return texts


def _load_model(run_dir: Path, meta: dict):
    encoder = load_encoder(meta["encoder"]["spec"])
    if encoder.identity != meta["encoder"]["identity"]:
        raise EdgeSentError(
            f"encoder {meta['encoder']['spec']!r} now loads different weights than it did for training "
            f"({run_dir}); retrain or point --encoder at the original weights"
        )
    try:
        weights = load_file(str(run_dir / HEAD_WEIGHTS))
    except Exception as exc:  # safetensors raises its own error types
        raise EdgeSentError(f"{run_dir / HEAD_WEIGHTS}: cannot read ({exc})") from None
    head = torch.nn.Linear(weights["weight"].shape[1], weights["weight"].shape[0])
    head.load_state_dict(weights)
    return encoder, SentimentModel(encoder.model, meta["pooling"], head).eval()


def _eval_set(config: ExportConfig, meta: dict) -> tuple[list[str], np.ndarray] | None:
    if config.eval is None:
        return None
    data = load_labeled(config.eval, config.data)
    ids = label_ids(data, meta["labels"], [meta.get("data_labels", [])], known_from="the run's labels")
    n = config.eval_limit or len(data)
    return data.texts[:n], ids[:n]


def export_bundle(config: ExportConfig) -> dict:
    started = time.perf_counter()
    unknown = [q for q in config.quantize if q not in QUANTIZE_CHOICES]
    if unknown:
        raise EdgeSentError(f"unknown --quantize value {unknown[0]!r} (choose from {', '.join(QUANTIZE_CHOICES)})")
    meta = load_head_meta(config.run_dir)
    if config.out.exists() and not config.force:
        raise EdgeSentError(f"{config.out} already exists (use --force to replace it)")
    calib_path = config.calibration or config.run_dir / meta["files"]["calibration"]
    calibration: list[str] = []
    if "int8-static" in config.quantize:
        if not Path(calib_path).is_file():
            raise EdgeSentError(f"calibration data not found: {calib_path}")
        field_name = "text" if calib_path.suffix == ".jsonl" and config.calibration is None else config.data.text_field
        calibration = _texts_from(calib_path, field_name, config.calibration_size)
        if not calibration:
            raise EdgeSentError(f"{calib_path}: no calibration texts")
    eval_set = _eval_set(config, meta)
    refit_names = refit.variants_to_refit(config.refit_head, config.quantize)
    ov_runner = runners.openvino_runner(config.openvino_python)
    _say(config, f"loading encoder {meta['encoder']['spec']}")
    encoder, model = _load_model(config.run_dir, meta)
    refit_data = None
    if refit_names:
        head = (model.head.weight.detach().numpy(), model.head.bias.detach().numpy())
        refit_data = refit.load_refit_data(config.run_dir, meta, config.refit_data, config.data, head)
    tokenizer = TextEncoder(encoder.tokenizer_file, int(meta["max_length"]))
    geometry = graph.Geometry.from_config(encoder.config)
    source = config.run_dir / (meta["files"].get("dev") or meta["files"]["calibration"])
    verify_texts = verify.select_texts(_texts_from(source, "text"), tokenizer, config.verify_size)

    with staging_dir(config.out, config.force) as tmp:
        raw = tmp / PORTABLE_FILE
        _say(config, "tracing encoder + pooling + head into one ONNX graph")
        _checkpoint("start")
        graph.export_raw(model, raw)
        _checkpoint("traced")
        _say(config, "fusing with onnxruntime's transformer optimizer")
        cls_only = meta["pooling"] == "cls"
        counts = graph.fuse(raw, tmp / VARIANT_FILES["fp32"], geometry, cls_only=cls_only)

        _say(config, f"verifying fp32 against torch on {len(verify_texts)} texts")
        reference = verify.torch_logits(model, tokenizer, verify_texts)
        fp32 = verify.session(tmp / VARIANT_FILES["fp32"])
        logits_1, probs_fp32 = verify.onnx_outputs(fp32, tokenizer, verify_texts, batch_size=1)
        logits_b, _ = verify.onnx_outputs(fp32, tokenizer, verify_texts, batch_size=8, shuffle=True)
        parity = verify.gate_fp32(reference, logits_1, logits_b)
        variants: dict[str, dict] = {
            "fp32": {
                "file": VARIANT_FILES["fp32"],
                "ops": counts,
                "last_layer_cls_only": cls_only,
                "vs_torch": parity,
                "verified_on": "CPUExecutionProvider",
                "verification_labels": probs_fp32.argmax(axis=1).tolist(),
            }
        }
        eval_fp32 = None
        if eval_set is not None:
            _, eval_fp32 = verify.onnx_outputs(fp32, tokenizer, eval_set[0], batch_size=32)
            variants["fp32"]["eval_accuracy"] = verify.accuracy(eval_fp32, eval_set[1])
        if refit_data is not None and refit_data.dev is not None:
            _, dev_fp32 = verify.onnx_outputs(fp32, tokenizer, refit_data.dev.texts, batch_size=32)
            variants["fp32"]["dev_accuracy"] = verify.accuracy(dev_fp32, refit_data.dev_ids)
        del fp32
        request = MeasureRequest(
            model="", tokenizer=str(encoder.tokenizer_file), max_length=int(meta["max_length"]), texts=verify_texts
        )

        for name in config.quantize:
            _say(config, f"building variant {name}")
            target = tmp / VARIANT_FILES[name]
            _checkpoint(f"variant:{name}")
            t0 = time.perf_counter()
            if name == "int8":
                quantize.quantize_int8(tmp / VARIANT_FILES["fp32"], target)
            elif name == "int8-static":
                quantize.quantize_int8_static(raw, target, tokenizer, calibration)
            elif name == "fp16":
                quantize.convert_fp16(tmp / VARIANT_FILES["fp32"], target)
            else:
                mha = tmp / "fused_mha.onnx"
                graph.fuse(raw, mha, geometry, mha=True, cls_only=cls_only)
                quantize.quantize_int4(mha, target)
                mha.unlink()
            entry = {
                "file": target.name,
                "build_s": round(time.perf_counter() - t0, 2),
                "ops": graph.op_counts(onnx.load(str(target), load_external_data=False)),
            }
            if name in refit_names:
                runner = ov_runner if name in verify.OPENVINO_TARGETS and ov_runner else runners.CpuRunner()
                precision = verify.OPENVINO_TARGETS.get(name, "auto")
                _say(
                    config,
                    f"refitting the {name} head on its own features ({runner.name}, {len(refit_data.train)} texts)",
                )
                weight, bias, entry["refit"] = refit.refit_head(
                    runner,
                    target,
                    tmp,
                    replace(request, provider=runner.name, precision=precision),
                    refit_data,
                    refit.head_config(meta),
                )
                refit.replace_head(target, target, weight, bias)
                entry["refit"]["fp32_dev_accuracy"] = variants["fp32"].get("dev_accuracy")
            if name == "int8-static":
                entry["calibration"] = {
                    "source": str(calib_path),
                    "n_texts": len(calibration),
                    "method": "minmax",
                }
            try:
                sess = verify.session(target)
            except Exception as exc:  # fp16 kernels are CUDA-only for several fused ops
                entry["verified_on"] = None
                entry["not_verified_reason"] = f"onnxruntime CPU cannot run it ({str(exc).splitlines()[0][:160]})"
            else:
                logits, probs = verify.onnx_outputs(sess, tokenizer, verify_texts, batch_size=VERIFY_BATCH)
                entry |= {
                    "verified_on": "CPUExecutionProvider",
                    "vs_torch": {"max_abs_dlogit": float(np.abs(reference - logits).max())},
                    "vs_fp32": verify.agreement(probs_fp32, probs),
                    "verification_labels": probs.argmax(axis=1).tolist(),
                }
                if eval_set is not None:
                    _, probs_eval = verify.onnx_outputs(sess, tokenizer, eval_set[0], batch_size=32)
                    entry["eval_accuracy"] = verify.accuracy(probs_eval, eval_set[1])
                    entry["eval_vs_fp32"] = verify.agreement(eval_fp32, probs_eval)
            variants[name] = entry

        if ov_runner is not None:
            _say(config, "measuring the OpenVINO variants on the OpenVINO provider")
            files = {name: tmp / entry["file"] for name, entry in variants.items()}
            for name, measured in verify.on_openvino(
                ov_runner, request, files, (probs_fp32, eval_fp32), eval_set
            ).items():
                variants[name]["openvino"] = measured
        if not config.portable:
            raw.unlink()
        shutil.copyfile(encoder.tokenizer_file, tmp / TOKENIZER)
        labels = list(meta["labels"])
        write_json(tmp / "config.json", hf_config(encoder.config, labels, int(meta["max_length"]), meta["pooling"]))
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "edge_sent_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "encoder": meta["encoder"] | {"random_weights": encoder.is_random},
            "labels": labels,
            "data_labels": list(meta.get("data_labels", labels)),  # the labels as the training data wrote them
            "max_length": int(meta["max_length"]),
            "pooling": meta["pooling"],
            "portable_file": PORTABLE_FILE if config.portable else None,
            "verification": {
                "source": str(source),
                "n_texts": len(verify_texts),
                "texts_sha256": verify.texts_sha256(verify_texts),
                "batch_size": VERIFY_BATCH,
                "eval": str(config.eval) if config.eval else None,
                "eval_n": len(eval_set[0]) if eval_set else 0,
            },
            "variants": variants,
            "openvino": {"measured": ov_runner is not None, "onnxruntime": ov_runner.version if ov_runner else None},
            "export_s": round(time.perf_counter() - started, 1),
        }
        _checkpoint("manifest")
        finalize_manifest(tmp, manifest)
        _checkpoint("before-rename")
    _say(config, f"bundle written to {config.out}")
    return manifest
