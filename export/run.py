"""`edge-sent export`: RUN_DIR -> a verified bundle with the requested quantized variants.

Named steps, each reading the record `prepare` made: build the fp32 graph, gate it against torch, then for
each variant build it (export/variants.py), refit its head if asked, measure it on the CPU engine; measure the
OpenVINO targets there; write config, tokenizer and manifest; rename the staging directory into place.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import onnx

from edge_sent import __version__
from edge_sent.calibration import LogitMap
from edge_sent.contract import (
    CONFIG,
    FORMAT,
    FORMAT_VERSION,
    HOST_CHECK,
    PORTABLE_FILE,
    TOKENIZER,
    TOKENIZER_CONFIG,
    write_json,
)
from edge_sent.errors import EdgeSentError
from edge_sent.export import graph, refit, runners, verify
from edge_sent.export.bundle import hf_config, staging_dir, tokenizer_config
from edge_sent.export.prepare import ExportConfig, Prepared, prepare
from edge_sent.export.strings import build as strings
from edge_sent.export.variants import BUILDERS, BuildInputs
from edge_sent.host_check import write_host_check
from edge_sent.integrity import write_manifest
from edge_sent.metrics import agreement
from edge_sent.progress import stderr
from edge_sent.rundir import RunMeta
from edge_sent.runtime.engine import DEFAULT_BATCH_SIZE
from edge_sent.runtime.measure import MeasureRequest
from edge_sent.variants import REFERENCE, VARIANT_FILES, VARIANTS

__all__ = ["ExportConfig", "export_bundle"]

VERIFY_BATCH = 8  # dynamic int8 scales activations per batch: recorded so the labels can be reproduced
EVAL_BATCH = 32
REDUCE_RANGE_VARIANTS = ("int8", "int8-static")  # the u8 × s8 recipes `--reduce-range` applies to
HOST_CHECK_BATCH = DEFAULT_BATCH_SIZE  # the runtime's default batch: what a host's answers are checked at


@dataclass(frozen=True)
class Reference:
    """What fp32 answered: every variant is measured against it."""

    probs: np.ndarray  # verification texts, at batch 1
    torch_logits: np.ndarray
    eval_probs: np.ndarray | None
    host_probs: np.ndarray  # the host-check texts, at HOST_CHECK_BATCH


def _checkpoint(stage: str) -> None:
    """Crash-safety tests kill the export at named stages (EDGE_SENT_TEST_KILL_AT=<stage>)."""
    if os.environ.get("EDGE_SENT_TEST_KILL_AT") == stage:
        os.kill(os.getpid(), signal.SIGKILL)


def _sayer(config: ExportConfig):
    def say(message: str) -> None:
        if not config.quiet:
            stderr.print(f"[dim]export:[/dim] {message}")

    return say


def build_fp32(job: Prepared, tmp: Path) -> dict:
    """Trace encoder + pooling + head into one standard-ops graph, fuse it for onnxruntime (counts asserted)."""
    raw = tmp / PORTABLE_FILE
    _checkpoint("start")
    graph.export_raw(job.model, raw)
    _checkpoint("traced")
    counts = graph.fuse(raw, tmp / VARIANT_FILES[REFERENCE], job.geometry, cls_only=job.cls_only)
    return {
        "file": VARIANT_FILES[REFERENCE],
        "ops": counts,
        "last_layer_cls_only": job.cls_only,
        "batch_independent": VARIANTS[REFERENCE].batch_independent,
    }


def gate_fp32(job: Prepared, tmp: Path, entry: dict) -> Reference:
    """fp32 ONNX against torch (batch 1 and shuffled padded batches): refuse the export on a mismatch."""
    reference = verify.torch_logits(job.model, job.tokenizer, job.verify_texts)
    exact = verify.exact_logits(job.model, job.tokenizer, job.verify_texts)
    fp32 = verify.engine(tmp / entry["file"], job.tokenizer)
    logits_1, probs = verify.onnx_outputs(fp32, job.verify_texts, batch_size=1)
    logits_b, _ = verify.onnx_outputs(fp32, job.verify_texts, batch_size=VERIFY_BATCH, shuffle=True)
    entry["vs_torch"] = verify.gate_fp32(reference, exact, logits_1, logits_b, job.meta.temperature)
    entry["verified_on"] = fp32.providers[0]
    entry["verification_labels"] = probs.argmax(axis=1).tolist()
    eval_probs = None
    if job.eval_set is not None:
        _, eval_probs = verify.onnx_outputs(fp32, job.eval_set[0], batch_size=EVAL_BATCH)
        entry["eval_accuracy"] = verify.accuracy(eval_probs, job.eval_set[1])
    if job.refit_data is not None and job.refit_data.dev is not None and job.refit_data.dev_ids is not None:
        _, dev_probs = verify.onnx_outputs(fp32, job.refit_data.dev.texts, batch_size=EVAL_BATCH)
        entry["dev_accuracy"] = verify.accuracy(dev_probs, job.refit_data.dev_ids)
    _, host_probs = verify.onnx_outputs(fp32, job.host_check_texts, batch_size=HOST_CHECK_BATCH)
    write_host_check(tmp / HOST_CHECK, job.host_check_texts, host_probs)
    return Reference(probs, reference, eval_probs, host_probs)


def build_variant(job: Prepared, tmp: Path, name: str) -> dict:
    target = tmp / VARIANT_FILES[name]
    _checkpoint(f"variant:{name}")
    started = time.perf_counter()
    reduce_range = job.config.reduce_range and name in REDUCE_RANGE_VARIANTS
    inputs = BuildInputs(
        tmp / VARIANT_FILES[REFERENCE],
        tmp / PORTABLE_FILE,
        job.geometry,
        job.cls_only,
        job.tokenizer,
        job.calibration,
        reduce_range,
    )
    BUILDERS[name](inputs, target)
    entry: dict = {
        "file": target.name,
        "build_s": round(time.perf_counter() - started, 2),
        "ops": graph.op_counts(onnx.load(str(target), load_external_data=False)),
        "batch_independent": VARIANTS[name].batch_independent,  # False: a text's answer moves with its batch
    }
    if name in REDUCE_RANGE_VARIANTS:
        entry["reduce_range"] = reduce_range
    if VARIANTS[name].needs_calibration:
        entry["calibration"] = {"source": str(job.calibration_source), "n_texts": len(job.calibration)}
        entry["calibration"]["method"] = "minmax"
    return entry


def _request(job: Prepared) -> MeasureRequest:
    return MeasureRequest(
        model="", tokenizer=str(job.encoder.tokenizer_file), max_length=job.max_length, texts=job.verify_texts
    )


def refit_variant(job: Prepared, tmp: Path, name: str, entry: dict, fp32_dev_accuracy: float | None) -> None:
    """Refit the variant's head on the features its own graph produces (on OpenVINO for its targets)."""
    assert job.refit_data is not None
    on_openvino = job.openvino is not None and VARIANTS[name].openvino_precision is not None
    runner: runners.CpuRunner | runners.OpenVinoRunner = runners.CpuRunner()
    if on_openvino and job.openvino is not None:
        runner = job.openvino
    precision = VARIANTS[name].openvino_precision or "auto"
    _sayer(job.config)(
        f"refitting the {name} head on its own features ({runner.name}, {len(job.refit_data.train)} texts)"
    )
    target = tmp / entry["file"]
    request = replace(_request(job), provider=runner.name, precision=precision)
    weight, bias, entry["refit"] = refit.refit_head(
        runner, target, tmp, request, job.refit_data, refit.head_config(job.meta), refit.calibrates(job.meta)
    )
    refit.replace_head(target, target, weight, bias)
    entry["refit"]["fp32_dev_accuracy"] = fp32_dev_accuracy


