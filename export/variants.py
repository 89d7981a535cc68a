"""Each variant of the table (`edge_sent.variants`) mapped to its build function, in one place.

Adding a recipe: a row in the variant table, a function here, an entry in BUILDERS (an import-time check
keeps the two in step). Recipes and their measurements: export/quantize.py and the README.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge_sent.export import graph, quantize
from edge_sent.tokenization import Tokenizer
from edge_sent.variants import QUANTIZE_CHOICES


@dataclass(frozen=True)
class BuildInputs:
    """What a build function may start from."""

    fused: Path  # the fp32 graph fused for onnxruntime (model.onnx)
    raw: Path  # the standard-ops fp32 graph (model_portable.onnx)
    geometry: graph.Geometry
    cls_only: bool  # the last layer runs on the [CLS] row only
    tokenizer: Tokenizer
    calibration: tuple[str, ...]  # calibration texts (variants with needs_calibration)
    reduce_range: bool = False  # int8 / int8-static: 7-bit weights (no u8×s8 saturation on x86 without VNNI)


Builder = Callable[[BuildInputs, Path], None]


def _int8(src: BuildInputs, out: Path) -> None:
    quantize.quantize_int8(src.fused, out, src.reduce_range)


def _int8_static(src: BuildInputs, out: Path) -> None:
    quantize.quantize_int8_static(src.raw, out, src.tokenizer, list(src.calibration), src.reduce_range)


def _fp16(src: BuildInputs, out: Path) -> None:
    quantize.convert_fp16(src.fused, out)


def _on_mha_graph(quantizer: Callable[[Path, Path], None]) -> Builder:
    """A MatMulNBits recipe, on the fused graph with MultiHeadAttention (Q/K/V as separate MatMuls, so
    MatMulNBits takes them all)."""

    def build(src: BuildInputs, out: Path) -> None:
        mha = out.parent / "fused_mha.onnx"
        try:
            graph.fuse(src.raw, mha, src.geometry, mha=True, cls_only=src.cls_only)
            quantizer(mha, out)
        finally:
            mha.unlink(missing_ok=True)

    return build


BUILDERS: dict[str, Builder] = {
    "int8": _int8,
    "int8-block": _on_mha_graph(quantize.quantize_int8_block),
    "int8-static": _int8_static,
    "fp16": _fp16,
    "int4": _on_mha_graph(quantize.quantize_int4),
}
if set(BUILDERS) != set(QUANTIZE_CHOICES):  # pragma: no cover - a contributor's mistake, caught at import
    raise ImportError(f"export builders {sorted(BUILDERS)} do not match the variant table {sorted(QUANTIZE_CHOICES)}")
