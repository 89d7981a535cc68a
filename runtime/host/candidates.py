"""The host probe's candidates on engines other than onnxruntime: which there are here, how each is loaded, and
how far its answers depend on the batch (what `serve` needs to know).

Today one other engine: the OpenVINO runtime (`openvino_engine`), when installed, for `auto` on the CPU provider:
the fp32 graph computed in bf16 where the CPU has AVX-512 BF16 or AMX, and in f32. Their names come from
`edge_sent.candidates`; a plain variant name is onnxruntime on the probe's provider.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from edge_sent.candidates import OPENVINO, openvino_candidates, parse_candidate
from edge_sent.contract import Manifest
from edge_sent.integrity import check_graph
from edge_sent.runtime.engine import Engine
from edge_sent.runtime.openvino_engine import OpenVINOEngine
from edge_sent.runtime.openvino_runtime import runtime_available, runtime_version
from edge_sent.runtime.session import SessionConfig, cpu_has_bf16
from edge_sent.tokenization import Tokenizer
from edge_sent.variants import REFERENCE

BATCH_CHECK_TEXTS = 256  # host-check texts run alone and in batches to measure batch independence


def engine_candidates(manifest: Manifest, provider: str, among: set[str] | None) -> tuple[str, ...]:
    """Other engines' candidates for `auto` on `provider` here (none unless it is the CPU provider, the OpenVINO
    runtime is installed, and the fp32 graph is among the variants `auto` may take)."""
    if provider != "cpu" or not runtime_available() or REFERENCE not in manifest.variants:
        return ()
    if among is not None and REFERENCE not in among:
        return ()
    return openvino_candidates(cpu_has_bf16())


def engine_versions(candidates: tuple[str, ...]) -> dict[str, Any]:
    """What the host profile's key records about the other engines (their versions: a new one measures again)."""
    return {OPENVINO: runtime_version()} if any(parse_candidate(c).engine == OPENVINO for c in candidates) else {}


def engine_fields(name: str, provider: str) -> dict[str, str | None]:
    """The engine that runs `name` (a candidate or a plain variant) on `provider` and its version: what `tune`,
    `info` and serve's `/info` show beside the variant."""
    candidate = parse_candidate(name)
    if candidate.engine == OPENVINO or (candidate.engine is None and provider == OPENVINO and runtime_available()):
        return {"engine": OPENVINO, "engine_version": runtime_version()}
    import onnxruntime

    return {"engine": "onnxruntime", "engine_version": onnxruntime.__version__}


def engine_label(name: str, provider: str) -> str:
    """`OpenVINO 2026.4.1, bf16` / `onnxruntime 1.32.0`: the engine of `name` in a line of text."""
    fields, candidate = engine_fields(name, provider), parse_candidate(name)
    if fields["engine"] != OPENVINO:
        return f"onnxruntime {fields['engine_version']}"
    return f"OpenVINO {fields['engine_version']}" + (f", {candidate.precision}" if candidate.engine else "")


def load_candidate(name: str, manifest: Manifest, tokenizer: Tokenizer, config: SessionConfig) -> Engine:
    """The engine that runs candidate `name` (its graph checked against the manifest first)."""
    candidate = parse_candidate(name)
    path = check_graph(manifest, manifest.variant_file(candidate.variant))
    if candidate.engine == OPENVINO:
        return OpenVINOEngine(path, tokenizer, replace(config, provider=OPENVINO, precision=candidate.precision))
    return Engine(path, tokenizer, config)


def batch_dependence(engine: Engine, texts: list[str], batch_size: int) -> tuple[float, int]:
    """Up to BATCH_CHECK_TEXTS texts, each alone and in padded batches of `batch_size` in the order given (as a
    server batches arrivals): the largest probability difference, and how many labels differ."""
    encoded = engine.encode(texts[:BATCH_CHECK_TEXTS])
    batched = engine.run_encoded(encoded, batch_size, order=np.arange(len(encoded)))["probabilities"]
    alone = engine.run_encoded(encoded, 1)["probabilities"]
    if not len(encoded):
        return 0.0, 0
    flips = int((alone.argmax(axis=1) != batched.argmax(axis=1)).sum())
    return float(np.abs(alone - batched).max()), flips
