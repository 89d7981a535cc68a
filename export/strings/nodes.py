"""Small ONNX-building helpers the string-in graph modules share: int64 and string constants, one node."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CONTRIB = "ai.onnx.contrib"  # onnxruntime-extensions' operator domain
ZERO = helper.make_tensor("", TensorProto.INT64, [1], [0])  # ConstantOfShape's value: int64 zeros
ONE = helper.make_tensor("", TensorProto.INT64, [1], [1])


def const(name: str, values: Sequence[int] | int | np.ndarray, scalar: bool = False) -> onnx.NodeProto:
    """An int64 Constant node (a scalar when `scalar`)."""
    array = np.asarray(values, dtype=np.int64).reshape(() if scalar else -1)
    tensor = helper.make_tensor(name, TensorProto.INT64, array.shape, array.ravel().tolist())
    return helper.make_node("Constant", [], [name], value=tensor)


def node(op: str, inputs: Sequence[str], output: str, domain: str = "", **attrs: Any) -> onnx.NodeProto:
    """One node with one output."""
    return helper.make_node(op, list(inputs), [output], domain=domain or None, **attrs)


def string_tensor(name: str, values: str | Sequence[str]) -> onnx.TensorProto:
    """A string tensor: a scalar for one str, else 1-D."""
    encoded = values.encode() if isinstance(values, str) else [v.encode() for v in values]
    return numpy_helper.from_array(np.array(encoded, dtype=object), name)


def string_const(name: str, value: str) -> onnx.NodeProto:
    """A string Constant node."""
    return helper.make_node("Constant", [], [name], value=string_tensor(name, value))
