"""What the pages state about the code's constants is the code's value: each documented constant is imported and
its value looked for, in words, on the page that states it."""

from __future__ import annotations

import inspect
import re

import pytest

from tests.conftest import ROOT

DOCS = ROOT / "docs"
# how the pages write a share of a text's length
SHARE_WORDS = {0.25: "a quarter of its own length", 0.5: "half its own length", 1.0: "its own length"}
COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}


def _page(name: str) -> str:
    return re.sub(r"\s+", " ", (DOCS / name).read_text(encoding="utf-8"))  # line breaks do not matter


def test_serving_states_the_batchers_and_the_tokenizers_limits() -> None:
    pytest.importorskip("fastapi")
    from edge_sent.runtime.serve.batching import MAX_PADDING_SHARE
    from edge_sent.runtime.serve.config import BatchSettings
    from edge_sent.runtime.serve.service import TOKENIZE_INLINE_CHARS, TOKENIZING_AT_ONCE

    page = _page("serving.md")
    share = SHARE_WORDS[MAX_PADDING_SHARE]
    assert f"the padding it adds is at most {share}" in page
    assert f"requests over {TOKENIZE_INLINE_CHARS:,} characters on a thread" in page
    assert f"at most {COUNT_WORDS[TOKENIZING_AT_ONCE]} at once" in page
    defaults = BatchSettings()
    assert f"`--max-batch-size` texts ({defaults.max_batch_size})" in page
    assert f"`--max-batch-tokens` padded tokens ({defaults.max_batch_tokens};" in page


def test_scoring_says_the_driver_reads_the_inputs_as_the_ray_engine_does() -> None:
    from edge_sent.runtime.scoring import on_ray as score_ray

    page = _page("scoring.md")
    assert "the inputs only where the command runs (the driver reads them" in page
    assert "inputs must be readable at the same paths on every node" not in page
    # the code: the driver's shard items carry the rows' texts, and what a worker loads names no input
    assert '"texts": [r.text for r in shard.rows]' in inspect.getsource(score_ray)
    assert not {"inputs", "input", "paths"} & set(score_ray.LoadOptions.__dataclass_fields__)
