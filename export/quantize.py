"""The quantized variants, each made with onnxruntime's own tools (recipes and their measurements: README).

- int8:        dynamic, per-channel int8 weights, on the fused graph (QAttention, QEmbedLayerNormalization:
               the word-embedding table is quantized too).
- int8-static: QDQ, per-channel int8 weights, uint8 activations, MinMax calibration, MatMul only, on the
               standard-ops graph (runs on onnxruntime CPU and on the OpenVINO provider).
- fp16:        the fused graph in float16 with fp32 inputs and outputs (for CUDA).
- int8-block:  8-bit MatMulNBits, symmetric blocks of 32 along K, int8 activations per block of 32 (accuracy
               level 4): every scale is local to one row of one block, so a text's answer does not depend on its
               batch; word embeddings stay fp32.
- int4:        weight-only 4-bit MatMulNBits (block 32, asymmetric) plus a 4-bit word-embedding table,
               on the fused graph with MultiHeadAttention (so Q/K/V weights are separate MatMuls).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx

from edge_sent.tokenization import Tokenizer

for _name in ("onnxruntime.quantization", "onnxruntime.quantization.matmul_nbits_quantizer", ""):
    logging.getLogger(_name).setLevel(logging.ERROR)  # onnxruntime's quantizer logs advice on the root logger
_DEFAULT_TYPE = {"DefaultTensorType": onnx.TensorProto.FLOAT}  # needed to quantize an already-fused graph


def quantize_int8(fused: Path, out: Path, reduce_range: bool = False) -> None:
    """Dynamic int8, per-channel weights. `reduce_range`: 7-bit weights, so that the u8 activation × s8 weight
    pairs of x86 kernels without VNNI (AVX2's vpmaddubsw) cannot saturate their 16-bit sums."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        fused,
        out,
        op_types_to_quantize=["MatMul", "Attention", "EmbedLayerNormalization", "Gather"],
        per_channel=True,
        reduce_range=reduce_range,
        weight_type=QuantType.QInt8,
        extra_options=dict(_DEFAULT_TYPE),
    )


class _Calibration:
    """onnxruntime CalibrationDataReader over padded batches of calibration texts."""

    def __init__(self, encoder: Tokenizer, texts: list[str], batch_size: int = 8) -> None:
        self._batches: Iterator = iter(list(encoder.batches(encoder.encode(texts), batch_size)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else batch.feeds()

    def rewind(self) -> None:  # pragma: no cover - onnxruntime API
        pass


def quantize_int8_static(
    raw: Path, out: Path, encoder: Tokenizer, texts: list[str], reduce_range: bool = False
) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = out.with_suffix(".pre.onnx")
    quant_pre_process(str(raw), str(prepared), skip_symbolic_shape=True)
    try:
        quantize_static(
            prepared,
            out,
            _Calibration(encoder, texts),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    finally:
        prepared.unlink(missing_ok=True)
        for extra in out.parent.glob("*.onnx.data"):
            extra.unlink(missing_ok=True)


def convert_fp16(fused: Path, out: Path) -> None:
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(fused)))
    model.convert_float_to_float16(keep_io_types=True, use_symbolic_shape_infer=True)
    model.save_model_to_file(str(out), use_external_data_format=False)


def _weight_only(
    model: onnx.ModelProto, op: str, axis: int, block: int, symmetric: bool, bits: int = 4
) -> onnx.ModelProto:
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    config = DefaultWeightOnlyQuantConfig(
        block_size=block,
        is_symmetric=symmetric,
        accuracy_level=4,  # int8 activations per block: the fast VNNI kernel, and measured more faithful
        bits=bits,
        op_types_to_quantize=(op,),
        quant_axes=((op, axis),),
    )
    quantizer = MatMulNBitsQuantizer(model, algo_config=config)
    with np.errstate(invalid="ignore", divide="ignore"):
        quantizer.process()
    return quantizer.model.model


def quantize_int4(fused_mha: Path, out: Path) -> None:
    """MatMul weights: asymmetric 4-bit, blocks of 32 (symmetric agreed with fp32 on 62% of labels on the
    real MiniLM check, asymmetric on 89.5%); word embeddings: symmetric 4-bit, blocks of 64 (keeps the
    bert-base file under 16% of fp32)."""
    model = _weight_only(onnx.load(str(fused_mha)), "MatMul", 0, 32, symmetric=False)
    model = _weight_only(model, "Gather", 1, 64, symmetric=True)
    onnx.save(model, str(out))


def quantize_int8_block(fused_mha: Path, out: Path) -> None:
    """8-bit MatMulNBits in symmetric blocks of 32 (blocks of 128: 95.6% agreement with fp32 on the real MiniLM
    check and batch-dependent; blocks of 32: 97.8%, batch-independent)."""
    onnx.save(_weight_only(onnx.load(str(fused_mha)), "MatMul", 0, 32, symmetric=True, bits=8), str(out))