def measure_variant(job: Prepared, tmp: Path, entry: dict, ref: Reference) -> None:
    """The variant on the runtime's CPU engine: against torch, against fp32, and on the eval set."""
    try:
        engine = verify.engine(tmp / entry["file"], job.tokenizer)
    except EdgeSentError as exc:  # fp16 kernels are CUDA-only for several fused ops
        entry["verified_on"] = None
        entry["not_verified_reason"] = f"onnxruntime CPU cannot run it ({str(exc)[:200]})"
        return
    logits, probs = verify.onnx_outputs(engine, job.verify_texts, batch_size=VERIFY_BATCH)
    entry["verified_on"] = engine.providers[0]
    entry["vs_torch"] = {"max_abs_dlogit": float(np.abs(ref.torch_logits - logits).max())}
    entry["vs_fp32"] = agreement(ref.probs, probs)
    entry["verification_labels"] = probs.argmax(axis=1).tolist()
    _, host_probs = verify.onnx_outputs(engine, job.host_check_texts, batch_size=HOST_CHECK_BATCH)
    entry["host_check_vs_fp32"] = agreement(ref.host_probs, host_probs)
    if job.eval_set is not None and ref.eval_probs is not None:
        _, probs_eval = verify.onnx_outputs(engine, job.eval_set[0], batch_size=EVAL_BATCH)
        entry["eval_accuracy"] = verify.accuracy(probs_eval, job.eval_set[1])
        entry["eval_vs_fp32"] = agreement(ref.eval_probs, probs_eval)


