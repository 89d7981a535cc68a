"""Derive the in-graph tokenizer from the bundle's `tokenizer.json` and check it against the `tokenizers` library.

`prepare_tokenizer` reads the WordPiece spec and every code point's class (`spec`) and derives the rewrite
steps. `scan_code_points` puts every Unicode code point, between two letters, through both tokenizers;
`compare_texts` does the same for whole texts (a corpus, `ADVERSARIAL`). A mismatched text is named by the classes
of the code points the scan found mismatching in it (`context` when it has none).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from edge_sent.export.strings import graph as sg
from edge_sent.export.strings import spec as sp
from edge_sent.export.strings.case import case_map, splitting
from edge_sent.runtime.strings import extensions_library
from edge_sent.tokenization import Tokenizer

CHUNK = 256  # code points per scan text
BATCH = 64  # texts per tokenizer-graph run

# Text the op could get wrong: mixed scripts, emoji, control and format characters, full-width forms, accents,
# whitespace variants, literal special tokens, texts beyond the max length, words beyond 100 characters.
ADVERSARIAL: tuple[str, ...] = (
    "这家酒店room很clean，服务好!",
    "Отель хороший, 服务很好",
    "ホテルはとても良い，服务一般",
    "호텔 좋아요 很好",
    "الفندق جيد جدا 很好",
    "โรงแรมดีมาก 很好",
    "होटल अच्छा है 很好",
    "Ξενοδοχείο ΠΟΛΥ καλό",
    "太好了😀👍🏻",
    "👨\u200d👩\u200d👧 家庭房🥰",
    "❤️酒店❤",
    "🇨🇳🇺🇸 国旗",
    "好\x00坏",
    "好\x07\x1b[31m坏\x7f",
    "a\u200bb零宽空格",
    "\ufeff开头BOM",
    "\ufffd替换字符\ufffd",
    "软\u00ad连字符",
    "ＡＢＣ１２３，很好！！！",
    "（括号）【方括号】「引号」《书名》",
    "～～～……——",
    "good，bad；ok：fine？yes！",
    "好!!!what?!don't",
    "Café très bien, naïve résumé",
    "Ångström ÆØÅ æøå ß",
    "e\u0301 combining acute",
    "Khách sạn rất tốt",
    "İstanbul ΣΊΣΥΦΟΣ Ǆ",
    "很好" * 400,
    "a" * 300,
    "服务 " * 600,
    "x" * 99 + " " + "y" * 101,
    "  前后空格  ",
    "\t制表\t符\n换行\r\n回车",
    "\u3000全角空格\u3000",
    "\u00a0不换行\u202f窄\u205f数学",
    "\u2028行分隔\u2029段分隔",
    "\u1680欧甘\u180e蒙古",
    "\x0b垂直\x0c换页\x85下一行",
    "",
    "   ",
    "[CLS] 很好 [SEP]",
    "[UNK][MASK][PAD]",
    "[cls] [Sep] [ CLS ]",
    "\ue000私用区\U000f0000",
    "\ufdd0\ufdef非字符",
    "𠀀𪜀𫝀 扩展汉字 \u9ffd\u9fff",
    "价格199元/晚，https://example.com?a=1&b=2#x",
    "3.14159 1,000,000 50%",
    "email@example.com @用户 #话题#",
    "\U0001d400\U0001d41a 数学字母",
    "ℌ℮ℓℓ◎ ™ ©®",
)


@dataclass(frozen=True)
class DerivedTokenizer:
    """What the in-graph tokenizer is built from."""

    spec: sp.TokenizerSpec
    classes: sp.CharClasses
    steps: tuple[sp.Rewrite, ...]
    case: dict[str, str] = field(default_factory=dict)  # uncased tokenizers: character -> normal form


def session(model: onnx.ModelProto, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.register_custom_ops_library(extensions_library())
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def prepare_tokenizer(tokenizer_file: Path) -> DerivedTokenizer:
    import tokenizers

    spec = sp.TokenizerSpec.read(tokenizer_file)
    classes = sp.char_classes(tokenizer_file)
    case: dict[str, str] = {}
    if classes.changed:
        normalize = tokenizers.Tokenizer.from_file(str(tokenizer_file)).normalizer.normalize_str
        breaks, split = set(classes.removed) | set(classes.spaces), set(classes.split)
        case = case_map(spec.op_vocab(), spec.suffix, classes.changed, normalize, breaks, split)
        classes = replace(classes, split=tuple(sorted(split | set(splitting(classes.changed, normalize, split)))))
    return DerivedTokenizer(spec, classes, tuple(sp.rewrites(spec, classes)), case)


@dataclass(frozen=True)
class Rows:
    """What one tokenizer produced for each text: ids, type ids, truncated."""

    ids: list[tuple[int, ...]]
    types: list[tuple[int, ...]]
    truncated: list[bool]


def graph_rows(run: ort.InferenceSession, texts: Sequence[str]) -> Rows:
    rows = Rows([], [], [])
    for start in range(0, len(texts), BATCH):
        batch = np.asarray(texts[start : start + BATCH], dtype=object)
        ids, mask, types, cut = run.run([*sg.TOKEN_OUTPUTS, sg.TRUNCATED], {sg.TEXT: batch})
        for row, m, t, c in zip(ids, mask, types, cut, strict=True):
            n = int(m.sum())
            if not m[:n].all():
                raise AssertionError("attention mask is not a prefix of ones")
            rows.ids.append(tuple(row[:n].tolist()))
            rows.types.append(tuple(t[:n].tolist()))
            rows.truncated.append(bool(c))
    return rows


def reference_rows(tokenizer: Tokenizer, texts: Sequence[str]) -> Rows:
    encoded = tokenizer.encode(list(texts))
    return Rows(
        [tuple(e.ids.tolist()) for e in encoded],
        [tuple(e.type_ids.tolist()) for e in encoded],
        [e.truncated for e in encoded],
    )


def mismatches(ours: Rows, reference: Rows) -> list[int]:
    return [
        i
        for i in range(len(reference.ids))
        if (ours.ids[i], ours.types[i], ours.truncated[i])
        != (reference.ids[i], reference.types[i], reference.truncated[i])
    ]


def _untruncated(tokenizer_file: Path) -> Tokenizer:
    tok = Tokenizer(tokenizer_file, 8)
    tok.tokenizer.no_truncation()
    return tok


def scan_code_points(prepared: DerivedTokenizer, tokenizer_file: Path) -> dict[int, str]:
    """Every code point c as `a{c}a` (CHUNK of them per text, space-separated): {code point: class} of those whose
    token ids differ from `tokenizers`'."""
    reference = _untruncated(tokenizer_file)
    run = session(sg.tokenizer_model(prepared.spec, prepared.steps, 4 * CHUNK + 2, prepared.case))
    points = list(sp.code_points())
    chunks = [points[i : i + CHUNK] for i in range(0, len(points), CHUNK)]
    texts = [" ".join(f"a{chr(c)}a" for c in chunk) for chunk in chunks]
    bad: dict[int, str] = {}
    for k in mismatches(graph_rows(run, texts), reference_rows(reference, texts)):
        singles = [f"a{chr(c)}a" for c in chunks[k]]
        for i in mismatches(graph_rows(run, singles), reference_rows(reference, singles)):
            bad[chunks[k][i]] = code_point_class(prepared, chunks[k][i])
    return bad


