"""Training stage: cached features, head fitting, reproducibility, offline hub loading, bad input via the CLI."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from edge_sent.train import features as features_mod
from edge_sent.train.head import HeadConfig, fit_head, predict_head
from edge_sent.train.run import TrainConfig, train
from tests.conftest import DATA, assert_user_error, run_cli


def _small(tmp_path: Path, n: int = 60) -> tuple[Path, Path]:
    rows = (DATA / "train.tsv").read_text(encoding="utf-8").splitlines()
    train_p, dev_p = tmp_path / "train.tsv", tmp_path / "dev.tsv"
    train_p.write_text("\n".join(rows[: n + 1]) + "\n", encoding="utf-8")
    dev_p.write_text("\n".join([rows[0], *rows[n + 1 : n + 21]]) + "\n", encoding="utf-8")
    return train_p, dev_p


def test_head_separates_separable_features():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1000)
    x = rng.normal(size=(1000, 32)).astype(np.float32) + (y[:, None] * 2 - 1) * 0.8
    result = fit_head(x[:800], y[:800], 2, HeadConfig(epochs=20), x[800:], y[800:])
    accuracy = (predict_head(result.head, x[800:]).argmax(1) == y[800:]).mean()
    assert accuracy >= 0.95


def test_second_run_hits_the_cache_and_never_calls_the_encoder(tmp_path, monkeypatch):
    train_p, dev_p = _small(tmp_path)
    calls = {"n": 0, "texts": 0}
    real = features_mod.run_encoder

    def counting(model, batch):
        calls["n"] += 1
        calls["texts"] += len(batch.index)
        return real(model, batch)

    monkeypatch.setattr(features_mod, "run_encoder", counting)
    base = dict(train=train_p, dev=dev_p, encoder="random:tiny", cache_dir=tmp_path / "cache", progress=False)
    first = train(TrainConfig(out=tmp_path / "a", **base))
    n = first["n_distinct_texts"]
    assert first["feature_cache"]["encoded"] == n == calls["texts"] and first["feature_cache"]["reused"] == 0
    calls.update(n=0, texts=0)
    second = train(TrainConfig(out=tmp_path / "b", head=HeadConfig(epochs=3, lr=1e-3), **base))
    assert second["feature_cache"]["encoded"] == 0 and second["feature_cache"]["reused"] == n and calls["n"] == 0
    # corrupt (truncated) stored vectors are detected and recomputed, never used
    store = sqlite3.connect(second["feature_cache"]["store"])
    with store:
        store.execute("UPDATE vectors SET vector = substr(vector, 1, 100)")
    store.close()
    third = train(TrainConfig(out=tmp_path / "c", **base))
    assert third["feature_cache"] == first["feature_cache"] | {"rejected": n}
    assert calls["texts"] == n
    # and the recomputed vectors were stored again
    calls.update(n=0, texts=0)
    fourth = train(TrainConfig(out=tmp_path / "d", **base))
    assert fourth["feature_cache"]["reused"] == n and calls["n"] == 0


def test_identical_seeds_give_identical_weights(tmp_path):
    train_p, dev_p = _small(tmp_path)
    base = dict(train=train_p, dev=dev_p, encoder="random:tiny", cache_dir=tmp_path / "cache", progress=False)
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        train(TrainConfig(out=tmp_path / name, head=HeadConfig(seed=seed), **base))
    weights = {n: (tmp_path / n / "head.safetensors").read_bytes() for n in "abc"}
    assert weights["a"] == weights["b"]
    assert weights["a"] != weights["c"]


def test_report_fields_and_mean_pooling(tmp_path):
    train_p, dev_p = _small(tmp_path)
    report = train(
        TrainConfig(
            train=train_p,
            dev=dev_p,
            test=dev_p,
            out=tmp_path / "r",
            encoder="random:tiny",
            pooling="mean",
            max_length=16,
            no_cache=True,
            progress=False,
        )
    )
    for key in ("n_train", "n_dev", "feature_cache", "dev", "test", "timings", "truncated_texts"):
        assert key in report
    assert report["n_train"] == 60 and report["n_dev"] == 20
    assert report["truncated_texts"] > 0  # 16 tokens cut most reviews
    assert report["feature_cache"]["store"] is None and report["feature_cache"]["reused"] == 0  # --no-cache
    assert set(report["dev"]) >= {"accuracy", "macro_f1", "confusion"}
    assert set(report["timings"]) == {"features_s", "head_s"}
    meta = json.loads((tmp_path / "r" / "head.json").read_text())
    assert meta["pooling"] == "mean" and meta["max_length"] == 16 and meta["labels"] == ["0", "1"]


def _hub_cache(tmp_path: Path) -> Path:
    """Lay out a Hugging Face cache holding a tiny BERT, as `huggingface_hub` would have downloaded it."""
    from edge_sent.train.encoders import bundled_asset_dir, load_encoder

    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--edge-sent-test--tiny-bert"
    snapshot = repo / "snapshots" / revision
    load_encoder("random:tiny").model.save_pretrained(snapshot, safe_serialization=True)
    (snapshot / "tokenizer.json").write_bytes((bundled_asset_dir() / "tokenizer.json").read_bytes())
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    return tmp_path / "hub"


def test_loading_by_hub_id_offline(tmp_path):
    hub = _hub_cache(tmp_path)
    train_p, dev_p = _small(tmp_path, 40)
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub), "EDGE_SENT_CACHE": str(tmp_path / "fc")}
    proc = run_cli(
        "train",
        "--train",
        str(train_p),
        "--dev",
        str(dev_p),
        "--encoder",
        "edge-sent-test/tiny-bert",
        "--out",
        str(tmp_path / "run"),
        "--json",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "run" / "head.json").read_text())
    assert meta["encoder"]["revision"] == "0123456789abcdef0123456789abcdef01234567"
    assert meta["hidden_size"] == 64
    assert (tmp_path / "fc" / "features" / "store.sqlite3").is_file()  # EDGE_SENT_CACHE moves the store
    missing = run_cli(
        "train",
        "--train",
        str(train_p),
        "--encoder",
        "edge-sent-test/not-there",
        "--out",
        str(tmp_path / "run2"),
        env=env,
    )
    assert_user_error(missing, "cannot load encoder 'edge-sent-test/not-there'", "HF_HUB_OFFLINE")


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ("label\ttext_a\n1\ta\n1\tb\n", ["single class"]),
        ("stars\treview\n1\ta\n0\tb\n", ["no column 'text_a'", "columns found: stars, review"]),
        ("label\ttext_a\n1\ta\n0\tb\tc\n", [":3: malformed row"]),
    ],
)
def test_cli_bad_training_data(tmp_path, content, needles):
    path = tmp_path / "t.tsv"
    path.write_text(content)
    proc = run_cli("train", "--train", str(path), "--encoder", "random:tiny", "--out", str(tmp_path / "r"))
    assert_user_error(proc, *needles)


def test_cli_unseen_dev_label_and_unknown_encoder(tmp_path):
    train_p, _ = _small(tmp_path, 20)
    dev = tmp_path / "dev.tsv"
    dev.write_text("label\ttext_a\n0\ta\n7\tb\n")
    proc = run_cli(
        "train", "--train", str(train_p), "--dev", str(dev), "--encoder", "random:tiny", "--out", str(tmp_path / "r")
    )
    assert_user_error(proc, "label '7' does not occur in the training data")
    proc = run_cli("train", "--train", str(train_p), "--encoder", "random:huge", "--out", str(tmp_path / "r"))
    assert_user_error(proc, "unknown synthetic encoder 'random:huge'")
    proc = run_cli("train", "--train", str(tmp_path / "nope.tsv"), "--out", str(tmp_path / "r"))
    assert_user_error(proc, "nope.tsv: file not found")


def test_empty_training_texts_are_skipped_and_reported(tmp_path):
    train_p, dev_p = _small(tmp_path, 40)
    with open(train_p, "a", encoding="utf-8") as handle:
        handle.write("1\t   \n0\t\n")
    with open(dev_p, "a", encoding="utf-8") as handle:
        handle.write("1\t \n")
    proc = run_cli(
        "train", "--train", str(train_p), "--dev", str(dev_p), "--encoder", "random:tiny", "--max-length", "32",
        "--out", str(tmp_path / "r"), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["skipped_empty"] == {"train": 2, "dev": 1}
    assert report["n_train"] == 40 and report["n_dev"] == 20


def test_export_eval_label_absent_from_training_is_named(tiny_run, tmp_path):
    data = tmp_path / "eval.tsv"
    data.write_text("label\ttext_a\n0\t好\n5\t差\n", encoding="utf-8")
    proc = run_cli("export", str(tiny_run), "--out", str(tmp_path / "b"), "--eval", str(data))
    assert_user_error(proc, "label '5' does not occur in the run's labels")
    assert not (tmp_path / "b").exists()
