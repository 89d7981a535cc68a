"""The variant table: every graph a bundle may hold, in one place (standard library only).

The contract takes the file names from it, `--quantize` and `--variant` take their choices and help from
it, the runtime's `auto` choice and GPU-only rule read it, `edge-sent bench` and the benchmarks list
variants through it; export maps each name to its build function in one place (`export/variants.py`).
Adding a recipe: a row here, a build function there.
"""

from __future__ import annotations

from dataclasses import dataclass

GPU_PROVIDERS = ("cuda", "tensorrt")


@dataclass(frozen=True)
class VariantSpec:
    name: str
    file: str  # named after the Hugging Face / Optimum habit, so other tools find it
    summary: str
    runs_on: tuple[str, ...] | None = None  # provider short names; None = every provider
    needs_calibration: bool = False  # built from calibration texts (--calibration)
    openvino_precision: str | None = None  # the export measures it on OpenVINO at this precision (auto: bf16 if any)
    auto_on: tuple[str, ...] = ()  # providers on which `auto` may take it, fastest first (fidelity permitting)
    float_on: tuple[str, ...] = ()  # providers on which it is the faithful float path (else fp32)
    batch_independent: bool = True  # a text's answer does not depend on the other texts of its batch
    # its answers move with the CPU class and the runtime's kernels (integer kernels: the device table's labels
    # differ across AVX2, AVX-512 VNNI, NEON and SVE+i8mm); fp32's move by ~1e-5 only
    cpu_dependent: bool = False
    refused_reason: str = ""  # why it does not run on the other providers
    device: str = ""  # what `runs_on` means, for messages ("CUDA")

    @property
    def openvino_only(self) -> bool:
        return self.runs_on == ("openvino",)

    @property
    def gpu_only(self) -> bool:
        return self.runs_on is not None and set(self.runs_on) <= set(GPU_PROVIDERS)

    def runs_on_provider(self, provider: str) -> bool:
        return self.runs_on is None or provider in self.runs_on


VARIANT_TABLE: tuple[VariantSpec, ...] = (
    VariantSpec("fp32", "model.onnx", "fp32, fused for onnxruntime", openvino_precision="bf16"),
    VariantSpec(
        "int8",
        "model_quantized.onnx",
        "dynamic int8 (CPU)",
        auto_on=("cpu",),
        batch_independent=False,  # one activation scale per tensor spans the whole padded batch
        cpu_dependent=True,
    ),
    VariantSpec(
        "int8-block",
        "model_int8_block.onnx",
        "8-bit MatMulNBits, blocks of 32, int8 activations per block (CPU; batch-independent)",
        auto_on=("cpu",),
        cpu_dependent=True,
    ),
    VariantSpec(
        "int8-static",
        "model_qdq.onnx",
        "static int8 (QDQ) from calibration texts",
        needs_calibration=True,
        openvino_precision="auto",
        cpu_dependent=True,
    ),
    VariantSpec(
        "fp16",
        "model_fp16.onnx",
        "float16 (CUDA)",
        runs_on=GPU_PROVIDERS,
        float_on=GPU_PROVIDERS,
        refused_reason="fp16 on CPU is slower than fp32",
        device="CUDA",
    ),
    VariantSpec("int4", "model_q4.onnx", "4-bit weight-only MatMulNBits", cpu_dependent=True),
)
VARIANTS: dict[str, VariantSpec] = {spec.name: spec for spec in VARIANT_TABLE}
REFERENCE = "fp32"  # the variant every other one is verified against
QUANTIZE_CHOICES: tuple[str, ...] = tuple(name for name in VARIANTS if name != REFERENCE)
VARIANT_FILES: dict[str, str] = {spec.name: spec.file for spec in VARIANT_TABLE}
# what `edge-sent export` builds without --quantize: every variant `auto` may take on the CPU provider
DEFAULT_QUANTIZE: tuple[str, ...] = tuple(spec.name for spec in VARIANT_TABLE if "cpu" in spec.auto_on)


def auto_preference(provider: str) -> tuple[str, ...]:
    """The quantized variants `auto` may take on a provider, fastest first, each only if its recorded
    agreement with fp32 is high enough (`edge_sent.fidelity`)."""
    return tuple(spec.name for spec in VARIANT_TABLE if provider in spec.auto_on)


def float_path(provider: str) -> tuple[str, ...]:
    """The faithful float variant on a provider: fp16 on CUDA/TensorRT, fp32 everywhere (the fallback)."""
    return (*(spec.name for spec in VARIANT_TABLE if provider in spec.float_on), REFERENCE)


def variant_help() -> str:
    """Help text for `--variant`, generated from the table."""
    auto = ", ".join(f"{'/'.join(spec.auto_on)}: {spec.name}" for spec in VARIANT_TABLE if spec.auto_on)
    floats = ", ".join(f"{'/'.join(spec.float_on)}: {spec.name}" for spec in VARIANT_TABLE if spec.float_on)
    return (
        f"auto: decided on this host: the fastest candidate ({auto}) that beats fp32 here and agrees with it "
        f"(--min-agreement), else the float path ({floats}; else fp32). Or one of {', '.join(VARIANTS)}."
    )