NUL_CLASS = "NUL (U+0000): onnxruntime's custom-operator API reads a string up to its first NUL"
CASE_CLASS = "lower-casing or accent stripping into a space or punctuation (outside the character map)"


def code_point_class(prepared: DerivedTokenizer, c: int) -> str:
    if c == 0:
        return NUL_CLASS
    if c in prepared.classes.changed:
        return CASE_CLASS
    return "other"


@dataclass(frozen=True)
class TextCheck:
    n_texts: int
    mismatched: tuple[int, ...]  # positions
    classes: dict[str, int]  # class -> texts

    def record(self, texts: Sequence[str], examples: int = 3) -> dict:
        return {
            "n_texts": self.n_texts,
            "mismatches": len(self.mismatched),
            "mismatch_rate": len(self.mismatched) / self.n_texts if self.n_texts else 0.0,
            "classes": self.classes,
            "examples": [texts[i][:80] for i in self.mismatched[:examples]],
        }


def compare_texts(
    run: ort.InferenceSession, tokenizer: Tokenizer, texts: Sequence[str], bad_points: dict[int, str]
) -> TextCheck:
    """The tokenizer graph against `tokenizer.json` on whole texts (truncated at the bundle's max length)."""
    bad = mismatches(graph_rows(run, texts), reference_rows(tokenizer, texts))
    classes: Counter[str] = Counter()
    for i in bad:
        found = {bad_points[ord(ch)] for ch in texts[i] if ord(ch) in bad_points}
        classes.update(found or {"context"})
    return TextCheck(len(texts), tuple(bad), dict(classes))
