"""The string-in graph: the bundle's own tokenizer as onnxruntime-extensions operators, in front of a variant's graph.

Input `text` (string, `[batch]`); outputs `logits`, `probabilities`, `label_ids`, `label` (the label names) and
`truncated`. Tokenization in the graph, with no loop over the batch:

1. `StringRegexReplace` (re2) steps generated from the bundle's `tokenizer.json` itself (`char_classes` puts every
   Unicode code point through its normalizer and pre-tokenizer): literal special tokens (`[CLS]`, `[SEP]`, ...:
   `tokenizers` matches them in the raw text) become private markers (noncharacters U+FDD0...) that the vocabulary
   given to the operators spells that way; characters `tokenizers` removes (control, format, private use, U+FFFD)
   are removed; its whitespace becomes a space; Chinese characters and punctuation get spaces around them;
2. `StringSplit` on spaces into words; for an uncased tokenizer, every word through a character map derived from the
   tokenizer's normalizer (lower-casing and accent stripping, exact for every code point: `case`);
3. `WordpieceTokenizer` into pieces, `LabelEncoder` (ai.onnx.ml) into ids; a
   word with an unknown piece becomes one [UNK], as in `tokenizers` (the operator keeps the pieces before it);
4. standard operators scatter the ids into rows: [CLS], at most max length - 2 tokens, [SEP], padding to the batch's
   longest text; `truncated` says which texts were cut.

onnxruntime-extensions' BertTokenizer operator was not used: its WordPiece keeps the pieces before an unknown one,
its character tables miss full-width punctuation (，！？（）) and it takes one text (or a pair) per call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from edge_sent.errors import EdgeSentError
from edge_sent.export.strings.case import case_nodes, piece_word_nodes
from edge_sent.export.strings.nodes import CONTRIB, ONE, ZERO, const, node, string_const, string_tensor
from edge_sent.export.strings.spec import Rewrite, TokenizerSpec

TEXT = "text"
TOKEN_OUTPUTS = ("input_ids", "attention_mask", "token_type_ids")
LABEL_IDS, LABEL, TRUNCATED = "label_ids", "label", "truncated"
_P = "strings/"  # prefix of every name this module adds to a graph


def tokenizer_nodes(
    spec: TokenizerSpec, steps: Sequence[Rewrite], max_length: int, case: Mapping[str, str] | None = None
) -> list[onnx.NodeProto]:
    """`text` -> input_ids, attention_mask, token_type_ids (int64 [batch, longest]) and truncated (bool [batch]).

    No loop over the batch: the rewritten texts are split into words (StringSplit), every word is cut into
    WordPiece tokens (WordpieceTokenizer), a word with an unknown piece becomes one [UNK] (as in `tokenizers`;
    the operator keeps the pieces before the unknown one), then the tokens are scattered into rows."""
    rewritten, text = _rewrite_nodes(spec, steps, case)
    return [
        *rewritten,
        *_constant_nodes(spec),
        *_wordpiece_nodes(spec, text, case),
        *_unknown_word_nodes(),
        *_position_nodes(text),
        *_truncation_nodes(max_length),
        *_row_nodes(spec),
    ]


def _rewrite_nodes(
    spec: TokenizerSpec, steps: Sequence[Rewrite], case: Mapping[str, str] | None
) -> tuple[list[onnx.NodeProto], str]:
    """The re2 rewrites in order (and the operator's lower-casing where no case map is given): the texts' name."""
    p, current = _P, TEXT
    nodes: list[onnx.NodeProto] = []
    for k, step in enumerate(steps):
        nodes += [
            string_const(f"{p}re{k}/pattern", step.pattern),
            string_const(f"{p}re{k}/rewrite", step.replacement),
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
    return nodes, current


def _constant_nodes(spec: TokenizerSpec) -> list[onnx.NodeProto]:
    p = _P
    return [
        const(p + "zero", [0]),
        const(p + "one", [1]),
        const(p + "zero0", 0, scalar=True),
        const(p + "one0", 1, scalar=True),
        const(p + "unk", spec.vocab.index(spec.unk), scalar=True),
    ]


def _wordpiece_nodes(spec: TokenizerSpec, text: str, case: Mapping[str, str] | None) -> list[onnx.NodeProto]:
    """Words (split on spaces, through the case map), their WordPiece pieces and ids, and the word of every piece."""
    p = _P
    vocab = spec.op_vocab()
    words = p + "words"
    cased = case_nodes(dict(case), words, p + "cased_words", p + "case/") if case else []
    return [
        string_const(p + "space", " "),
        helper.make_node("Constant", [], [p + "skip_empty"], value=helper.make_tensor("", TensorProto.BOOL, [], [1])),
        helper.make_node(
            "StringSplit",
            [text, p + "space", p + "skip_empty"],
            [p + "word_index", words, p + "split_shape"],
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
            unknown_token=vocab[spec.vocab.index(spec.unk)],
            max_input_chars_per_word=spec.max_chars_per_word,
        ),
        helper.make_node(
            "LabelEncoder",
            [p + "pieces"],
            [p + "piece_ids"],
            domain="ai.onnx.ml",
            keys_strings=vocab,
            values_int64s=list(range(len(vocab))),
            default_int64=spec.vocab.index(spec.unk),
        ),
        *piece_word_nodes(p + "piece_ids", p + "starts", p),
    ]


def _unknown_word_nodes() -> list[onnx.NodeProto]:
    """A word with an unknown piece becomes one [UNK]: `ids` and the word of each (`ids_word`)."""
    p = _P
    return [
        node("Equal", [p + "piece_ids", p + "unk"], p + "is_unk"),
        node("Cast", [p + "is_unk"], p + "unk01", to=TensorProto.INT64),
        node("ConstantOfShape", [p + "n_words"], p + "zeros_w", value=ZERO),
        node("ScatterElements", [p + "zeros_w", p + "word", p + "unk01"], p + "word_unks", axis=0, reduction="add"),
        node("Gather", [p + "word_unks", p + "word"], p + "piece_word_unks", axis=0),
        node("Greater", [p + "piece_word_unks", p + "zero0"], p + "in_bad_word"),
        node("Cast", [p + "first"], p + "is_first", to=TensorProto.BOOL),
        node("Not", [p + "in_bad_word"], p + "in_good_word"),
        node("Or", [p + "in_good_word", p + "is_first"], p + "keep"),
        node("Where", [p + "in_bad_word", p + "unk", p + "piece_ids"], p + "ids_unk"),
        node("Compress", [p + "ids_unk", p + "keep"], p + "ids", axis=0),
        node("Compress", [p + "word", p + "keep"], p + "ids_word", axis=0),
    ]


def _position_nodes(text: str) -> list[onnx.NodeProto]:
    """The text of every token (`ids_text`), its position in that text (`ids_pos`), each text's length."""
    p = _P
    return [
        node("Gather", [p + "word_index", p + "zero0"], p + "word_text", axis=1),
        node("Gather", [p + "word_text", p + "ids_word"], p + "ids_text", axis=0),
        node("Shape", [text], p + "batch"),
        node("ConstantOfShape", [p + "batch"], p + "zeros_b", value=ZERO),
        node("Shape", [p + "ids"], p + "n_ids"),
        node("ConstantOfShape", [p + "n_ids"], p + "ones_i", value=ONE),
        node("ScatterElements", [p + "zeros_b", p + "ids_text", p + "ones_i"], p + "lengths", axis=0, reduction="add"),
        node("CumSum", [p + "lengths", p + "zero0"], p + "offsets", exclusive=1),
        node("Squeeze", [p + "n_ids", p + "zero"], p + "n_ids0"),
        node("Range", [p + "zero0", p + "n_ids0", p + "one0"], p + "rank"),
        node("Gather", [p + "offsets", p + "ids_text"], p + "ids_offset", axis=0),
        node("Sub", [p + "rank", p + "ids_offset"], p + "ids_pos"),
    ]


def _truncation_nodes(max_length: int) -> list[onnx.NodeProto]:
    """The first max_length - 2 tokens of each text (room for [CLS] and [SEP]), and which texts were cut."""
    p = _P
    return [
        const(p + "cap", max_length - 2, scalar=True),
        node("Less", [p + "ids_pos", p + "cap"], p + "fits"),
        node("Compress", [p + "ids", p + "fits"], p + "kept_ids", axis=0),
        node("Compress", [p + "ids_text", p + "fits"], p + "kept_text", axis=0),
        node("Compress", [p + "ids_pos", p + "fits"], p + "kept_pos", axis=0),
        node("Greater", [p + "lengths", p + "cap"], TRUNCATED),
        node("Min", [p + "lengths", p + "cap"], p + "kept_lengths"),
    ]


def _row_nodes(spec: TokenizerSpec) -> list[onnx.NodeProto]:
    """Rows of [CLS] tokens [SEP] padding, their attention mask and (one text: segment 0) token type ids."""
    p = _P
    pad = helper.make_tensor("", TensorProto.INT64, [1], [spec.pad_id])
    return [
        node("Concat", [p + "kept_lengths", p + "zero"], p + "lengths0", axis=0),
        node("ReduceMax", [p + "lengths0"], p + "longest", keepdims=0),
        const(p + "two0", 2, scalar=True),
        node("Add", [p + "longest", p + "two0"], p + "width"),
        node("Range", [p + "zero0", p + "width", p + "one0"], p + "columns"),
        node("Unsqueeze", [p + "width", p + "zero"], p + "width1"),
        node("Concat", [p + "batch", p + "width1"], p + "shape", axis=0),
        node("ConstantOfShape", [p + "shape"], p + "pads", value=pad),
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
        node("Mul", ["input_ids", p + "zero0"], "token_type_ids"),
    ]


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
    names = string_tensor(_P + "names", list(labels))
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