def manifest_record(job: Prepared, variants: dict[str, dict]) -> dict:
    labels = list(job.meta.labels)
    verification = {
        "source": str(job.source),
        "n_texts": len(job.verify_texts),
        "texts_sha256": verify.texts_sha256(job.verify_texts),
        "batch_size": VERIFY_BATCH,
        "eval": str(job.config.eval) if job.config.eval else None,
        "eval_n": len(job.eval_set[0]) if job.eval_set else 0,
    }
    lengths = [len(e.ids) for e in job.tokenizer.encode(job.host_check_texts)]
    host_check = {
        "file": HOST_CHECK,
        "source": str(job.source),
        "n_texts": len(job.host_check_texts),
        "texts_sha256": verify.texts_sha256(job.host_check_texts),
        "batch_size": HOST_CHECK_BATCH,
        "typical_length": int(np.median(lengths)) if lengths else 0,
    }
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "edge_sent_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "encoder": asdict(job.meta.encoder) | {"random_weights": job.encoder.is_random},
        "labels": labels,
        "data_labels": list(job.meta.data_labels),  # the labels as the training data wrote them
        "max_length": job.max_length,
        "pooling": job.meta.pooling,
        "calibration": calibration_record(job.meta),
        "portable_file": PORTABLE_FILE if job.config.portable else None,
        "verification": verification,
        "host_check": host_check,
        "variants": variants,
        "openvino": {
            "measured": job.openvino is not None,
            "onnxruntime": job.openvino.version if job.openvino else None,
        },
        "export_s": round(time.perf_counter() - job.started, 1),
    }


def calibration_record(meta: RunMeta) -> dict:
    """What train chose and fitted (ECE before/after) and where it lives: the graph maps its logits before the
    softmax, so `logits` and `probabilities` are the calibrated ones (a refitted head carries its own)."""
    record = dict(meta.calibration or {"method": None, "skipped": "the run predates calibration"})
    record["temperature"] = meta.temperature
    record["applied"] = LogitMap.from_json(meta.calibration).in_graph
    return record


def _encoder_tokenizer_config(job: Prepared) -> dict:
    """The encoder's `tokenizer_config.json` beside its `tokenizer.json` ({} when it has none or it is unreadable)."""
    path = job.encoder.tokenizer_file.parent / TOKENIZER_CONFIG
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def write_bundle(job: Prepared, tmp: Path, variants: dict[str, dict], extra: dict | None = None) -> dict:
    """Tokenizer, Hugging Face config and the manifest (last: it hashes every other file)."""
    if not job.config.portable:
        (tmp / PORTABLE_FILE).unlink()
    shutil.copyfile(job.encoder.tokenizer_file, tmp / TOKENIZER)
    model_type = job.encoder.config.get("model_type")
    write_json(tmp / TOKENIZER_CONFIG, tokenizer_config(_encoder_tokenizer_config(job), model_type, job.max_length))
    labels = list(job.meta.labels)
    write_json(tmp / CONFIG, hf_config(job.encoder.config, labels, job.max_length, job.meta.pooling))
    manifest = manifest_record(job, variants) | (extra or {})
    _checkpoint("manifest")
    return write_manifest(tmp, manifest)


def export_bundle(config: ExportConfig) -> dict:
    say = _sayer(config)
    strings_plan = strings.plan(config)
    job = prepare(config, say)
    with staging_dir(config.out, config.force) as tmp:
        say("tracing encoder + pooling + head into one ONNX graph, fusing it with onnxruntime's optimizer")
        fp32 = build_fp32(job, tmp)
        say(f"verifying fp32 against torch on {len(job.verify_texts)} texts")
        reference = gate_fp32(job, tmp, fp32)
        variants = {REFERENCE: fp32}
        for name in config.quantize:
            say(f"building variant {name}")
            entry = build_variant(job, tmp, name)
            if name in job.refit_names:
                refit_variant(job, tmp, name, entry, fp32.get("dev_accuracy"))
            measure_variant(job, tmp, entry, reference)
            variants[name] = entry
        if job.openvino is not None:
            say("measuring the OpenVINO variants on the OpenVINO provider")
            files = {name: tmp / entry["file"] for name, entry in variants.items()}
            references = (reference.probs, reference.eval_probs)
            for name, measured in verify.on_openvino(
                job.openvino, _request(job), files, references, job.eval_set
            ).items():
                variants[name]["openvino"] = measured
        extra = {"strings": strings.build(job, tmp, variants, strings_plan, say)} if strings_plan else None
        manifest = write_bundle(job, tmp, variants, extra)
        _checkpoint("before-rename")
    say(f"bundle written to {config.out}")
    return manifest
