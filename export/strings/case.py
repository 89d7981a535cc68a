"""Exact lower-casing and accent stripping in the string-in graph, for uncased WordPiece tokenizers.

onnxruntime-extensions' `StringLower` knows ASCII, Latin-1 and basic Greek/Cyrillic, and nothing strips accents;
`tokenizers`' BertNormalizer lower-cases and strips accents (NFD, then combining marks dropped) one code point at
a time. So the graph applies a character map derived from `tokenizer.json` itself (`case_map`), per word:

1. a first `WordpieceTokenizer` over a vocabulary of single characters cuts every word into its characters (a
   character outside the map becomes one unknown piece: its word would be [UNK] in `tokenizers` too);
2. `LabelEncoder` (string to string) maps each character to what the normalizer makes of it;
3. the pieces are scattered back into one row per word and `StringJoin` glues each row into the mapped word.

The map holds every character of the vocabulary (mapped to its normal form: itself when unchanged) and every
other character whose normal form is spelled with vocabulary characters. Any other character cannot occur in
a WordPiece token of the vocabulary whether mapped or not, so its word is [UNK] either way: the map is exact
for every code point. A character whose normal form is one CJK or punctuation character is split off as a word
of its own first (as the normalizer's output is); one whose normal form holds a space, or punctuation among other
characters, is left out and reported by the export's code-point scan.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge_sent.export.strings.nodes import CONTRIB, const, node

UNKNOWN_CHAR = "\ufdef"  # (spec.UNKNOWN) outside every vocabulary: its word becomes [UNK]
# the first pass's continuation marker: a noncharacter the graph's first rewrite keeps out of every text (a "##"
# marker would let a word that starts with "##x" match the continuation piece "##x" as a whole)
PIECE_MARK = "\ufdee"
SENTINEL = "a"  # appended to the words, so that the pass never runs on zero words (an empty StringJoin crashes)


def case_map(
    vocab: Iterable[str],
    suffix: str,
    changed: Iterable[int],
    normalize: Callable[[str], str],
    breaks: set[int],
    split: set[int],
) -> dict[str, str]:
    """character -> its normal form, for the characters that can matter (see the module docstring).

    `vocab`: the operator's vocabulary; `changed`: the code points the normalizer rewrites; `breaks`: the code
    points that are removed or become a space; `split`: those that are a word of their own (CJK, punctuation). A
    normal form may be one `split` character (the character is then split off too: `splitting`); one holding a
    break, or a split character among others, is left out (the code-point scan reports it)."""
    spelled = {ch for token in vocab for ch in (token[len(suffix) :] if token.startswith(suffix) else token)}
    spelled.discard("")
    mapping = {ch: ch for ch in spelled}
    for code in changed:
        ch = chr(code)
        normal, alone = _alone(normalize(ch), split)
        if not normal or any(ord(c) in breaks for c in normal) or (not alone and any(ord(c) in split for c in normal)):
            mapping.pop(ch, None)  # would change the words themselves: left to the code-point scan
            continue
        if ch in spelled or set(normal) <= spelled:
            mapping[ch] = normal
    return mapping


def splitting(changed: Iterable[int], normalize: Callable[[str], str], split: set[int]) -> list[int]:
    """The changed code points whose normal form is one character that is a word of its own (e.g. U+F900, a CJK
    compatibility ideograph, is U+8C48; U+037E, the Greek question mark, is ";"): the graph splits them off too."""
    return [code for code in changed if _alone(normalize(chr(code)), split)[1]]


def _alone(normal: str, split: set[int]) -> tuple[str, bool]:
    """A normal form without the spaces the normalizer puts around a CJK character, and whether it is one character
    that is a word of its own."""
    core = normal[1:-1] if len(normal) == 3 and normal[0] == normal[-1] == " " else normal
    return core, len(core) == 1 and (ord(core) in split or core != normal)


def piece_word_nodes(pieces: str, starts: str, p: str) -> list[onnx.NodeProto]:
    """The word of every piece a `WordpieceTokenizer` made (1 where a word starts, cumulated) as `{p}word`, with
    `{p}n_pieces`, `{p}n_words` and `{p}first` (1 at a word's first piece); needs `{p}zero0` and `{p}one0`."""
    zero, one = (helper.make_tensor("", TensorProto.INT64, [1], [v]) for v in (0, 1))
    return [
        node("Shape", [pieces], p + "n_pieces"),
        node("ConstantOfShape", [p + "n_pieces"], p + "zeros_t", value=zero),
        node("Shape", [starts], p + "n_words"),
        node("ConstantOfShape", [p + "n_words"], p + "ones_w", value=one),
        node("ScatterElements", [p + "zeros_t", starts, p + "ones_w"], p + "first", axis=0),
        node("CumSum", [p + "first", p + "zero0"], p + "word_plus1"),
        node("Sub", [p + "word_plus1", p + "one0"], p + "word"),
    ]


def case_nodes(mapping: dict[str, str], words: str, out: str, prefix: str) -> list[onnx.NodeProto]:
    """`words` (1-D strings) -> `out`: every word with each character replaced by its normal form."""
    p = prefix
    chars = sorted(mapping)
    pieces = chars + [PIECE_MARK + ch for ch in chars]
    values = [mapping[ch] for ch in chars] * 2
    empty = numpy_helper.from_array(np.array(b"", dtype=object), "")
    sentinel = numpy_helper.from_array(np.array([SENTINEL.encode()], dtype=object), "")
    return [
        helper.make_node("Constant", [], [p + "sentinel"], value=sentinel),
        node("Concat", [words, p + "sentinel"], p + "words", axis=0),
        const(p + "no_rows", []),
        helper.make_node(
            "WordpieceTokenizer",
            [p + "words", p + "no_rows"],
            [p + "chars", p + "chars_starts_all", p + "chars_starts", p + "chars_ends"],
            domain=CONTRIB,
            vocab=json.dumps({piece: i for i, piece in enumerate(pieces)}, ensure_ascii=False),
            suffix_indicator=PIECE_MARK,
            unknown_token=UNKNOWN_CHAR,
            max_input_chars_per_word=1 << 30,
        ),
        helper.make_node(
            "LabelEncoder",
            [p + "chars"],
            [p + "mapped"],
            domain="ai.onnx.ml",
            keys_strings=pieces,
            values_strings=values,
            default_string=UNKNOWN_CHAR,
        ),
        const(p + "zero", [0]),
        const(p + "one", [1]),
        const(p + "zero0", 0, scalar=True),
        const(p + "one0", 1, scalar=True),
        # each piece's word and its position in that word
        *piece_word_nodes(p + "chars", p + "chars_starts", p),
        node("Squeeze", [p + "n_pieces", p + "zero"], p + "n0"),
        node("Range", [p + "zero0", p + "n0", p + "one0"], p + "rank"),
        node("Gather", [p + "chars_starts", p + "word"], p + "word_start", axis=0),
        node("Sub", [p + "rank", p + "word_start"], p + "pos"),
        # one row per word, as wide as its longest: "" where it is shorter, then joined
        node("Sub", [p + "chars_ends", p + "chars_starts"], p + "lengths"),
        node("Concat", [p + "lengths", p + "zero"], p + "lengths0", axis=0),
        node("ReduceMax", [p + "lengths0"], p + "width", keepdims=1),
        node("Concat", [p + "n_words", p + "width"], p + "shape", axis=0),
        helper.make_node("Constant", [], [p + "empty"], value=empty),
        node("Expand", [p + "empty", p + "shape"], p + "blank"),
        node("Unsqueeze", [p + "word", p + "one"], p + "word2"),
        node("Unsqueeze", [p + "pos", p + "one"], p + "pos2"),
        node("Concat", [p + "word2", p + "pos2"], p + "where", axis=1),
        node("ScatterND", [p + "blank", p + "where", p + "mapped"], p + "rows"),
        helper.make_node("Constant", [], [p + "sep"], value=empty),
        const(p + "axis", 1, scalar=True),
        node("StringJoin", [p + "rows", p + "sep", p + "axis"], p + "joined", CONTRIB),
        const(p + "minus_one", [-1]),
        node("Slice", [p + "joined", p + "zero", p + "minus_one"], out),  # the sentinel off
    ]
