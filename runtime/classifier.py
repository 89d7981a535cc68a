"""`Classifier`: load a bundle and classify texts with onnxruntime (no torch, no transformers).

Thread-safety contract: after `Classifier.load` returns, a Classifier holds no mutable state;
`predict` and `predict_iter` may be called from many threads at once on one shared instance
(onnxruntime's `InferenceSession.run` and the `tokenizers` encoder are both thread-safe). Each call
returns exactly what a sequential call would.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_sent.candidates import parse_candidate
from edge_sent.contract import TOKENIZER, Manifest, read_manifest
from edge_sent.errors import EdgeSentError
from edge_sent.fidelity import MIN_AGREEMENT, auto_choice
from edge_sent.integrity import check_file, check_graph
from edge_sent.runtime.engine import DEFAULT_BATCH_SIZE, PROBABILITIES, Engine
from edge_sent.runtime.host.probe import HostProbe, probing_enabled
from edge_sent.runtime.openvino_engine import create_engine
from edge_sent.runtime.session import SessionConfig, resolve_provider
from edge_sent.runtime.strings import StringEngine
from edge_sent.tokenization import Tokenizer
from edge_sent.variants import REFERENCE, VARIANTS


@dataclass(frozen=True)
class Prediction:
    """The answer for one text."""

    label: str
    """The most probable label's name (the bundle's `labels`)."""
    label_id: int
    """Its index in the bundle's `labels` (the graph's output column)."""
    probabilities: dict[str, float]
    """Every label's probability, in the bundle's label order (calibrated when the bundle has a temperature)."""
    truncated: bool
    """True when the text was longer than the bundle's `max_length` and only its start was classified."""

    def as_dict(self) -> dict[str, Any]:
        """The prediction as a JSON-ready dict (what `predict --json` and the server print for a text)."""
        return {
            "label": self.label,
            "label_id": self.label_id,
            "probabilities": self.probabilities,
            "truncated": self.truncated,
        }


def choose_variant(
    manifest: Manifest,
    variant: str,
    provider: str,
    among: set[str] | None = None,
    min_agreement: float = MIN_AGREEMENT,
) -> str:
    """`auto`: the fastest variant for the provider whose recorded agreement with fp32 is at least
    `min_agreement`, else the faithful float path (`edge_sent.fidelity`); only among the given variants when
    `among` is set. A named variant must be in the bundle and run on the provider."""
    if variant == "auto":
        return auto_choice(manifest, provider, min_agreement, among).variant
    available = set(manifest.variants) if among is None else set(manifest.variants) & among
    manifest.variant_file(variant)  # raises, naming the variants the bundle has
    spec = VARIANTS.get(variant)
    if spec is not None and not spec.runs_on_provider(provider):
        runnable = ", ".join(s.name for s in VARIANTS.values() if s.runs_on_provider(provider) and s.name in available)
        homes = spec.runs_on or ()
        raise EdgeSentError(
            f"the {variant} variant runs on {spec.device or '/'.join(homes)} only ({spec.refused_reason}); "
            f"use --variant {runnable or REFERENCE} on {provider}, or --provider {homes[0]}"
        )
    return variant


