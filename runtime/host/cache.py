"""The host profile cache: what `auto`'s probe measured for one bundle on one machine, kept in the user's cache.

One JSON file per key: the bundle's content (sha256 of its manifest, which hashes every file), the provider,
the precision, the threads, the onnxruntime version and the CPU fingerprint (machine and ISA features of the CPU
the code runs on, the emulated one under qemu: `cpu`). The key is stored inside the file and compared on
every read: a file that does not parse, or whose key or records do not match, is ignored (and later overwritten),
never trusted. Written atomically (temporary file + rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import onnxruntime as ort

from edge_sent.contract import MANIFEST, Manifest
from edge_sent.fidelity import HostMeasure
from edge_sent.runtime.host.cpu import cpu_fingerprint
from edge_sent.user_cache import CACHE_ENV, cache_root

SCHEMA = 2  # 2: the CPU as this process sees it (host.cpu), not /proc/cpuinfo's host


def manifest_sha256(manifest: Manifest) -> str:
    return hashlib.sha256((manifest.root / MANIFEST).read_bytes()).hexdigest()


def profile_key(manifest: Manifest, provider: str, precision: str, threads: int) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "bundle_manifest_sha256": manifest_sha256(manifest),
        "provider": provider,
        "precision": precision,
        "threads": threads,
        "onnxruntime": ort.__version__,
        "cpu": cpu_fingerprint(),
    }


def profile_path(key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return cache_root() / "host" / f"{digest}.json"


def load_profile(key: dict[str, Any]) -> dict[str, HostMeasure]:
    """The cached measurements for this key; {} when there are none or the file cannot be trusted."""
    path = profile_path(key)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("key") != key:
            return {}
        return {name: _measure(name, record) for name, record in data["variants"].items()}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return {}


def _measure(name: str, record: Any) -> HostMeasure:
    if not isinstance(record, dict) or record.get("variant") != name:
        raise ValueError(f"record for {name!r} is not a measurement of it")
    speedups = {str(k): float(v) for k, v in record["speedups"].items()}
    if any(not v > 0 for v in speedups.values()):
        raise ValueError("speed-ups must be positive")
    agreement = record.get("agreement")
    if agreement is not None and not 0.0 <= float(agreement) <= 1.0:
        raise ValueError("agreement out of range")
    return HostMeasure(
        variant=name,
        ms={str(k): float(v) for k, v in record["ms"].items()},
        speedups=speedups,
        agreement=None if agreement is None else float(agreement),
        max_abs_dprob=None if record.get("max_abs_dprob") is None else float(record["max_abs_dprob"]),
        n_texts=int(record.get("n_texts", 0)),
        agreement_source=str(record.get("agreement_source", "host")),
        complete=bool(record.get("complete", True)),
        counts=_counts(record.get("counts")),
        batch_max_dprob=None if record.get("batch_max_dprob") is None else float(record["batch_max_dprob"]),
        batch_label_flips=None if record.get("batch_label_flips") is None else int(record["batch_label_flips"]),
    )


def _counts(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    agreeing, of = (int(v) for v in value)
    if not 0 <= agreeing <= of:
        raise ValueError("agreeing labels out of range")
    return agreeing, of


def save_profile(key: dict[str, Any], measured: dict[str, HostMeasure], probe_s: float) -> Path:
    """Merge `measured` into the cached profile and write it atomically: what another caller measured for other
    variants (a server probes only its batch-independent ones) stays. An unwritable cache only costs a probe next
    time (returns the path)."""
    path = profile_path(key)
    merged = load_profile(key) | measured
    data = {"key": key, "probe_s": round(probe_s, 3), "variants": {n: asdict(m) for n, m in merged.items()}}
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        reason = exc.strerror or type(exc).__name__
        sys.stderr.write(
            f"edge-sent: warning: cannot write the host cache in {path.parent} ({reason}): `auto` measures again on "
            f"the next load; set {CACHE_ENV} to a writable folder, or pass --variant\n"
        )
    return path
