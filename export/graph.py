"""Trace encoder + pooling + head into ONE ONNX graph, then fuse it with onnxruntime's transformer optimizer.

The legacy TorchScript exporter with eager attention produces the MatMul/Softmax attention pattern
that onnxruntime's BERT fusion recognises; the fused-op counts are asserted, so a silent fusion
failure fails the export instead of shipping a slow graph.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from edge_sent.contract import INPUT_NAMES, OUTPUT_NAMES
from edge_sent.errors import EdgeSentError
from edge_sent.train.model import SentimentModel

OPSET = 17
POOLED = "pooled"  # the [CLS]/mean vector that feeds the head: a stable name for refit and feature outputs
MASK_FILL = -1.0e4  # additive attention-mask value: finite in bf16/fp16 (float32's minimum overflows to -inf)


@dataclass(frozen=True)
class Geometry:
    num_layers: int
    num_heads: int
    hidden_size: int

    @classmethod
    def from_config(cls, config: dict) -> Geometry:
        return cls(int(config["num_hidden_layers"]), int(config["num_attention_heads"]), int(config["hidden_size"]))


def export_raw(model: SentimentModel, path: Path) -> None:
    """Standard-ops fp32 graph (portable: TensorRT, OpenVINO, any ONNX runtime)."""
    ids = torch.tensor([[101, 2769, 4263, 102, 0, 0], [101, 2769, 4263, 6821, 3221, 102]], dtype=torch.long)
    mask = (ids != 0).long()
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    axes |= {name: {0: "batch"} for name in OUTPUT_NAMES}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (ids, mask, torch.zeros_like(ids)),
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    model_proto = onnx.load(str(path))
    _name_pooled(model_proto)
    _finite_mask_fill(model_proto)
    onnx.save(model_proto, str(path))


def _name_pooled(model: onnx.ModelProto) -> None:
    """Rename the head's input to `pooled`, so every variant derived from this graph exposes it by name."""
    head = next((n for n in model.graph.node if n.op_type == "Gemm" and n.name.startswith("/head/")), None)
    if head is None:
        raise EdgeSentError("export: the traced graph has no /head/ Gemm node (unexpected head structure)")
    old = head.input[0]
    for node in model.graph.node:
        node.input[:] = [POOLED if name == old else name for name in node.input]
        node.output[:] = [POOLED if name == old else name for name in node.output]


def _finite_mask_fill(model: onnx.ModelProto) -> None:
    """HF's extended attention mask multiplies by float32's minimum, which becomes -inf in bf16, and
    0 × -inf = NaN: OpenVINO's bf16 inference then returns garbage. A finite fill gives the same softmax."""
    for node in model.graph.node:
        if node.op_type != "Constant":
            continue
        for attr in node.attribute:
            if attr.name == "value" and attr.t.data_type == onnx.TensorProto.FLOAT:
                value = numpy_helper.to_array(attr.t)
                if value.size == 1 and float(value.reshape(-1)[0]) <= np.finfo(np.float32).min / 2:
                    attr.t.CopyFrom(numpy_helper.from_array(np.full(value.shape, MASK_FILL, np.float32), attr.t.name))


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(Counter(node.op_type for node in model.graph.node))


def _optimize(raw: Path, geometry: Geometry, mha: bool):
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    if mha:  # Q, K, V stay separate MatMuls (so weight-only quantization reaches them), embedding stays a Gather
        options.use_multi_head_attention = True
        options.enable_embed_layer_norm = False
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    return optimize_model(
        str(raw),
        model_type="bert",
        num_heads=geometry.num_heads,
        hidden_size=geometry.hidden_size,
        opt_level=0,
        optimization_options=options,
    )


def prune_last_layer_to_cls(model: onnx.ModelProto) -> None:
    """With [CLS] pooling, only row 0 of the last layer's output is used, and once the last attention has
    read K and V from every token, the rows no longer mix: take row 0 of the attention output and of the
    residual there, so the output projection, the FFN and both layer norms of that layer run on one row."""
    nodes = list(model.graph.node)
    last = max(i for i, n in enumerate(nodes) if n.op_type in ("Attention", "MultiHeadAttention"))
    attention = nodes[last]
    consumers = [n for n in nodes if attention.output[0] in n.input]
    if len(consumers) != 1 or consumers[0].op_type != "MatMul":
        raise EdgeSentError("export: unexpected graph after the last attention (cannot prune to [CLS])")
    projection = consumers[0]
    skip_ln = next(
        (n for n in nodes if n.op_type == "SkipLayerNormalization" and projection.output[0] in n.input), None
    )
    if skip_ln is None:
        raise EdgeSentError("export: no SkipLayerNormalization after the last attention (cannot prune to [CLS])")
    residual_slot = 1 if skip_ln.input[0] == projection.output[0] else 0
    index = numpy_helper.from_array(np.zeros(1, dtype=np.int64), "cls_row_index")
    model.graph.initializer.append(index)
    rows = []
    for name, tensor in (("attention", attention.output[0]), ("residual", skip_ln.input[residual_slot])):
        out = f"cls_row_{name}"
        rows.append(helper.make_node("Gather", [tensor, index.name], [out], name=f"/prune/cls_{name}", axis=1))
    projection.input[0] = rows[0].output[0]
    skip_ln.input[residual_slot] = rows[1].output[0]
    for offset, node in enumerate(rows, start=1):
        model.graph.node.insert(last + offset, node)


def fuse(raw: Path, out: Path, geometry: Geometry, *, mha: bool = False, cls_only: bool = False) -> dict[str, int]:
    """Fuse the raw graph for onnxruntime; return the op counts, raising if the fusion fell short.
    `cls_only`: the last layer works on the [CLS] row only (prune_last_layer_to_cls)."""
    optimized = _optimize(raw, geometry, mha)
    if cls_only:
        prune_last_layer_to_cls(optimized.model)
    counts = op_counts(optimized.model)
    attention = counts.get("Attention", 0) + counts.get("MultiHeadAttention", 0)
    skip_ln = counts.get("SkipLayerNormalization", 0)
    if attention != geometry.num_layers or skip_ln != 2 * geometry.num_layers:
        raise EdgeSentError(
            f"onnxruntime fusion failed: {attention} attention and {skip_ln} SkipLayerNormalization nodes, "
            f"expected {geometry.num_layers} and {2 * geometry.num_layers} (encoder architecture not fusable?)"
        )
    optimized.save_model_to_file(str(out), use_external_data_format=False)
    return counts
