"""The CPU identity is the CPU the code runs on: decoded from CPUID (x86) and the HWCAP words (aarch64), never the
host's /proc/cpuinfo under qemu-user. The emulated checks need qemu-user-static (Haswell) and, for aarch64, root and
the root of scripts/arm64-root.sh; outside CI a missing piece skips them, in CI it fails."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from edge_sent.runtime.host import cpu as cpu_identity
from edge_sent.runtime.host.cpu import AT_HWCAP, AT_HWCAP2, decode_cpuid, decode_hwcaps, read_auxv
from tests.conftest import ROOT

ARM64_ROOT = Path(os.environ.get("EDGE_SENT_ARM64_ROOT", ROOT / ".emu" / "arm64"))
FINGERPRINT = "import json; from edge_sent.runtime.host.cpu import cpu_fingerprint as f; print(json.dumps(f()))"
X86 = cpu_identity.platform.machine().lower() in ("x86_64", "amd64")


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must provide {what}")
    pytest.skip(f"needs {what}")


def test_hwcaps_decode_to_linux_feature_names_and_auxv_is_read_up_to_at_null(tmp_path: Path) -> None:
    hwcap = 1 << 1 | 1 << 9 | 1 << 10 | 1 << 20 | 1 << 22  # asimd fphp asimdhp asimddp sve
    hwcap2 = 1 << 1 | 1 << 13 | 1 << 14  # sve2 i8mm bf16
    assert decode_hwcaps(hwcap, hwcap2) == ["asimd", "asimddp", "asimdhp", "bf16", "fphp", "i8mm", "sve", "sve2"]
    assert decode_hwcaps(1 << 1 | 1 << 0 | 1 << 3, 0) == ["asimd"]  # fp, aes: not what changes the kernels
    raw = struct.pack("=8Q", 6, 4096, AT_HWCAP, hwcap, AT_HWCAP2, hwcap2, 0, 0) + struct.pack("=2Q", AT_HWCAP, 0)
    assert read_auxv(raw) == {6: 4096, AT_HWCAP: hwcap, AT_HWCAP2: hwcap2}  # nothing after AT_NULL
    (tmp_path / "auxv").write_bytes(raw)
    assert cpu_identity.arm_features(tmp_path / "auxv") == decode_hwcaps(hwcap, hwcap2)
    (tmp_path / "none").write_bytes(struct.pack("=4Q", 6, 4096, 0, 0))
    assert cpu_identity.arm_features(tmp_path / "none") is None  # no HWCAP: the cpuinfo fallback
    assert cpu_identity.arm_features(tmp_path / "absent") is None


def _cpuid(leaves: dict[tuple[int, int], tuple[int, int, int, int]]):
    return lambda leaf, sub: leaves.get((leaf, sub), (0, 0, 0, 0))


def test_cpuid_decodes_features_the_os_enables() -> None:
    haswell = _cpuid({(0, 0): (13, 0, 0, 0), (1, 0): (0, 0, 1 << 12 | 1 << 19 | 1 << 20 | 1 << 28 | 1 << 29, 0)})
    assert decode_cpuid(haswell, 0x7) == ["avx", "f16c", "fma", "sse4_1", "sse4_2"]
    assert decode_cpuid(haswell, 0x1) == ["sse4_1", "sse4_2"]  # the OS does not save YMM: no AVX
    avx512 = 1 << 5 | 1 << 16 | 1 << 30 | 1 << 31
    vnni = {(0, 0): (13, 0, 0, 0), (7, 0): (1, avx512, 1 << 11, 1 << 24 | 1 << 25), (7, 1): (1 << 4 | 1 << 5, 0, 0, 0)}
    full = ["amx_int8", "amx_tile", "avx2", "avx512_bf16", "avx512_vnni", "avx512bw", "avx512f", "avx512vl", "avx_vnni"]
    assert decode_cpuid(_cpuid(vnni), 0xE7 | 0x60000) == full
    assert decode_cpuid(_cpuid(vnni), 0x7) == ["avx2", "avx_vnni"]  # no ZMM state, no tile state
    assert decode_cpuid(_cpuid(vnni | {(7, 0): (0, avx512, 0, 0)}), 0xE7) == ["avx2", "avx512bw", "avx512f", "avx512vl"]


@pytest.mark.skipif(not X86, reason="x86-64 only")
def test_natively_cpuid_agrees_with_numpys_own_detection() -> None:
    from numpy._core._multiarray_umath import __cpu_features__ as numpy_features  # numpy's CPUID, a second reader

    found = cpu_identity.cpu_fingerprint()
    assert found["source"] == "cpuid" and found["machine"] == "x86_64"
    names = {"AVX": "avx", "FMA3": "fma", "AVX2": "avx2", "AVX512F": "avx512f", "AVX512VNNI": "avx512_vnni"}
    assert {ours for theirs, ours in names.items() if numpy_features[theirs]} == set(names.values()) & set(found["isa"])
    assert cpu_identity.cpu_flags() == found["isa"]


def test_cpuinfo_fallback_keeps_the_isa_flags() -> None:
    cpuinfo = "processor : 0\nflags : fpu sse4_2 avx2 avx512_vnni amx_int8 ht\n\nFeatures : fp asimd asimddp\n"
    assert cpu_identity.cpuinfo_flags(cpuinfo) == ["amx_int8", "asimd", "asimddp", "avx2", "avx512_vnni", "sse4_2"]


def test_a_change_is_described_by_the_features_gone_and_new() -> None:
    old = {"machine": "x86_64", "isa": ["avx2", "avx512_vnni", "avx512f"], "source": "cpuid"}
    new = {"machine": "x86_64", "isa": ["avx2", "avx_vnni"], "source": "cpuid"}
    assert cpu_identity.describe_change(old, new) == "avx512_vnni, avx512f gone; avx_vnni new"
    arm = {"machine": "aarch64", "isa": ["asimd"]}
    assert cpu_identity.describe_change(new, arm) == "x86_64 → aarch64; avx2, avx_vnni gone; asimd new"
    assert cpu_identity.describe_change(None, new).startswith("not recorded → ")


@pytest.mark.skipif(not X86, reason="emulates x86-64 on an x86-64 host")
def test_under_qemu_haswell_the_emulated_cpu_has_no_avx512() -> None:
    if "avx512f" not in cpu_identity.cpuinfo_flags():
        pytest.skip("this host has no AVX-512: Haswell would not differ from it")
    if not shutil.which("qemu-x86_64-static"):
        _missing("qemu-x86_64-static (the qemu-user-static package)")
    python = ROOT / ".venv" / "bin" / "python"
    command = [str(ROOT / "scripts" / "in-haswell.sh"), str(python), "-c", FINGERPRINT]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout)
    assert found["source"] == "cpuid" and {"avx2", "fma"} <= set(found["isa"])
    assert not [flag for flag in found["isa"] if "avx512" in flag]  # /proc/cpuinfo (the host's) lists them


def test_under_qemu_aarch64_each_cpu_model_reports_its_own_features() -> None:
    if not (ARM64_ROOT / ".emu-complete").is_file():
        _missing(f"an arm64 root at {ARM64_ROOT} (scripts/arm64-root.sh ROOT WHEEL)")
    if os.geteuid() != 0:
        _missing("root (scripts/in-arm64.sh chroots)")
    found = {}
    inside = Path("/tmp") / f"edge-sent-cpu-{os.getpid()}"  # this checkout's module (standard library only)
    (ARM64_ROOT / inside.relative_to("/")).mkdir(parents=True, exist_ok=True)
    shutil.copy(cpu_identity.__file__, ARM64_ROOT / inside.relative_to("/") / "cpu.py")
    script = f"import sys; sys.path.insert(0, {str(inside)!r}); " + FINGERPRINT.replace("edge_sent.runtime.host.", "")
    try:
        for cpu in ("cortex-a72", "max"):
            command = [str(ROOT / "scripts" / "in-arm64.sh"), str(ARM64_ROOT), "python", "-c", script]
            env = {**os.environ, "QEMU_CPU": cpu}
            proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
            assert proc.returncode == 0, proc.stderr[-2000:]
            found[cpu] = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(ARM64_ROOT / inside.relative_to("/"), ignore_errors=True)
    for cpu in found:
        assert (found[cpu]["machine"], found[cpu]["source"]) == ("aarch64", "auxv")
        assert not [flag for flag in found[cpu]["isa"] if "avx" in flag]  # the host's x86 flags: /proc/cpuinfo's
    assert found["cortex-a72"]["isa"] == ["asimd"]  # plain NEON: no dotprod, no fp16 arithmetic
    assert {"asimddp", "i8mm", "bf16", "sve", "sve2"} <= set(found["max"]["isa"])
