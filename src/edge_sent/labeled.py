"""Labelled datasets for training and evaluation: load, skip empty texts, map labels to ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_sent.errors import EdgeSentError
from edge_sent.readers import read_records


@dataclass(frozen=True)
class DataConfig:
    text_field: str = "text_a"
    label_field: str = "label"
    fmt: str | None = None


@dataclass(frozen=True)
class LabeledData:
    path: str
    texts: list[str]
    labels: list[str]
    skipped_empty: int  # rows whose text is empty or whitespace: skipped and reported

    def __len__(self) -> int:
        return len(self.texts)


def load_labeled(path: Path | str, config: DataConfig = DataConfig()) -> LabeledData:
    texts: list[str] = []
    labels: list[str] = []
    skipped = 0
    for record in read_records(path, text_field=config.text_field, label_field=config.label_field, fmt=config.fmt):
        if not record.text.strip():
            skipped += 1
            continue
        texts.append(record.text)
        labels.append(str(record.label))
    if not texts:
        raise EdgeSentError(f"{path}: no labelled rows with text")
    return LabeledData(str(path), texts, labels, skipped)


def label_set(train: LabeledData) -> list[str]:
    """The label names, from the training data: numeric ids sort numerically, names alphabetically."""
    names = set(train.labels)
    if len(names) < 2:
        raise EdgeSentError(
            f"{train.path}: the training set has a single class ({next(iter(names))!r}); need at least 2 labels"
        )
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def label_ids(
    data: LabeledData,
    labels: list[str],
    aliases: Sequence[Sequence[str]] = (),
    known_from: str = "the training data",
) -> np.ndarray:
    """Map the data's labels to ids by name, or by an alias list that names the same positions.

    A real label name always maps to its own position: an alias only applies to strings that are not
    label names (bundle labels "1", "2" with position aliases "0", "1": "1" is label 0, not position 1).
    """
    index: dict[str, int] = {}
    for alias in aliases:
        index |= {name: i for i, name in enumerate(alias)}
    index |= {name: i for i, name in enumerate(labels)}
    unseen = sorted(set(data.labels) - set(index))
    if unseen:
        raise EdgeSentError(
            f"{data.path}: label {unseen[0]!r} does not occur in {known_from} (labels: {', '.join(labels)})"
        )
    return np.asarray([index[name] for name in data.labels], dtype=np.int64)
