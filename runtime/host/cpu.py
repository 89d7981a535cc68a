"""The identity of the CPU this code runs on: its machine and the ISA features that change which kernels
onnxruntime runs, or the answers they give (standard library only).

Read from the CPU as this process sees it, not from `/proc/cpuinfo`, which describes the host's CPU even under
qemu-user (which does not emulate it): on x86-64 the CPUID instruction itself (and XGETBV: a feature the OS does not
enable is not there), run in-process from a few bytes of machine code; on Linux aarch64 the HWCAP words the kernel
(or qemu) handed this process (`/proc/self/auxv`, what `getauxval` reads). Under emulation both describe the
emulated CPU (`qemu-x86_64 -cpu Haswell` has no AVX-512; `QEMU_CPU=cortex-a72` has no dotprod). Elsewhere, or when
neither can be read, `/proc/cpuinfo`'s flags (`source` says which was used).

The feature names are Linux's `/proc/cpuinfo` names (`avx512_vnni`, `asimddp`, `i8mm`, ...).
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import platform
import struct
from pathlib import Path
from typing import Any

# flags (by substring) that change onnxruntime's kernels or answers; the /proc/cpuinfo fallback keeps only these
ISA_MARKERS = (
    "avx", "fma", "f16c", "amx", "vnni", "bf16", "sse4", "asimd", "sve", "i8mm", "dotprod", "fp16", "fphp", "sme2",
)  # fmt: skip

# Linux arm64 hwcaps (arch/arm64/include/uapi/asm/hwcap.h): bit -> /proc/cpuinfo name, the ones that matter
AT_HWCAP, AT_HWCAP2 = 16, 26
ARM_HWCAP = {1: "asimd", 9: "fphp", 10: "asimdhp", 12: "asimdrdm", 20: "asimddp", 22: "sve", 23: "asimdfhm"}
ARM_HWCAP2 = {
    1: "sve2", 9: "svei8mm", 10: "svef32mm", 12: "svebf16", 13: "i8mm", 14: "bf16", 23: "sme", 32: "ebf16", 37: "sme2",
}  # fmt: skip

# x86 CPUID: (leaf, subleaf, register index eax=0 ebx=1 ecx=2 edx=3, bit) -> /proc/cpuinfo name
X86_CPUID = {
    (1, 0, 2, 12): "fma", (1, 0, 2, 19): "sse4_1", (1, 0, 2, 20): "sse4_2", (1, 0, 2, 28): "avx",
    (1, 0, 2, 29): "f16c", (7, 0, 1, 5): "avx2", (7, 0, 1, 16): "avx512f", (7, 0, 1, 17): "avx512dq",
    (7, 0, 1, 21): "avx512ifma", (7, 0, 1, 28): "avx512cd", (7, 0, 1, 30): "avx512bw", (7, 0, 1, 31): "avx512vl",
    (7, 0, 2, 1): "avx512vbmi", (7, 0, 2, 6): "avx512_vbmi2", (7, 0, 2, 11): "avx512_vnni",
    (7, 0, 2, 12): "avx512_bitalg", (7, 0, 2, 14): "avx512_vpopcntdq", (7, 0, 3, 22): "amx_bf16",
    (7, 0, 3, 23): "avx512_fp16", (7, 0, 3, 24): "amx_tile", (7, 0, 3, 25): "amx_int8", (7, 1, 0, 4): "avx_vnni",
    (7, 1, 0, 5): "avx512_bf16",
}  # fmt: skip
# the XCR0 state a feature family needs the OS to save: YMM (AVX), ZMM + opmask (AVX-512), tiles (AMX)
XCR0_AVX, XCR0_AVX512, XCR0_AMX = 0x6, 0xE6, 0x60000

# x86-64 System V: void cpuid(uint32 leaf, uint32 subleaf, uint32 out[4]); uint64 xgetbv(uint32 index)
_CPUID_CODE = bytes.fromhex("53 89f8 89f1 4989d0 0fa2 418900 41895804 41894808 4189500c 5b c3".replace(" ", ""))
_XGETBV_CODE = bytes.fromhex("89f9 0f01d0 48c1e220 4809d0 c3".replace(" ", ""))


def decode_hwcaps(hwcap: int, hwcap2: int) -> list[str]:
    """The Arm feature names of two HWCAP words."""
    names = [name for bit, name in ARM_HWCAP.items() if hwcap >> bit & 1]
    return sorted(names + [name for bit, name in ARM_HWCAP2.items() if hwcap2 >> bit & 1])


def read_auxv(raw: bytes) -> dict[int, int]:
    """The (type -> value) pairs of an auxiliary vector (native 64-bit words), up to AT_NULL."""
    entries: dict[int, int] = {}
    for kind, value in struct.iter_unpack("=QQ", raw[: len(raw) // 16 * 16]):
        if kind == 0:
            break
        entries[kind] = value
    return entries


def arm_features(auxv: Path = Path("/proc/self/auxv")) -> list[str] | None:
    try:
        entries = read_auxv(auxv.read_bytes())
    except OSError:
        return None
    if AT_HWCAP not in entries:
        return None
    return decode_hwcaps(entries[AT_HWCAP], entries.get(AT_HWCAP2, 0))


def decode_cpuid(cpuid: Any, xcr0: int) -> list[str]:
    """The x86 feature names, from `cpuid(leaf, subleaf) -> (eax, ebx, ecx, edx)` and the OS-enabled state XCR0."""
    top = cpuid(0, 0)[0]
    leaves = {(1, 0): cpuid(1, 0) if top >= 1 else (0, 0, 0, 0)}
    leaves[(7, 0)] = cpuid(7, 0) if top >= 7 else (0, 0, 0, 0)
    leaves[(7, 1)] = cpuid(7, 1) if top >= 7 and leaves[(7, 0)][0] >= 1 else (0, 0, 0, 0)
    found = {name for (leaf, sub, reg, bit), name in X86_CPUID.items() if leaves[(leaf, sub)][reg] >> bit & 1}
    enabled = {
        "avx": xcr0 & XCR0_AVX == XCR0_AVX,
        "avx512": xcr0 & XCR0_AVX512 == XCR0_AVX512,
        "amx": xcr0 & XCR0_AMX == XCR0_AMX,
    }
    family = {name: "amx" if name.startswith("amx") else "avx512" if "512" in name else "avx" for name in found}
    saved = {name for name in found if name.startswith(("avx", "fma", "f16c", "amx"))}
    return sorted(name for name in found if name not in saved or enabled[family[name]])


def _function(code: bytes, restype: Any, *argtypes: Any) -> Any:
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    function = ctypes.CFUNCTYPE(restype, *argtypes)(address)
    function.page = page  # type: ignore[attr-defined]  # the code lives as long as the function
    return function


def x86_features() -> list[str] | None:
    """CPUID and XGETBV, executed by this process (the CPU qemu emulates, under qemu)."""
    if platform.machine().lower() not in ("x86_64", "amd64") or platform.system() == "Windows":
        return None  # (the stubs follow the System V calling convention)
    try:
        raw = _function(_CPUID_CODE, None, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32))
        xgetbv = _function(_XGETBV_CODE, ctypes.c_uint64, ctypes.c_uint32)
    except (OSError, ValueError, AttributeError):  # no executable memory here (a hardened kernel): fall back
        return None

    def cpuid(leaf: int, subleaf: int) -> tuple[int, int, int, int]:
        out = (ctypes.c_uint32 * 4)()
        raw(leaf, subleaf, out)
        return out[0], out[1], out[2], out[3]

    osxsave = cpuid(1, 0)[2] >> 27 & 1 if cpuid(0, 0)[0] >= 1 else 0
    return decode_cpuid(cpuid, int(xgetbv(0)) if osxsave else 0)


def cpuinfo_flags(cpuinfo: str | None = None) -> list[str]:
    """The ISA flags `/proc/cpuinfo` lists (x86 `flags`, Arm `Features`): the host's, under qemu-user."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(f for f in value.split() if any(marker in f for marker in ISA_MARKERS))
    return sorted(flags)


