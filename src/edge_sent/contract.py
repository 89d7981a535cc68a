"""The bundle contract: file names, manifest schema and integrity checks.

Export writes it, the runtime reads it; nothing else defines these names. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_sent.errors import BundleError
from edge_sent.variants import QUANTIZE_CHOICES, VARIANT_FILES

__all__ = ["QUANTIZE_CHOICES", "VARIANT_FILES"]  # re-exported: the table lives in edge_sent.variants

FORMAT = "edge-sent/bundle"
FORMAT_VERSION = 1  # what this edge-sent writes; it reads MIN_FORMAT_VERSION..FORMAT_VERSION
MIN_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CONFIG = "config.json"
TOKENIZER = "tokenizer.json"

PORTABLE_FILE = "model_portable.onnx"  # standard ONNX ops only (no ORT contrib fusions): TensorRT & co.
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAMES = ("logits", "probabilities")
TMP_PREFIX = ".edge-sent-tmp-"  # temporary bundle directories: recognisable, cleaned by the next export


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


@dataclass(frozen=True)
class Manifest:
    """The parsed `manifest.json` of a bundle."""

    root: Path
    data: dict[str, Any]

    @property
    def labels(self) -> list[str]:
        return list(self.data["labels"])

    @property
    def max_length(self) -> int:
        return int(self.data["max_length"])

    @property
    def variants(self) -> dict[str, dict[str, Any]]:
        return dict(self.data.get("variants", {}))

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return dict(self.data.get("files", {}))

    def variant_file(self, variant: str) -> str:
        try:
            return str(self.variants[variant]["file"])
        except KeyError:
            have = ", ".join(sorted(self.variants)) or "none"
            raise BundleError(f"variant {variant!r} is not in bundle {self.root} (it has: {have})") from None


def read_manifest(bundle_dir: Path | str) -> Manifest:
    root = Path(bundle_dir)
    if not root.is_dir():
        raise BundleError(f"bundle directory not found: {root}")
    path = root / MANIFEST
    if not path.is_file():
        raise BundleError(f"{path}: missing (not an edge-sent bundle?)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BundleError(f"{path}: unknown format {data.get('format') if isinstance(data, dict) else None!r}")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"{path}: no bundle format version (format_version is {version!r}); re-export the bundle")
    if version > FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format version {version} is newer than this edge-sent understands "
            f"({FORMAT_VERSION}); upgrade edge-sent"
        )
    if version < MIN_FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format version {version} is older than this edge-sent reads "
            f"({MIN_FORMAT_VERSION} to {FORMAT_VERSION}); re-export it with `edge-sent export`"
        )
    for key in ("labels", "max_length", "files", "variants"):
        if key not in data:
            raise BundleError(f"{path}: manifest lacks {key!r}")
    return Manifest(root=root, data=data)


def check_file(manifest: Manifest, name: str) -> Path:
    """Check one bundle file against its manifest entry; return its path or raise naming the file."""
    if Path(name).name != name or name in ("", ".", ".."):
        raise BundleError(f"{manifest.root / MANIFEST}: file name {name!r} points outside the bundle")
    entry = manifest.files.get(name)
    path = manifest.root / name
    if entry is None:
        raise BundleError(f"{path}: not listed in the manifest")
    if not path.is_file():
        raise BundleError(f"{path}: missing")
    size = path.stat().st_size
    if size != entry.get("bytes"):
        raise BundleError(f"{path}: altered (size {size} bytes, manifest says {entry.get('bytes')})")
    if sha256_file(path) != entry.get("sha256"):
        raise BundleError(f"{path}: altered (sha256 does not match the manifest)")
    return path


def verify_bundle(bundle_dir: Path | str) -> list[str]:
    """Check every file of the manifest; return the problems found (empty when the bundle is intact)."""
    from edge_sent.external_data import check_external_data

    manifest = read_manifest(bundle_dir)
    problems = []
    for name in sorted(manifest.files):
        try:
            check_file(manifest, name)
        except BundleError as exc:
            problems.append(str(exc))
    for variant in sorted(manifest.variants):
        path = manifest.root / manifest.variant_file(variant)
        if path.is_file():
            try:
                check_external_data(path, set(manifest.files))
            except BundleError as exc:
                problems.append(str(exc))
    return problems
