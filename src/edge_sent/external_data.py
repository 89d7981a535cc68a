"""Find the external-data files an ONNX model references, without the `onnx` package.

A minimal protobuf walk: ModelProto.graph (7) -> GraphProto.initializer (5) / sparse_initializer (15)
-> TensorProto.external_data (13) -> StringStringEntryProto {key (1), value (2)}. Subgraphs in node
attributes (If/Loop bodies) are walked too. Large fields (weights) are skipped by length, not parsed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from edge_sent.errors import BundleError


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview | None]]:
    """Yield (field number, wire type, value) with length-delimited values as memoryviews."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | memoryview | None
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = None, pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise ValueError("truncated field")
        yield number, wire, value


def _messages(buf: memoryview) -> Iterator[tuple[int, memoryview]]:
    """The length-delimited fields (sub-messages, strings) of a message, as (field number, bytes)."""
    for number, wire, value in _fields(buf):
        if wire == 2 and isinstance(value, memoryview):
            yield number, value


def _tensor_locations(tensor: memoryview) -> list[str]:
    found = []
    for number, value in _messages(tensor):
        if number == 13:
            entry = {n: bytes(v).decode("utf-8", "replace") for n, v in _messages(value)}
            if entry.get(1) == "location":
                found.append(entry.get(2, ""))
    return found


def _graph_locations(graph: memoryview) -> list[str]:
    found: list[str] = []
    for number, value in _messages(graph):
        if number == 5:  # initializer
            found += _tensor_locations(value)
        elif number == 15:  # sparse_initializer: values (1) and indices (2) are tensors
            for n, v in _messages(value):
                if n in (1, 2):
                    found += _tensor_locations(v)
        elif number == 1:  # node -> attribute (5) -> g (6) / graphs (11) / t (5) / tensors (10)
            for n, attribute in _messages(value):
                if n == 5:
                    for an, av in _messages(attribute):
                        if an in (6, 11):
                            found += _graph_locations(av)
                        elif an in (5, 10):
                            found += _tensor_locations(av)
    return found


def external_data_files(model_path: Path) -> list[str]:
    """The `location` of every external-data tensor in the model (empty for a self-contained model)."""
    data = memoryview(model_path.read_bytes())
    try:
        found: list[str] = []
        for number, value in _messages(data):
            if number == 7:
                found += _graph_locations(value)
        return found
    except ValueError as exc:
        raise BundleError(f"{model_path}: not a valid ONNX file ({exc})") from None


def check_external_data(model_path: Path, listed: set[str]) -> list[str]:
    """Refuse references that leave the bundle directory or name files the manifest does not list."""
    names = sorted(set(external_data_files(model_path)))
    for name in names:
        if not name or Path(name).is_absolute() or Path(name).name != name or name in (".", ".."):
            raise BundleError(f"{model_path}: references external data outside the bundle ({name!r})")
        if name not in listed:
            raise BundleError(f"{model_path}: references external data {name!r} that the manifest does not list")
    return names
