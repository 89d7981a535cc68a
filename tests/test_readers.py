"""Input files: every format, ChnSentiCorp's 9,600 rows, and every malformed-input case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_sent.errors import EdgeSentError
from edge_sent.labeled import DataConfig, label_ids, label_set, load_labeled
from edge_sent.readers import read_records
from tests.conftest import DATA


def test_chnsenticorp_train_has_9600_rows_despite_quotes():
    data = load_labeled(DATA / "train.tsv")
    assert len(data) == 9600
    assert sum(1 for t in data.texts if '"' in t) > 0  # the quoting trap is real
    assert label_set(data) == ["0", "1"]
    assert np.bincount(label_ids(data, ["0", "1"])).tolist() == [4801, 4799]


def test_tsv_csv_jsonl_give_the_same_rows(tmp_path):
    rows = [("好", "pos"), ('他说"不错", 还行', "pos"), ("差劲", "neg")]
    (tmp_path / "d.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in rows), encoding="utf-8")
    (tmp_path / "d.csv").write_text(
        "label,text\n" + "".join(f'{lab},"{t.replace(chr(34), 2 * chr(34))}"\n' for t, lab in rows), encoding="utf-8"
    )
    (tmp_path / "d.jsonl").write_text(
        "".join(json.dumps({"text": t, "label": lab}, ensure_ascii=False) + "\n" for t, lab in rows), encoding="utf-8"
    )
    config = DataConfig(text_field="text", label_field="label")
    loaded = [load_labeled(tmp_path / f"d.{ext}", config) for ext in ("tsv", "csv", "jsonl")]
    for data in loaded:
        assert list(zip(data.texts, data.labels, strict=True)) == rows
    assert label_set(loaded[0]) == ["neg", "pos"]


def test_jsonl_integer_labels_and_more_than_two_classes(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"t": f"x{i}", "y": i % 3}) + "\n" for i in range(9)))
    data = load_labeled(path, DataConfig(text_field="t", label_field="y"))
    assert label_set(data) == ["0", "1", "2"]


def _error(path, config=DataConfig()) -> str:
    with pytest.raises(EdgeSentError) as info:
        load_labeled(path, config)
    return str(info.value)


def test_malformed_tsv_row_names_file_and_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("label\ttext_a\n1\tgood\n0\tbad\textra\n")
    assert _error(path) == f"{path}:3: malformed row: 3 fields, header has 2"


def test_malformed_jsonl_names_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text_a": "a", "label": 1}\n{"text_a": "b", "label": \n')
    assert f"{path}:2: malformed JSON" in _error(path)


def test_missing_column_lists_the_columns_found(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("review,stars\nok,1\n")
    assert _error(path) == f"{path}: no column 'text_a'; columns found: review, stars"


def test_invalid_utf8_names_line(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_bytes("label\ttext_a\n1\t好\n".encode() + b"0\t\xff\xfe bad\n")
    assert f"{path}:3: invalid UTF-8" in _error(path)


def test_empty_texts_are_skipped_and_counted(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("label\ttext_a\n1\tgood\n0\t   \n0\t\n0\tbad\n")
    data = load_labeled(path)
    assert data.texts == ["good", "bad"] and data.skipped_empty == 2


def test_empty_file_and_header_only_are_errors(tmp_path):
    for content in ("", "label\ttext_a\n"):
        path = tmp_path / "e.tsv"
        path.write_text(content)
        assert "no labelled rows" in _error(path)


def test_empty_label_is_an_error(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("label\ttext_a\n\tgood\n")
    assert f"{path}:2: empty label" in _error(path)


def test_single_class_training_set_is_rejected(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("label\ttext_a\n1\ta\n1\tb\n")
    with pytest.raises(EdgeSentError, match="single class"):
        label_set(load_labeled(path))


def test_unseen_label_is_named(tmp_path):
    train, dev = tmp_path / "t.tsv", tmp_path / "d.tsv"
    train.write_text("label\ttext_a\n0\ta\n1\tb\n")
    dev.write_text("label\ttext_a\n0\ta\n2\tc\n")
    with pytest.raises(EdgeSentError, match="label '2' does not occur in the training data"):
        label_ids(load_labeled(dev), label_set(load_labeled(train)))


def test_txt_reads_one_text_per_line(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("一\n\n二\r\n")
    assert [r.text for r in read_records(path)] == ["一", "", "二"]


def test_malformed_csv_rows_name_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text('label,text_a\n1,"fine, quoted"\n0,too,many\n')
    assert _error(path) == f"{path}:3: malformed row: 3 fields, header has 2"
    path.write_text('label,text_a\n1,ok\n0,"never closed\n')
    assert f"{path}:" in _error(path) and "malformed row" in _error(path)


def test_missing_jsonl_key_lists_the_keys_found(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text_a": "a", "label": 1}\n{"text": "b", "label": 0}\n')
    assert _error(path) == f"{path}:2: no key 'text_a'; keys found: text, label"
    path.write_text('{"text_a": "a", "label": 1}\n{"text_a": "b", "stars": 0}\n')
    assert _error(path) == f"{path}:2: no key 'label'; keys found: text_a, stars"
    path.write_text('{"text_a": 3, "label": 1}\n')
    assert _error(path) == f"{path}:1: 'text_a' must be a string, got int"


def test_emoji_become_unk_and_control_characters_are_cleaned():
    from edge_sent.assets import __file__ as assets
    from edge_sent.tokenization import Tokenizer

    encoder = Tokenizer(Path(assets).parent / "bert-base-chinese" / "tokenizer.json", 64)
    emoji, control = encoder.encode(["好😀👍", "a\x00b\tc\x07"])
    tokens = [encoder.tokenizer.id_to_token(int(i)) for i in emoji.ids]
    assert tokens == ["[CLS]", "好", "[UNK]", "[SEP]"]
    assert [encoder.tokenizer.id_to_token(int(i)) for i in control.ids] == ["[CLS]", "ab", "c", "[SEP]"]
