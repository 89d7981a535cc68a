"""The variant and provider tables drive the CLI, the runtime's choices and the export's builders."""

from __future__ import annotations

import pytest

from edge_sent.errors import EdgeSentError
from edge_sent.providers import PROVIDER_CHOICES, PROVIDERS, provider_spec
from edge_sent.variants import QUANTIZE_CHOICES, REFERENCE, VARIANT_FILES, VARIANTS, auto_preference
from tests.conftest import assert_user_error, run_cli


def test_export_builds_exactly_the_tables_variants():
    from edge_sent.export.variants import BUILDERS

    assert set(BUILDERS) == set(QUANTIZE_CHOICES) == set(VARIANTS) - {REFERENCE}
    assert VARIANT_FILES[REFERENCE] == "model.onnx" and len(set(VARIANT_FILES.values())) == len(VARIANTS)


def test_cli_choices_and_help_come_from_the_tables(tmp_path):
    proc = run_cli("export", str(tmp_path), "--out", str(tmp_path / "b"), "--quantize", "int3")
    assert_user_error(proc, f"(choose from {', '.join(QUANTIZE_CHOICES)})")
    export_help = " ".join(run_cli("export", "--help").stdout.split())
    predict_help = " ".join(run_cli("predict", "--help").stdout.split())
    for name in QUANTIZE_CHOICES:
        assert name in export_help
    for name in VARIANTS:
        assert name in predict_help
    for name in PROVIDER_CHOICES:
        assert name in predict_help


def test_auto_and_gpu_rules_come_from_the_tables():
    assert auto_preference("cpu") == ("int8", "int8-block")  # fastest first, each only if faithful enough
    for name, spec in PROVIDERS.items():
        preferred = auto_preference(name)
        assert all(VARIANTS[v].runs_on_provider(name) for v in preferred)
        assert spec.gpu == (name in ("cuda", "tensorrt"))
    assert VARIANTS["fp16"].gpu_only and not VARIANTS["int8"].gpu_only
    assert not VARIANTS["int8"].batch_independent and VARIANTS["fp32"].batch_independent


def test_provider_table_gives_each_provider_its_own_options():
    assert provider_spec("cpu").session_providers("fp32") == ["CPUExecutionProvider"]
    assert provider_spec("cuda").session_providers("fp32") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    (openvino, options), fallback = provider_spec("openvino").session_providers("bf16")
    assert openvino == "OpenVINOExecutionProvider" and '"bf16"' in options["load_config"]
    assert fallback == "CPUExecutionProvider"
    with pytest.raises(EdgeSentError, match="unknown provider 'npu'"):
        provider_spec("npu")


def test_auto_provider_comes_from_the_table():
    from edge_sent.providers import auto_provider

    cpu, cuda, ov = "CPUExecutionProvider", "CUDAExecutionProvider", "OpenVINOExecutionProvider"
    assert auto_provider([cpu], "x86_64") == "cpu"
    assert auto_provider([ov, cpu], "x86_64") == "openvino"
    assert auto_provider([ov, cpu], "aarch64") == "cpu"  # OpenVINO's CPU plugin: x86 only
    assert auto_provider([cuda, ov, cpu], "x86_64") == "cuda"
    assert auto_provider(["TensorrtExecutionProvider", cpu], "x86_64") == "cpu"  # never picked by auto
