"""The string-in graph: the bundle's own tokenizer as onnxruntime-extensions operators, in front of a variant's graph.

Input `text` (string, `[batch]`); outputs `logits`, `probabilities`, `label_ids`, `label` (the label names) and
`truncated`. Tokenization in the graph, with no loop over the batch:

1. `StringRegexReplace` (re2) steps generated from the bundle's `tokenizer.json` itself (`char_classes` puts every
   Unicode code point through its normalizer and pre-tokenizer): literal special tokens (`[CLS]`, `[SEP]`, ...:
   `tokenizers` matches them in the raw text) become private markers (noncharacters U+FDD0...) that the vocabulary
   given to the operators spells that way; characters `tokenizers` removes (control, format, private use, U+FFFD)
   are removed; its whitespace becomes a space; Chinese characters and punctuation get spaces around them;
2. `StringSplit` on spaces into words; for an uncased tokenizer, every word through a character map derived from the
   tokenizer's normalizer (lower-casing and accent stripping, exact for every code point: `string_case`);
3. `WordpieceTokenizer` into pieces, `LabelEncoder` (ai.onnx.ml) into ids; a
   word with an unknown piece becomes one [UNK], as in `tokenizers` (the operator keeps the pieces before it);
4. standard operators scatter the ids into rows: [CLS], at most max length - 2 tokens, [SEP], padding to the batch's
   longest text; `truncated` says which texts were cut.

onnxruntime-extensions' BertTokenizer operator was not used: its WordPiece keeps the pieces before an unknown one,
its character tables miss full-width punctuation (，！？（）) and it takes one text (or a pair) per call.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge_sent.errors import EdgeSentError
from edge_sent.export.string_case import case_nodes, const, node, piece_word_nodes

CONTRIB = "ai.onnx.contrib"  # onnxruntime-extensions' operator domain
TEXT = "text"
TOKEN_OUTPUTS = ("input_ids", "attention_mask", "token_type_ids")
LABEL_IDS, LABEL, TRUNCATED = "label_ids", "label", "truncated"
MARKER = 0xFDD0  # noncharacters U+FDD0.. stand for the special tokens inside the graph
UNKNOWN = 0xFDEF  # a noncharacter outside the vocabulary: WordPiece turns its word into [UNK], as `tokenizers` does
LAST_CODE_POINT = 0x10FFFF
_P = "strings/"  # prefix of every name this module adds to a graph


@dataclass(frozen=True)
class TokenizerSpec:
    """What the operator needs from a WordPiece (BERT) `tokenizer.json`."""

    vocab: tuple[str, ...]  # by id
    lowercase: bool
    strip_accents: bool
    specials: tuple[str, ...]  # added tokens matched literally in the raw text, e.g. [CLS]
    unk: str
    cls: str
    sep: str
    pad_id: int
    suffix: str
    max_chars_per_word: int

    @classmethod
    def read(cls, path: Path) -> TokenizerSpec:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        model, normalizer = data.get("model") or {}, data.get("normalizer") or {}
        pre, post = data.get("pre_tokenizer") or {}, data.get("post_processor") or {}

        def refuse(why: str) -> EdgeSentError:
            return EdgeSentError(f"{path}: --with-tokenizer supports BERT (WordPiece) tokenizers only: {why}")

        kind = model.get("type") or ("WordPiece" if "max_input_chars_per_word" in model else None)
        if kind != "WordPiece":  # older files leave out the type
            raise refuse(f"the model is {kind!r}")
        if normalizer.get("type") != "BertNormalizer" or not normalizer.get("clean_text", True):
            raise refuse(f"the normalizer is {normalizer.get('type')!r}")
        if not normalizer.get("handle_chinese_chars", True):
            raise refuse("handle_chinese_chars is off")
        if pre.get("type") != "BertPreTokenizer":
            raise refuse(f"the pre-tokenizer is {pre.get('type')!r}")
        vocab_map: dict[str, int] = model["vocab"]
        vocab = [""] * len(vocab_map)
        for token, index in vocab_map.items():
            vocab[index] = token
        if any(not t or "\n" in t or "\r" in t for t in vocab):
            raise refuse("a vocabulary entry is empty or holds a line break")
        cls_token, sep_token = _framing(post, refuse)
        added = data.get("added_tokens") or []
        if any(t.get("normalized") or t.get("lstrip") or t.get("rstrip") or t.get("single_word") for t in added):
            raise refuse("an added token is normalized, stripped or single-word")
        lowercase = bool(normalizer.get("lowercase", True))
        strip = normalizer.get("strip_accents")
        specials = tuple(t["content"] for t in added if vocab_map.get(t["content"]) == t["id"])
        if len(specials) != len(added):
            raise refuse("an added token is not in the vocabulary")
        return cls(
            vocab=tuple(vocab),
            lowercase=lowercase,
            strip_accents=lowercase if strip is None else bool(strip),
            specials=specials,
            unk=str(model.get("unk_token", "[UNK]")),
            cls=cls_token,
            sep=sep_token,
            pad_id=int(vocab_map.get("[PAD]", 0)),
            suffix=str(model.get("continuing_subword_prefix", "##")),
            max_chars_per_word=int(model.get("max_input_chars_per_word", 100)),
        )

    def marker(self, token: str) -> str:
        return chr(MARKER + self.specials.index(token))

    def op_vocab(self) -> list[str]:
        """The vocabulary as the operator sees it: special tokens spelled as their markers."""
        vocab = list(self.vocab)
        for token in self.specials:
            vocab[self.vocab.index(token)] = self.marker(token)
        return vocab


def _framing(post: dict, refuse) -> tuple[str, str]:
    """[CLS] and [SEP] from the post-processor: the single-text template must be CLS $A SEP, type ids 0."""
    if post.get("type") == "BertProcessing":
        return str(post["cls"][0]), str(post["sep"][0])
    if post.get("type") != "TemplateProcessing":
        raise refuse(f"the post-processor is {post.get('type')!r}")
    single = post.get("single") or []
    kinds = [next(iter(item)) for item in single]
    if kinds != ["SpecialToken", "Sequence", "SpecialToken"] or any(next(iter(i.values()))["type_id"] for i in single):
        raise refuse("the single-text template is not [CLS] $A [SEP] with type id 0")
    return str(single[0]["SpecialToken"]["id"]), str(single[2]["SpecialToken"]["id"])


@dataclass(frozen=True)
class CharClasses:
    """Code points by what `tokenizers` does with them (from the tokenizer's own normalizer and pre-tokenizer)."""

    removed: tuple[int, ...]
    spaces: tuple[int, ...]
    split: tuple[int, ...]  # Chinese characters and punctuation: a token of their own
    changed: tuple[int, ...]  # lower-cased or accent-stripped (uncased tokenizers)


def code_points() -> Iterable[int]:
    return (c for c in range(LAST_CODE_POINT + 1) if not 0xD800 <= c <= 0xDFFF)


def char_classes(tokenizer_file: Path) -> CharClasses:
    import tokenizers

    tok = tokenizers.Tokenizer.from_file(str(tokenizer_file))
    normalize, pre_tokenize = tok.normalizer.normalize_str, tok.pre_tokenizer.pre_tokenize_str
    removed, spaces, split, changed = [], [], [], []
    for c in code_points():
        ch = chr(c)
        out = normalize(ch)
        if out == "":
            removed.append(c)
        elif out == " ":
            spaces.append(c)
        elif out == f" {ch} " or (out == ch and len(pre_tokenize(f"a{ch}a")) == 3):
            split.append(c)
        elif out != ch:
            changed.append(c)
    return CharClasses(tuple(removed), tuple(spaces), tuple(split), tuple(changed))


def _ranges(points: Sequence[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for c in sorted(points):
        if out and out[-1][1] == c - 1:
            out[-1] = (out[-1][0], c)
        else:
            out.append((c, c))
    return out


def char_class(points: Sequence[int]) -> str:
    """An re2 character class for the code points."""
    parts = [f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in _ranges(points)]
    return "[" + "".join(parts) + "]"


def _escape(text: str) -> str:
    return "".join(f"\\x{{{ord(c):X}}}" for c in text)


@dataclass(frozen=True)
class Rewrite:
    pattern: str
    replacement: str


def rewrites(spec: TokenizerSpec, classes: CharClasses) -> list[Rewrite]:
    """The re2 steps before splitting on spaces (see the module docstring), in order."""
    steps = [Rewrite(f"[\\x{{{MARKER:X}}}-\\x{{{UNKNOWN:X}}}]", chr(UNKNOWN))]
    steps += [Rewrite(_escape(token), f" {spec.marker(token)} ") for token in spec.specials]
    if classes.removed:
        steps.append(Rewrite(char_class(classes.removed), ""))
    spaces = [c for c in classes.spaces if c != ord(" ")]
    if spaces:
        steps.append(Rewrite(char_class(spaces), " "))
    if classes.split:
        steps.append(Rewrite(f"({char_class(classes.split)})", " \\1 "))
    return steps


def _strings(name: str, values: str | Sequence[str]) -> onnx.TensorProto:
    """A string tensor: a scalar for one str, else 1-D."""
    encoded = values.encode() if isinstance(values, str) else [v.encode() for v in values]
    return numpy_helper.from_array(np.array(encoded, dtype=object), name)


def _str_const(name: str, value: str) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=_strings(name, value))


_ZERO = helper.make_tensor("", TensorProto.INT64, [1], [0])


def tokenizer_nodes(
    spec: TokenizerSpec, steps: Sequence[Rewrite], max_length: int, case: Mapping[str, str] | None = None
) -> list[onnx.NodeProto]:
    """`text` -> input_ids, attention_mask, token_type_ids (int64 [batch, longest]) and truncated (bool [batch]).

    No loop over the batch: the rewritten texts are split into words (StringSplit), every word is cut into
    WordPiece tokens (WordpieceTokenizer), a word with an unknown piece becomes one [UNK] (as in `tokenizers`;
    the operator keeps the pieces before the unknown one), then the tokens are scattered into rows."""
    p = _P
    vocab = spec.op_vocab()
    unk_id = spec.vocab.index(spec.unk)
    nodes: list[onnx.NodeProto] = []
    current = TEXT
    for k, step in enumerate(steps):
        nodes += [
            _str_const(f"{p}re{k}/pattern", step.pattern),
            _str_const(f"{p}re{k}/rewrite", step.replacement),
            node(
                "StringRegexReplace",
                [current, f"{p}re{k}/pattern", f"{p}re{k}/rewrite"],
                f"{p}re{k}/text",
                CONTRIB,
                global_replace=1,
            ),
        ]
        current = f"{p}re{k}/text"
    if spec.lowercase and not case:  # (without a case map: the operator's tables, inexact beyond them)
        nodes.append(node("StringLower", [current], p + "lower", CONTRIB))
        current = p + "lower"
    words = p + "words"
    cased = case_nodes(dict(case), words, p + "cased_words", p + "case/") if case else []
    cap = max_length - 2  # tokens between [CLS] and [SEP]
    nodes += [
        _str_const(p + "space", " "),
        helper.make_node("Constant", [], [p + "skip_empty"], value=helper.make_tensor("", TensorProto.BOOL, [], [1])),
        helper.make_node(
            "StringSplit",
            [current, p + "space", p + "skip_empty"],
            [p + "word_index", p + "words", p + "split_shape"],
            domain=CONTRIB,
        ),
        *cased,
        const(p + "no_rows", np.zeros(0, dtype=np.int64)),
        helper.make_node(
            "WordpieceTokenizer",
            [p + "cased_words" if case else words, p + "no_rows"],
            [p + "pieces", p + "starts_all", p + "starts", p + "ends"],
            domain=CONTRIB,
            vocab=json.dumps({token: i for i, token in enumerate(vocab)}, ensure_ascii=False),
            suffix_indicator=spec.suffix,
            unknown_token=vocab[unk_id],
            max_input_chars_per_word=spec.max_chars_per_word,
        ),
        helper.make_node(
            "LabelEncoder",
            [p + "pieces"],
            [p + "piece_ids"],
            domain="ai.onnx.ml",
            keys_strings=vocab,
            values_int64s=list(range(len(vocab))),
            default_int64=unk_id,
        ),
        const(p + "zero", [0]),
        const(p + "one", [1]),
        const(p + "zero0", 0, scalar=True),
        const(p + "one0", 1, scalar=True),
        const(p + "unk", unk_id, scalar=True),
        # the word of every piece
        *piece_word_nodes(p + "piece_ids", p + "starts", p),
        # a word with an unknown piece becomes one [UNK]
        node("Equal", [p + "piece_ids", p + "unk"], p + "is_unk"),
        node("Cast", [p + "is_unk"], p + "unk01", to=TensorProto.INT64),
        node("ConstantOfShape", [p + "n_words"], p + "zeros_w", value=_ZERO),
        node("ScatterElements", [p + "zeros_w", p + "word", p + "unk01"], p + "word_unks", axis=0, reduction="add"),
        node("Gather", [p + "word_unks", p + "word"], p + "piece_word_unks", axis=0),
        node("Greater", [p + "piece_word_unks", p + "zero0"], p + "in_bad_word"),
        node("Cast", [p + "first"], p + "is_first", to=TensorProto.BOOL),
        node("Not", [p + "in_bad_word"], p + "in_good_word"),
        node("Or", [p + "in_good_word", p + "is_first"], p + "keep"),
        node("Where", [p + "in_bad_word", p + "unk", p + "piece_ids"], p + "ids_unk"),
        node("Compress", [p + "ids_unk", p + "keep"], p + "ids", axis=0),
        node("Compress", [p + "word", p + "keep"], p + "ids_word", axis=0),
        # the text of every token, its position in that text, each text's length
        node("Gather", [p + "word_index", p + "zero0"], p + "word_text", axis=1),
        node("Gather", [p + "word_text", p + "ids_word"], p + "ids_text", axis=0),
        node("Shape", [current], p + "batch"),
        node("ConstantOfShape", [p + "batch"], p + "zeros_b", value=_ZERO),
        node("Shape", [p + "ids"], p + "n_ids"),
        node("ConstantOfShape", [p + "n_ids"], p + "ones_i", value=helper.make_tensor("", TensorProto.INT64, [1], [1])),
        node("ScatterElements", [p + "zeros_b", p + "ids_text", p + "ones_i"], p + "lengths", axis=0, reduction="add"),
        node("CumSum", [p + "lengths", p + "zero0"], p + "offsets", exclusive=1),
        node("Squeeze", [p + "n_ids", p + "zero"], p + "n_ids0"),
        node("Range", [p + "zero0", p + "n_ids0", p + "one0"], p + "rank"),
        node("Gather", [p + "offsets", p + "ids_text"], p + "ids_offset", axis=0),
        node("Sub", [p + "rank", p + "ids_offset"], p + "ids_pos"),
        # truncation: the first max_length - 2 tokens of each text
        const(p + "cap", cap, scalar=True),
        node("Less", [p + "ids_pos", p + "cap"], p + "fits"),
        node("Compress", [p + "ids", p + "fits"], p + "kept_ids", axis=0),
        node("Compress", [p + "ids_text", p + "fits"], p + "kept_text", axis=0),
        node("Compress", [p + "ids_pos", p + "fits"], p + "kept_pos", axis=0),
        node("Greater", [p + "lengths", p + "cap"], TRUNCATED),
        node("Min", [p + "lengths", p + "cap"], p + "kept_lengths"),
        # rows: [CLS] tokens [SEP] padding
        node("Concat", [p + "kept_lengths", p + "zero"], p + "lengths0", axis=0),
        node("ReduceMax", [p + "lengths0"], p + "longest", keepdims=0),
        const(p + "two0", 2, scalar=True),
        node("Add", [p + "longest", p + "two0"], p + "width"),
        node("Range", [p + "zero0", p + "width", p + "one0"], p + "columns"),
        node("Unsqueeze", [p + "width", p + "zero"], p + "width1"),
        node("Concat", [p + "batch", p + "width1"], p + "shape", axis=0),
        node(
            "ConstantOfShape",
            [p + "shape"],
            p + "pads",
            value=helper.make_tensor("", TensorProto.INT64, [1], [spec.pad_id]),
        ),
        node("Add", [p + "kept_pos", p + "one0"], p + "kept_col"),
        node("Unsqueeze", [p + "kept_text", p + "one"], p + "kept_row2"),
        node("Unsqueeze", [p + "kept_col", p + "one"], p + "kept_col2"),
        node("Concat", [p + "kept_row2", p + "kept_col2"], p + "where", axis=1),
        node("ScatterND", [p + "pads", p + "where", p + "kept_ids"], p + "body"),
        node("Unsqueeze", [p + "columns", p + "zero"], p + "columns2"),
        node("Unsqueeze", [p + "kept_lengths", p + "one"], p + "lengths2"),
        node("Equal", [p + "columns2", p + "zero0"], p + "at_cls"),
        const(p + "cls", spec.vocab.index(spec.cls), scalar=True),
        node("Where", [p + "at_cls", p + "cls", p + "body"], p + "with_cls"),
        node("Add", [p + "lengths2", p + "one0"], p + "sep_col"),
        node("Equal", [p + "columns2", p + "sep_col"], p + "at_sep"),
        const(p + "sep", spec.vocab.index(spec.sep), scalar=True),
        node("Where", [p + "at_sep", p + "sep", p + "with_cls"], "input_ids"),
        node("Add", [p + "sep_col", p + "one0"], p + "row_width"),
        node("Less", [p + "columns2", p + "row_width"], p + "valid"),
        node("Cast", [p + "valid"], "attention_mask", to=TensorProto.INT64),
        node("Mul", ["input_ids", p + "zero0"], "token_type_ids"),  # one text: segment 0
    ]
    return nodes


def _opsets(model: onnx.ModelProto | None = None) -> list[onnx.OperatorSetIdProto]:
    opsets = {o.domain: o.version for o in model.opset_import} if model is not None else {"": 17}
    opsets[CONTRIB] = 1
    opsets.setdefault("ai.onnx.ml", 2)  # LabelEncoder with string keys
    return [helper.make_opsetid(domain, version) for domain, version in opsets.items()]


def text_input() -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(TEXT, TensorProto.STRING, ["batch"])


def tokenizer_model(
    spec: TokenizerSpec, steps: Sequence[Rewrite], max_length: int, case: Mapping[str, str] | None = None
) -> onnx.ModelProto:
    """The tokenizer alone (what the export's token-id check runs)."""
    outputs = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"]) for name in TOKEN_OUTPUTS]
    outputs.append(helper.make_tensor_value_info(TRUNCATED, TensorProto.BOOL, ["batch"]))
    graph = helper.make_graph(tokenizer_nodes(spec, steps, max_length, case), "tokenizer", [text_input()], outputs)
    return helper.make_model(graph, opset_imports=_opsets(), producer_name="edge-sent")


def wrap(
    model_path: Path,
    spec: TokenizerSpec,
    steps: Sequence[Rewrite],
    max_length: int,
    labels: Sequence[str],
    out: Path,
    case: Mapping[str, str] | None = None,
) -> None:
    """The variant's graph with the tokenizer in front and the label id and name behind: `text` in, labels out."""
    model = onnx.load(str(model_path))
    graph = model.graph
    kept_inputs = [i for i in graph.input if i.name not in TOKEN_OUTPUTS]
    if len(kept_inputs) != len(graph.input) - len(TOKEN_OUTPUTS):
        raise EdgeSentError(f"{model_path}: the graph lacks one of the inputs {', '.join(TOKEN_OUTPUTS)}")
    if "probabilities" not in {o.name for o in graph.output}:
        raise EdgeSentError(f"{model_path}: the graph has no 'probabilities' output")
    names = _strings(_P + "names", list(labels))
    post = [
        helper.make_node("ArgMax", ["probabilities"], [LABEL_IDS], axis=1, keepdims=0),
        helper.make_node("Constant", [], [_P + "names"], value=names),
        helper.make_node("Gather", [_P + "names", LABEL_IDS], [LABEL], axis=0),
    ]
    nodes = tokenizer_nodes(spec, steps, max_length, case) + list(graph.node) + post
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.input[:]
    graph.input.extend([text_input(), *kept_inputs])
    graph.output.extend(
        [
            helper.make_tensor_value_info(LABEL_IDS, TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info(LABEL, TensorProto.STRING, ["batch"]),
            helper.make_tensor_value_info(TRUNCATED, TensorProto.BOOL, ["batch"]),
        ]
    )
    opsets = _opsets(model)
    del model.opset_import[:]
    model.opset_import.extend(opsets)
    onnx.save(model, str(out))