@functools.cache
def _fingerprint() -> tuple[str, str, tuple[str, ...], str]:
    machine = platform.machine().lower()
    isa, source = (arm_features(), "auxv") if machine in ("aarch64", "arm64") else (x86_features(), "cpuid")
    if isa is None:
        isa, source = cpuinfo_flags(), "cpuinfo"
    return machine, platform.system(), tuple(isa), source


def cpu_fingerprint() -> dict[str, Any]:
    """This CPU's identity: machine, system, ISA features and where they were read (cpuid, auxv or cpuinfo); read
    once per process."""
    machine, system, isa, source = _fingerprint()
    return {"machine": machine, "system": system, "isa": list(isa), "source": source}


def cpu_flags() -> list[str]:
    """The ISA features of the CPU this code runs on (see `cpu_fingerprint`)."""
    return list(cpu_fingerprint()["isa"])


def describe_change(old: Any, new: Any) -> str:
    """Two fingerprints' difference in words: `x86_64: avx512f, avx512_vnni gone; avx_vnni new`."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return f"{old if old is not None else 'not recorded'} → {new}"
    before, after = set(old.get("isa") or []), set(new.get("isa") or [])
    parts = [f"{', '.join(sorted(before - after))} gone"] if before - after else []
    parts += [f"{', '.join(sorted(after - before))} new"] if after - before else []
    machine = f"{old.get('machine')} → {new.get('machine')}" if old.get("machine") != new.get("machine") else ""
    return "; ".join(filter(None, [machine, *parts])) or f"{new.get('machine')} (read from {new.get('source')})"
