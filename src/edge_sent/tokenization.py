"""The one tokenization code path, shared by training feature extraction and the runtime.

`tokenizers` fast tokenizer from `tokenizer.json`, truncation at `max_length`, no padding inside the
tokenizer: texts are sorted by length and each batch is padded to its own longest text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tokenizers

from edge_sent.errors import EdgeSentError

# Texts per `encode_batch` call. The tokenizer's native Encoding objects take ~7 KB a text while they live: a
# 10,000-text shard encoded in one call held ~75 MB at once, and that transient, allocated by the tokenizer's
# threads shard after shard, fragmented the heap (peak RSS crept up with the number of shards). Chunks keep it
# at ~7 MB; the ids are the same (each text is encoded on its own).
ENCODE_CHUNK = 1024
# A long text is tokenized from a prefix of this many characters per token of max length (doubled until the prefix
# provably holds the text's first max_length tokens): a 60,000-character text costs the tokens the model reads, not
# its whole length (`Tokenizer.prefixes`).
PREFIX_CHARS_PER_TOKEN = 8


@dataclass(frozen=True)
class Encoded:
    """Token ids of one text (truncated to max_length) and whether truncation cut it."""

    ids: np.ndarray
    type_ids: np.ndarray
    truncated: bool


@dataclass(frozen=True)
class Batch:
    """A padded batch: model inputs plus the positions of its texts in the caller's list."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    index: np.ndarray
    truncated: np.ndarray

    def feeds(self) -> dict[str, np.ndarray]:
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "token_type_ids": self.token_type_ids,
        }


def check_texts(texts: Sequence[object]) -> None:
    """Raise TypeError naming the first position that does not hold a str."""
    if isinstance(texts, (str, bytes)):
        raise TypeError("texts must be a list of strings, not a single string")
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{position}] is {type(text).__name__}, expected str")


class Tokenizer:
    """Tokenize texts with a `tokenizer.json` (the `tokenizers` library), truncating at `max_length`."""

    def __init__(self, tokenizer_file: Path | str, max_length: int) -> None:
        try:
            tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # tokenizers raises a bare Exception on a corrupt file
            raise EdgeSentError(f"{tokenizer_file}: cannot load tokenizer ({exc})") from None
        if max_length < 8:
            raise EdgeSentError(f"max length {max_length} is too short (at least 8 tokens)")
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=max_length)
        self.tokenizer = tokenizer
        self.max_length = max_length
        pad = tokenizer.token_to_id("[PAD]")
        self.pad_id = 0 if pad is None else int(pad)
        framing = tokenizer.encode("", add_special_tokens=True).ids  # e.g. [CLS] [SEP]
        self.first_id = int(framing[0]) if framing else None
        self.last_id = int(framing[-1]) if len(framing) > 1 else None
        self.vocab_size = int(tokenizer.get_vocab_size())
        self.capacity = max_length - len(framing)  # tokens of the text itself that fit
        self._whole = tokenizers.Tokenizer.from_str(tokenizer.to_str())
        self._whole.no_truncation()

    def prefix(self, text: str) -> str:
        """The shortest prefix (first cut: PREFIX_CHARS_PER_TOKEN × max length characters, then doubled) whose
        tokenization holds the text's own first tokens up to max length, and more: then truncating the prefix
        gives exactly what truncating the text gives (ids and the truncated flag).

        Exact by construction: normalizing and pre-tokenizing are local to a word, so cutting the text changes at
        most the word it cuts, the last one of the prefix. The prefix is taken only when more tokens than fit
        come from words before that last one."""
        cut = PREFIX_CHARS_PER_TOKEN * self.max_length
        while cut < len(text):
            words = self._whole.encode(text[:cut], add_special_tokens=False).word_ids
            if len(words) > self.capacity:
                kept, last = words[self.capacity], words[-1]  # the first token truncation drops: from an earlier word
                if kept is not None and last is not None and kept < last:
                    return text[:cut]
            cut *= 2
        return text

    def prefixes(self, texts: Sequence[str]) -> list[str]:
        """`prefix` of every text (short texts as they are; every text whole when truncation was turned off)."""
        if self.tokenizer.truncation is None:
            return list(texts)
        bound = PREFIX_CHARS_PER_TOKEN * self.max_length
        return [self.prefix(text) if len(text) > bound else text for text in texts]

    def encode(self, texts: Sequence[str], prefixed: bool = False) -> list[Encoded]:
        """Token ids of each text (`prefixed`: the texts are already `prefixes`)."""
        check_texts(texts)
        texts = texts if prefixed else self.prefixes(texts)
        encoded: list[Encoded] = []
        for start in range(0, len(texts), ENCODE_CHUNK):
            chunk = self.tokenizer.encode_batch(list(texts[start : start + ENCODE_CHUNK]), add_special_tokens=True)
            encoded += [
                Encoded(np.asarray(e.ids, dtype=np.int64), np.asarray(e.type_ids, dtype=np.int64), bool(e.overflowing))
                for e in chunk
            ]
        return encoded

    def pad(self, encoded: Sequence[Encoded], index: np.ndarray) -> Batch:
        width = max(len(encoded[i].ids) for i in index)
        n = len(index)
        ids = np.full((n, width), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        types = np.zeros((n, width), dtype=np.int64)
        for row, i in enumerate(index):
            length = len(encoded[i].ids)
            ids[row, :length] = encoded[i].ids
            types[row, :length] = encoded[i].type_ids
            mask[row, :length] = 1
        truncated = np.asarray([encoded[i].truncated for i in index], dtype=bool)
        return Batch(ids, mask, types, np.asarray(index, dtype=np.int64), truncated)

    def batches(self, encoded: Sequence[Encoded], batch_size: int, order: np.ndarray | None = None) -> Iterator[Batch]:
        """Batches padded to their longest text, length-sorted unless `order` is given; `Batch.index`
        restores input order."""
        if batch_size < 1:
            raise EdgeSentError(f"batch size must be at least 1, got {batch_size}")
        if order is None:
            order = np.argsort([len(e.ids) for e in encoded], kind="stable")
        for start in range(0, len(order), batch_size):
            yield self.pad(encoded, order[start : start + batch_size])
