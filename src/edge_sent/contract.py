"""The bundle contract: file names, manifest schema and integrity checks.

Export writes it, the runtime reads it; nothing else defines these names. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from edge_sent.errors import BundleError
from edge_sent.external_data import check_external_data
from edge_sent.variants import VARIANTS

FORMAT = "edge-sent/bundle"
FORMAT_VERSION = 1  # what this edge-sent writes; it reads MIN_FORMAT_VERSION..FORMAT_VERSION
MIN_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"  # for transformers.js / AutoTokenizer: class and max length
HOST_CHECK = "host_check.jsonl"  # texts + fp32 probabilities: the fidelity check `auto` reruns on the host

STRINGS_SUFFIX = "_strings.onnx"  # a variant's string-in graph (tokenizer inside, onnxruntime-extensions)
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


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    bytes: int

    @classmethod
    def of(cls, path: Path) -> FileEntry:
        return cls(sha256_file(path), path.stat().st_size)

    @classmethod
    def from_json(cls, data: Any) -> FileEntry:
        if not isinstance(data, dict):
            raise TypeError(f"a file entry must be an object, got {type(data).__name__}")
        return cls(str(data.get("sha256", "")), int(data.get("bytes", -1)))


def strings_file_name(variant_file: str) -> str:
    """`model_quantized.onnx` -> `model_quantized_strings.onnx`."""
    return variant_file.removesuffix(".onnx") + STRINGS_SUFFIX


@dataclass(frozen=True)
class Agreement:
    """A variant's answers against fp32's on the same texts."""

    label_agreement: float
    max_abs_dprob: float
    mean_abs_dprob: float
    n_texts: int | None = None  # absent in bundles written before the count was recorded
    ci95: tuple[float, float] | None = None  # Wilson interval of label_agreement

    @classmethod
    def from_json(cls, data: Any) -> Agreement | None:
        if not isinstance(data, dict):
            return None
        n = data.get("n_texts")
        ci = data.get("ci95")
        return cls(
            float(data["label_agreement"]),
            float(data["max_abs_dprob"]),
            float(data["mean_abs_dprob"]),
            int(n) if n is not None else None,
            (float(ci[0]), float(ci[1])) if ci is not None else None,
        )


@dataclass(frozen=True)
class Verification:
    """What the export measured for one variant (on `verified_on`; None: the CPU could not run it)."""

    verified_on: str | None
    labels: tuple[int, ...]  # the labels it gave the verification texts: the runtime reproduces them
    max_abs_dlogit: float | None  # against torch
    vs_fp32: Agreement | None
    eval_accuracy: float | None
    eval_vs_fp32: Agreement | None
    host_check_vs_fp32: Agreement | None = None  # on the bundle's host-check texts (more than the verification's)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verification:
        vs_torch = data.get("vs_torch") or {}
        return cls(
            verified_on=data.get("verified_on"),
            labels=tuple(int(label) for label in data.get("verification_labels") or ()),
            max_abs_dlogit=float(vs_torch["max_abs_dlogit"]) if "max_abs_dlogit" in vs_torch else None,
            vs_fp32=Agreement.from_json(data.get("vs_fp32")),
            eval_accuracy=float(data["eval_accuracy"]) if data.get("eval_accuracy") is not None else None,
            eval_vs_fp32=Agreement.from_json(data.get("eval_vs_fp32")),
            host_check_vs_fp32=Agreement.from_json(data.get("host_check_vs_fp32")),
        )


@dataclass(frozen=True)
class VariantEntry:
    """One variant of a bundle: its file, its verification, and the whole record as written (ops, build
    time, calibration, refit, OpenVINO measurements)."""

    name: str
    file: str
    verification: Verification
    record: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, name: str, data: Any) -> VariantEntry:
        if not isinstance(data, dict) or not isinstance(data.get("file"), str):
            raise TypeError(f"variant {name!r} needs an object with a 'file'")
        return cls(name, data["file"], Verification.from_json(data), dict(data))


@dataclass(frozen=True)
class HostCheck:
    """The texts `auto` reruns on the host, with fp32's probabilities for each as the export computed them."""

    file: str
    n_texts: int
    batch_size: int  # the batch the export measured the variants at (and the host check uses)
    typical_length: int  # median token count: the length the host's speed probe runs at

    @classmethod
    def from_json(cls, data: Any) -> HostCheck | None:
        if not isinstance(data, dict):
            return None
        return cls(str(data["file"]), int(data["n_texts"]), int(data["batch_size"]), int(data["typical_length"]))