class Classifier:
    """A bundle loaded into an inference engine. Create it with `Classifier.load`."""

    def __init__(self, manifest: Manifest, variant: str, engine: Engine, why: str = "named") -> None:
        self.manifest = manifest
        """The bundle's `manifest.json`, read and checked."""
        self.variant = variant
        """The variant that runs (`fp32`, `int8`, `int8-block`, ...): the one named, or `auto`'s choice."""
        self.why = why
        """Why this variant: `"named"`, or `auto`'s reason (measured on this host, or the recorded ranking)."""
        self.engine = engine
        """The inference engine: the onnxruntime session with its tokenizer (internal; use `predict`)."""
        self.provider = engine.provider
        """The execution provider that runs the graph: `cpu`, `cuda`, `openvino`, ..."""
        self.precision = engine.precision
        """What the provider computes in: `bf16` only on OpenVINO where the CPU has it, else `fp32`."""
        self.labels: list[str] = manifest.labels
        """The label names, in the graph's output order."""
        self.max_length = engine.tokenizer.max_length
        """The longest input in tokens; longer texts are cut (`Prediction.truncated`)."""

    @classmethod
    def load(
        cls,
        bundle_dir: Path | str,
        variant: str = "auto",
        provider: str = "auto",
        threads: int | None = None,
        strict: bool = False,
        precision: str = "auto",
        strings: bool = False,
        min_agreement: float = MIN_AGREEMENT,
        probe: bool | None = None,
        batch_independent: bool = False,
    ) -> Classifier:
        """Load a bundle, check every file it reads against the manifest, and warm it up.

        Args:
            bundle_dir: The bundle's directory (what `edge-sent export --out` wrote).
            variant: `"auto"` (default): decided on this host, see `probe`; or a variant's name (`fp32`, `int8`,
                `int8-block`, `int8-static`, `fp16`, `int4`), which must be in the bundle and run on the provider.
            provider: `"auto"` (default): CUDA, else OpenVINO, else CPU, whichever onnxruntime build has it; or
                `cpu`, `cuda`, `tensorrt`, `openvino`.
            threads: Intra-op threads; None (default): the physical cores.
            strict: True: raise instead of warning (`ProviderFallbackWarning`) when onnxruntime silently fell
                back to the CPU. Default False.
            precision: `"auto"` (default), `fp32` or `bf16` (OpenVINO only): what the provider computes in.
            strings: True: the variant's string-in graph (`export --with-tokenizer`), which tokenizes inside
                onnxruntime (onnxruntime-extensions, the `strings` extra); `auto` picks among the variants that
                have one. Default False.
            min_agreement: The label agreement with fp32 that `auto` requires of a quantized variant.
                Default 0.98.
            probe: True: `auto` decides from speed and fidelity measured on this host, once per host (cached);
                False: from the export's recorded ranking; None (default): probe unless `EDGE_SENT_PROBE=0`.
            batch_independent: True: `auto` considers only variants whose answer for a text does not depend on
                the other texts of its batch (what a server needs; a named variant is taken as named).
                Default False.

        Returns:
            The loaded classifier, its variant chosen and its session warmed up.

        Raises:
            BundleError: The directory is not a bundle, its manifest does not parse, or a file is missing or does
                not match its sha256 and size in the manifest.
            EdgeSentError: The variant is not in the bundle or does not run on the provider, the provider is not
                in this onnxruntime build, or (with `strict=True`) the session fell back to another provider.
        """
        manifest = read_manifest(bundle_dir)
        short = resolve_provider(provider)
        among = set(manifest.string_files) if strings else None
        if batch_independent and variant == "auto":
            among = {
                name for name in (manifest.variants if among is None else among) if manifest.batch_independent(name)
            }
        config = SessionConfig(provider=short, threads=threads, strict=strict, precision=precision)
        why = "named"
        probed: Engine | None = None
        if variant == "auto" and probing_enabled(probe):
            host = HostProbe(
                manifest, short, config, min_agreement, among, engines=not strings, batch_independent=batch_independent
            )
            decided = host.decide()
            chosen, why = decided.choice.variant, decided.choice.reason
            probed = host.take(None if strings else chosen)  # the probe's other sessions released
            candidate = parse_candidate(chosen)  # another engine's candidate: its variant, on that engine
            if candidate.engine is not None:
                chosen = candidate.variant
                config = replace(config, provider=candidate.engine, precision=candidate.precision)
        else:
            chosen = choose_variant(manifest, variant, short, among, min_agreement)
            if variant == "auto":
                why = auto_choice(manifest, short, min_agreement, among).reason + " (recorded ranking)"
        if probed is None:  # (the probe checked its files before it made its sessions)
            # integrity: every file the session reads is checked against the manifest first
            file = manifest.string_file(chosen) if strings else manifest.variant_file(chosen)
            model_path = check_graph(manifest, file)
            tokenizer = Tokenizer(check_file(manifest, TOKENIZER), manifest.max_length)
            probed = (StringEngine if strings else create_engine)(model_path, tokenizer, config)
        engine = probed
        engine.require_outputs(PROBABILITIES)
        classifier = cls(manifest, chosen, engine, why)
        classifier.predict(["warm-up"])
        return classifier

    @property
    def providers(self) -> list[str]:
        """The onnxruntime execution providers the session runs on, in priority order."""
        return self.engine.providers

    def run_feeds(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Run the graph on ready-made int64 inputs; returns the probabilities (used by benchmarks)."""
        return self.engine.run(feeds)[0]

    def predict(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> list[Prediction]:
        """Classify texts, in batches sorted by length, each padded to its longest text.

        Args:
            texts: The texts; an empty text is classified like any other.
            batch_size: Texts per inference batch. Default 32.

        Returns:
            One `Prediction` per text, in input order.

        Raises:
            TypeError: `texts` is a single string, or one of its items is not a string.
        """
        out = self.engine.run_texts(texts, batch_size)
        return [self._prediction(row, bool(cut)) for row, cut in zip(out[PROBABILITIES], out.truncated, strict=True)]

    def predict_iter(
        self, texts: Iterable[str], batch_size: int = DEFAULT_BATCH_SIZE, chunk_size: int = 1024
    ) -> Iterator[Prediction]:
        """Classify any number of texts with bounded memory, `chunk_size` texts at a time.

        Args:
            texts: Any iterable of texts (a file's lines, a generator).
            batch_size: Texts per inference batch. Default 32.
            chunk_size: Texts read and classified at a time. Default 1024.

        Yields:
            One `Prediction` per text, in input order.
        """
        iterator = iter(texts)
        while chunk := list(itertools.islice(iterator, chunk_size)):
            yield from self.predict(chunk, batch_size=batch_size)

    def _prediction(self, row: np.ndarray, truncated: bool) -> Prediction:
        label_id = int(np.argmax(row))
        return Prediction(
            label=self.labels[label_id],
            label_id=label_id,
            probabilities={label: float(p) for label, p in zip(self.labels, row, strict=True)},
            truncated=truncated,
        )
