"""Whether the OpenVINO runtime (the `openvino` extra) is installed here, and its version: asked without importing it,
by the provider resolution, the candidates of `auto` and the engine itself."""

from __future__ import annotations

import platform
from importlib import metadata

DISTRIBUTION = "openvino"
MACHINES = ("x86_64", "amd64", "aarch64", "arm64")  # where the `openvino` wheel has a CPU plugin


def runtime_version() -> str | None:
    """The installed OpenVINO runtime's version; None when the `openvino` package is not installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None


def runtime_available(machine: str | None = None) -> bool:
    """Whether this environment can run the OpenVINO engine (the package is installed, on a machine it targets)."""
    return runtime_version() is not None and (machine or platform.machine()).lower() in MACHINES
