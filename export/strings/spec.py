"""What the string-in graph is generated from: the WordPiece tokenizer's spec and every code point's class, read
from the bundle's own `tokenizer.json`, and the re2 rewrites that reproduce its normalizer and pre-tokenizer."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_sent.errors import EdgeSentError

MARKER = 0xFDD0  # noncharacters U+FDD0.. stand for the special tokens inside the graph
UNKNOWN = 0xFDEF  # a noncharacter outside the vocabulary: WordPiece turns its word into [UNK], as `tokenizers` does
LAST_CODE_POINT = 0x10FFFF


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