@dataclass(frozen=True)
class Manifest:
    """The parsed `manifest.json` of a bundle: typed views over the JSON (`data`, kept for `info --json`)."""

    root: Path
    data: dict[str, Any]

    @cached_property
    def labels(self) -> list[str]:
        return [str(label) for label in self.data["labels"]]

    @cached_property
    def data_labels(self) -> list[str]:
        """The labels as the training data wrote them (absent before edge-sent recorded them: [])."""
        return [str(label) for label in self.data.get("data_labels") or []]

    @cached_property
    def max_length(self) -> int:
        return int(self.data["max_length"])

    @cached_property
    def random_weights(self) -> bool:
        return bool((self.data.get("encoder") or {}).get("random_weights"))

    @cached_property
    def variants(self) -> dict[str, VariantEntry]:
        return {name: VariantEntry.from_json(name, v) for name, v in (self.data.get("variants") or {}).items()}

    @cached_property
    def host_check(self) -> HostCheck | None:
        """The host-check texts' record (None in bundles exported before it existed)."""
        return HostCheck.from_json(self.data.get("host_check"))

    @cached_property
    def platforms(self) -> dict[str, dict[str, Any]]:
        """variant -> platform -> how its answers compared with the export machine's (`edge-sent devices`)."""
        record = self.data.get("platforms") or {}
        return {str(v): dict(p) for v, p in (record.get("variants") or {}).items()}

    @cached_property
    def files(self) -> dict[str, FileEntry]:
        return {name: FileEntry.from_json(entry) for name, entry in (self.data.get("files") or {}).items()}

    @cached_property
    def string_files(self) -> dict[str, str]:
        """variant -> its string-in graph (`export --with-tokenizer`); empty when the bundle has none."""
        graphs = (self.data.get("strings") or {}).get("graphs") or {}
        return {name: str(entry["file"]) for name, entry in graphs.items()}

    def string_file(self, variant: str) -> str:
        try:
            return self.string_files[variant]
        except KeyError:
            have = ", ".join(sorted(self.string_files)) or "none (export it with --with-tokenizer)"
            raise BundleError(
                f"bundle {self.root} has no string-in graph for variant {variant!r} (it has: {have})"
            ) from None

    def calibration(self, variant: str) -> dict[str, Any]:
        """The calibration `variant`'s graph applies to its logits before the softmax (`calibration.LogitMap.from_json`
        reads it): train's choice, or a refitted head's own (none when the refit had no dev split to choose on)."""
        record = self.variants[variant].record if variant in self.variants else {}
        refit = record.get("refit")
        if isinstance(refit, dict):
            if isinstance(refit.get("calibration"), dict):
                return dict(refit["calibration"])
            return {"method": "temperature", "temperature": float(refit.get("temperature") or 1.0)}
        return dict(self.data.get("calibration") or {})

    def temperature(self, variant: str) -> float:
        """What `variant`'s graph divides its logits by before the softmax (1.0 for an uncalibrated bundle, one
        exported before calibration existed, or one whose calibration is vector scaling: see `calibration`)."""
        record = self.calibration(variant)
        return 1.0 if record.get("method") == "vector" else float(record.get("temperature") or 1.0)

    def batch_independent(self, variant: str) -> bool:
        """Whether a text's answer from `variant` is the same whatever else shares its batch (as the export recorded
        it; the variant table for bundles that predate the record; False for a variant nobody knows)."""
        recorded = self.variants[variant].record.get("batch_independent") if variant in self.variants else None
        if isinstance(recorded, bool):
            return recorded
        spec = VARIANTS.get(variant)
        return spec.batch_independent if spec is not None else False

    def model_sha256(self, variant: str) -> str:
        """A digest of everything that computes `variant`'s answers: its graph and external-data files, the
        tokenizer, the labels and the max length (what a re-export into the same folder changes)."""
        graph = self.variant_file(variant)
        names = [graph, *check_external_data(self.root / graph, set(self.files)), TOKENIZER]
        parts = {name: self.files[name].sha256 if name in self.files else "" for name in names}
        record = {"files": parts, "labels": self.labels, "max_length": self.max_length}
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode("utf-8")).hexdigest()

    def variant_file(self, variant: str) -> str:
        try:
            return self.variants[variant].file
        except KeyError:
            have = ", ".join(sorted(self.variants)) or "none"
            raise BundleError(f"variant {variant!r} is not in bundle {self.root} (it has: {have})") from None


def parse_manifest(root: Path, data: Any, where: Path) -> Manifest:
    """Validate a manifest's JSON (format, version, required keys, every typed record) into a Manifest."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BundleError(f"{where}: unknown format {data.get('format') if isinstance(data, dict) else None!r}")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"{where}: no bundle format version (format_version is {version!r}); re-export the bundle")
    if version > FORMAT_VERSION:
        raise BundleError(
            f"{where}: bundle format version {version} is newer than this edge-sent understands "
            f"({FORMAT_VERSION}); upgrade edge-sent"
        )
    if version < MIN_FORMAT_VERSION:
        raise BundleError(
            f"{where}: bundle format version {version} is older than this edge-sent reads "
            f"({MIN_FORMAT_VERSION} to {FORMAT_VERSION}); re-export it with `edge-sent export`"
        )
    for key in ("labels", "max_length", "files", "variants"):
        if key not in data:
            raise BundleError(f"{where}: manifest lacks {key!r}")
    manifest = Manifest(root=root, data=data)
    try:
        manifest.labels, manifest.max_length, manifest.variants, manifest.files, manifest.string_files  # noqa: B018 - validate every record
        manifest.host_check, manifest.platforms  # noqa: B018
    except (TypeError, ValueError, KeyError) as exc:
        raise BundleError(f"{where}: malformed manifest ({exc})") from None
    return manifest


def write_json(path: Path, data: object) -> None:
    """The project's one JSON file writer (manifest, config, head.json, reports): indented, UTF-8, not ASCII-escaped."""
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


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
    return parse_manifest(root, data, path)
