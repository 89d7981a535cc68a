"""The `--with-tokenizer` step of `edge-sent export`: string-in graphs for chosen variants, verified and recorded.

`plan` checks the options before anything is built; `build` (after the variants are measured) derives the in-graph
tokenizer from the bundle's `tokenizer.json`, checks its token ids against `tokenizer.json` on every code point, on
the corpus and on `ADVERSARIAL` text (refusing the export when the corpus mismatch rate is over the tolerance), wraps
each chosen variant and checks it gives exactly what the token-id graph gives under the runtime's own engine.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from edge_sent.contract import strings_file_name
from edge_sent.errors import EdgeSentError
from edge_sent.export import verify
from edge_sent.export.prepare import ExportConfig, Prepared, texts_from
from edge_sent.export.strings import check as sc
from edge_sent.export.strings import graph as sg
from edge_sent.export.strings import spec
from edge_sent.rundir import RunDir, read_run_meta
from edge_sent.runtime.session import SessionConfig
from edge_sent.runtime.strings import StringEngine, extensions_library
from edge_sent.variants import REFERENCE, VARIANTS

DEFAULT_VARIANTS = ("fp32", "int8")
PREDICTION_BATCHES = (1, 8)
MAX_DPROB = 1e-6  # the same graph on the same token ids: anything above is a wiring error


@dataclass(frozen=True)
class StringsPlan:
    variants: tuple[str, ...]
    corpus: tuple[tuple[Path, str], ...]  # (file, text field)
    tolerance: float


def plan(config: ExportConfig) -> StringsPlan | None:
    """Validate `--with-tokenizer` and its options (nothing is built yet); None when it was not asked for."""
    if not config.with_tokenizer:
        if config.tokenizer_variants or config.tokenizer_check:
            raise EdgeSentError("--tokenizer-variants and --tokenizer-check need --with-tokenizer")
        return None
    extensions_library()  # a one-line error now rather than after the variants are built
    built = (REFERENCE, *config.quantize)
    variants = config.tokenizer_variants or tuple(v for v in DEFAULT_VARIANTS if v in built)
    for name in variants:
        if name not in VARIANTS:
            raise EdgeSentError(f"unknown --tokenizer-variants value {name!r} (choose from {', '.join(VARIANTS)})")
        if name not in built:
            raise EdgeSentError(f"--tokenizer-variants {name}: the bundle does not build it (add --quantize {name})")
        if VARIANTS[name].gpu_only:
            raise EdgeSentError(f"--tokenizer-variants {name}: it cannot be verified on the CPU")
    if not 0.0 <= config.tokenizer_tolerance < 1.0:
        raise EdgeSentError(f"--tokenizer-tolerance must be in [0, 1), got {config.tokenizer_tolerance}")
    corpus = tuple((path, config.data.text_field) for path in config.tokenizer_check)
    for path, _ in corpus:
        if not path.is_file():
            raise EdgeSentError(f"--tokenizer-check: {path} not found")
    if not corpus:
        meta = read_run_meta(config.run_dir)
        if meta.data is not None and Path(meta.data.train).is_file():
            corpus += ((Path(meta.data.train), meta.data.text_column),)
        if meta.dev_file:
            corpus += ((RunDir(config.run_dir).file(meta.dev_file), "text"),)
    return StringsPlan(variants, corpus, config.tokenizer_tolerance)


def _token_check(job: Prepared, prepared: sc.DerivedTokenizer, strings: StringsPlan, say) -> dict:
    tokenizer_file = job.encoder.tokenizer_file
    say("checking the in-graph tokenizer against tokenizer.json: every code point, the corpus, adversarial text")
    bad_points = sc.scan_code_points(prepared, tokenizer_file)
    run = sc.session(sg.tokenizer_model(prepared.spec, prepared.steps, job.max_length, prepared.case))
    texts: list[str] = []
    for path, field in strings.corpus:
        texts += texts_from(path, field)
    corpus = sc.compare_texts(run, job.tokenizer, texts, bad_points)
    adversarial = sc.compare_texts(run, job.tokenizer, list(sc.ADVERSARIAL), bad_points)
    classes: dict[str, int] = {}
    for name in bad_points.values():
        classes[name] = classes.get(name, 0) + 1
    corpus_record = {"sources": [str(path) for path, _ in strings.corpus]} | corpus.record(texts)
    record = {
        "reference": f"tokenizer.json with tokenizers {metadata.version('tokenizers')}",
        "tolerance": strings.tolerance,
        "code_points": {
            "n": sum(1 for _ in spec.code_points()),
            "mismatches": len(bad_points),
            "classes": classes,
            "examples": [f"U+{c:04X}" for c in list(bad_points)[:10]],
        },
        "corpus": corpus_record,
        "adversarial": adversarial.record(list(sc.ADVERSARIAL)),
    }
    rate = float(corpus_record["mismatch_rate"])
    if rate > strings.tolerance:
        named = "; ".join(f"{c}: {n} text(s)" for c, n in corpus.classes.items())
        accept = math.ceil(rate * 1000) / 1000
        raise EdgeSentError(
            f"the in-graph tokenizer differs from tokenizer.json on {len(corpus.mismatched)} of {corpus.n_texts} "
            f"corpus texts ({named}): export refused (--tokenizer-tolerance {accept:g} accepts it)"
        )
    return record


def _check_predictions(job: Prepared, token_graph: Path, string_graph: Path) -> dict:
    """The string-in graph against the token-id graph, both on the runtime's engines, at each batch size."""
    texts = [*job.verify_texts, *sc.ADVERSARIAL]
    reference = verify.engine(token_graph, job.tokenizer)
    strings = StringEngine(string_graph, job.tokenizer, SessionConfig(provider="cpu", strict=True))
    order = np.arange(len(texts))
    worst, agree = 0.0, True
    for batch in PREDICTION_BATCHES:
        ours = strings.run_texts(texts, batch, ("probabilities", sg.LABEL_IDS), order)
        theirs = reference.run_texts(texts, batch, ("probabilities",), order)
        worst = max(worst, float(np.abs(ours["probabilities"] - theirs["probabilities"]).max()))
        agree &= bool((ours[sg.LABEL_IDS] == theirs["probabilities"].argmax(axis=1)).all())
        agree &= bool((ours.truncated == theirs.truncated).all())
    if not agree or worst > MAX_DPROB:
        raise EdgeSentError(
            f"{string_graph.name} does not reproduce {token_graph.name} (labels identical: {agree}, max |Δp| "
            f"{worst:.1e}): export refused"
        )
    return {
        "n_texts": len(texts),
        "batch_sizes": list(PREDICTION_BATCHES),
        "labels_identical": agree,
        "max_abs_dprob": worst,
    }


def build(job: Prepared, tmp: Path, variants: dict[str, dict], strings: StringsPlan, say) -> dict:
    """Derive, check, wrap, verify; returns the manifest's `strings` record."""
    prepared = sc.prepare_tokenizer(job.encoder.tokenizer_file)
    record: dict = {
        "input": sg.TEXT,
        "outputs": ["logits", "probabilities", sg.LABEL_IDS, sg.LABEL, sg.TRUNCATED],
        "onnxruntime_extensions": metadata.version("onnxruntime-extensions"),
        "token_check": _token_check(job, prepared, strings, say),
        "graphs": {},
    }
    for name in strings.variants:
        started = time.perf_counter()
        source = tmp / variants[name]["file"]
        target = tmp / strings_file_name(source.name)
        say(f"wrapping {name} with the tokenizer: {target.name}")
        sg.wrap(source, prepared.spec, prepared.steps, job.max_length, list(job.meta.labels), target, prepared.case)
        record["graphs"][name] = {
            "file": target.name,
            "wraps": source.name,
            "build_s": round(time.perf_counter() - started, 2),
            "vs_token_graph": _check_predictions(job, source, target),
        }
    return record
