"""The per-text feature store: only missing texts are encoded (counted at the `run_encoder` seam), corrupt
rows are recomputed, the namespace separates encoder/tokenizer/max length/pooling, concurrent writers and
a SIGKILLed writer leave a store whose rows all verify."""

from __future__ import annotations

import dataclasses
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from edge_sent.errors import EdgeSentError
from edge_sent.labeled import DataConfig, load_labeled
from edge_sent.train import features as features_mod
from edge_sent.train.encoders import LoadedEncoder, load_encoder
from edge_sent.train.feature_store import STORE_FILE, FeatureStore
from edge_sent.train.head import HeadConfig
from edge_sent.train.run import TrainConfig, train
from tests.conftest import DATA, ROOT, run_cli

ML = 32  # max length: short, the tests are about the store, not the encoder


@dataclasses.dataclass
class Counter:
    calls: int = 0
    texts: int = 0  # texts passed to the encoder: the sum of the batch sizes

    def reset(self) -> None:
        self.calls = self.texts = 0


@pytest.fixture
def encoder_runs(monkeypatch) -> Counter:
    counter = Counter()
    real = features_mod.run_encoder

    def counting(model, batch):
        counter.calls += 1
        counter.texts += len(batch.index)
        return real(model, batch)

    monkeypatch.setattr(features_mod, "run_encoder", counting)
    return counter


@pytest.fixture(scope="module")
def tiny() -> LoadedEncoder:
    return load_encoder("random:tiny")


def _texts(split: str) -> list[str]:
    return load_labeled(DATA / f"{split}.tsv", DataConfig()).texts


def _extract(encoder: LoadedEncoder, texts: list[str], cache: Path | None, **options: object) -> features_mod.Features:
    settings: dict = {"max_length": ML, "pooling": "cls", "progress": False} | options
    return features_mod.extract_features(encoder, texts, cache_dir=cache, **settings)


def _write_tsv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(["label\ttext_a", *rows]) + "\n", encoding="utf-8")
    return path


def test_adding_100_texts_to_the_full_training_set_encodes_exactly_100(tmp_path, encoder_runs):
    """The issue's goal, at full size: ChnSentiCorp's 9,600 training rows, then the same plus 100 dev rows."""
    rows = (DATA / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    train_texts = {row.split("\t", 1)[1] for row in rows}
    dev_rows = (DATA / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    new = [row for row in dev_rows if row.split("\t", 1)[1] not in train_texts][:100]
    assert len(rows) == 9600 and len(new) == 100
    base = dict(encoder="random:tiny", max_length=ML, cache_dir=tmp_path / "cache", progress=False)
    head = HeadConfig(epochs=1)
    first = train(TrainConfig(train=_write_tsv(tmp_path / "a.tsv", rows), out=tmp_path / "a", head=head, **base))
    assert first["feature_cache"]["encoded"] == first["n_distinct_texts"] == encoder_runs.texts
    union = _write_tsv(tmp_path / "b.tsv", rows + new)
    encoder_runs.reset()
    second = train(TrainConfig(train=union, out=tmp_path / "b", head=head, **base))
    assert encoder_runs.texts == 100 and second["feature_cache"]["encoded"] == 100
    assert second["feature_cache"]["reused"] == first["n_distinct_texts"]
    encoder_runs.reset()
    third = train(TrainConfig(train=union, out=tmp_path / "c", head=head, **base))
    assert encoder_runs.calls == 0 and third["feature_cache"]["encoded"] == 0
    assert third["feature_cache"]["reused"] == second["n_distinct_texts"]


def test_limit_change_and_other_splits_reuse_the_store(tmp_path, encoder_runs):
    train_p = _write_tsv(tmp_path / "train.tsv", (DATA / "train.tsv").read_text(encoding="utf-8").splitlines()[1:81])
    dev_p = _write_tsv(tmp_path / "dev.tsv", (DATA / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:41])
    base = dict(dev=dev_p, encoder="random:tiny", max_length=ML, cache_dir=tmp_path / "cache", progress=False)

    def used(limit: int) -> set[str]:  # the texts a run with --limit uses: N train rows, N // 4 dev rows
        return set(load_labeled(train_p).texts[:limit]) | set(load_labeled(dev_p).texts[: limit // 4])

    first = train(TrainConfig(train=train_p, out=tmp_path / "a", limit=40, **base))
    assert first["feature_cache"]["encoded"] == len(used(40)) == encoder_runs.texts
    encoder_runs.reset()
    second = train(TrainConfig(train=train_p, out=tmp_path / "b", limit=80, **base))
    expected = len(used(80) - used(40))
    assert 0 < expected < len(used(80))
    assert second["feature_cache"]["encoded"] == expected == encoder_runs.texts
    assert second["feature_cache"]["reused"] == len(used(80)) - expected
    encoder_runs.reset()
    # another split as the training set, other head settings: everything is in the store already
    swapped = dict(base, dev=train_p)
    third = train(TrainConfig(train=dev_p, out=tmp_path / "c", limit=20, head=HeadConfig(lr=1e-3), **swapped))
    assert third["feature_cache"]["encoded"] == 0 and encoder_runs.calls == 0


def _flip(blob: bytes) -> bytes:
    middle = len(blob) // 2
    return blob[:middle] + bytes([blob[middle] ^ 0x01]) + blob[middle + 1 :]


@pytest.mark.parametrize(
    ("column", "damage"),
    [
        ("vector", _flip),  # a flipped bit in the vector
        ("vector", lambda blob: blob[:-4]),  # a truncated vector
        ("checksum", _flip),  # a damaged checksum
        ("dim", lambda dim: dim + 1),  # a wrong dimension
    ],
)
def test_corrupted_rows_are_recomputed_never_used(tmp_path, tiny, encoder_runs, column: str, damage: Callable):
    texts = _texts("dev")[:60]
    cache = tmp_path / "cache"
    first = _extract(tiny, texts, cache)
    db = sqlite3.connect(cache / STORE_FILE)
    rows = db.execute(f"SELECT key, {column} FROM vectors ORDER BY key LIMIT 3").fetchall()
    with db:
        db.executemany(f"UPDATE vectors SET {column} = ? WHERE key = ?", [(damage(value), k) for k, value in rows])
    db.close()
    encoder_runs.reset()
    second = _extract(tiny, texts, cache)
    assert (second.encoded, second.reused, second.rejected) == (3, len(first.texts) - 3, 3)
    assert encoder_runs.texts == 3
    assert np.array_equal(second.vectors, first.vectors)
    with FeatureStore(cache) as store:
        assert store.verify() == (len(first.texts), 0)  # the bad rows were overwritten


def _with_tokenizer_copy(encoder: LoadedEncoder, tmp_path: Path) -> LoadedEncoder:
    """The same vocabulary in a file with another hash (one more trailing newline)."""
    copy = tmp_path / "tokenizer.json"
    copy.write_bytes(Path(encoder.tokenizer_file).read_bytes() + b"\n")
    return dataclasses.replace(encoder, tokenizer_file=copy)


@pytest.mark.parametrize(
    ("change", "options"),
    [
        ("max_length", {"max_length": ML + 16}),
        ("pooling", {"pooling": "mean"}),
        ("identity", {}),
        ("revision", {}),
        ("tokenizer", {}),
    ],
)
def test_another_namespace_does_not_reuse(tmp_path, tiny, encoder_runs, change: str, options: dict):
    texts = _texts("dev")[:40]
    cache = tmp_path / "cache"
    first = _extract(tiny, texts, cache)
    other = {
        "identity": dataclasses.replace(tiny, identity="another-" + tiny.identity),
        "revision": dataclasses.replace(tiny, revision="0" * 40),
        "tokenizer": _with_tokenizer_copy(tiny, tmp_path),
    }.get(change, tiny)
    encoder_runs.reset()
    second = _extract(other, texts, cache, **options)
    assert second.encoded == len(first.texts) == encoder_runs.texts and second.reused == 0
    encoder_runs.reset()
    assert _extract(tiny, texts, cache).encoded == 0 and encoder_runs.calls == 0  # the first namespace is intact


def test_two_threads_writing_one_store(tmp_path, tiny):
    """Overlapping texts, one text per encoder batch (a commit each): no lock error, every row verifies and
    equals a fresh computation."""
    texts = _texts("dev")[:240]
    cache = tmp_path / "cache"
    start = threading.Barrier(2)

    def run(part: list[str]) -> features_mod.Features:
        start.wait()
        return _extract(tiny, part, cache, batch_size=1)

    with ThreadPoolExecutor(2) as pool:
        results = [f.result() for f in [pool.submit(run, texts[:160]), pool.submit(run, texts[80:])]]
    fresh = _extract(tiny, texts, None)
    with FeatureStore(cache) as store:
        assert store.verify() == (len(fresh.texts), 0)
    stored = _extract(tiny, texts, cache)
    assert stored.encoded == 0
    np.testing.assert_allclose(stored.vectors, fresh.vectors, rtol=1e-5, atol=1e-5)
    for result in results:
        np.testing.assert_allclose(result.vectors, fresh.rows(result.texts), rtol=1e-5, atol=1e-5)


def test_connections_opening_a_new_store_at_once_all_succeed(tmp_path):
    """Four threads create the same store at the same moment, 60 times: SQLite answers "database is locked"
    at once (no busy wait) to some of them while another switches it to WAL or creates the table; the store
    retries its setup instead of failing (before the retry, about one round in ten failed)."""
    failures: list[str] = []

    def open_store(directory: Path, start: threading.Barrier) -> None:
        start.wait()
        try:
            with FeatureStore(directory) as store:
                store.count()
        except EdgeSentError as exc:
            failures.append(str(exc))

    for round_ in range(60):
        start = threading.Barrier(4)
        threads = [threading.Thread(target=open_store, args=(tmp_path / str(round_), start)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []


WRITER = """
import sys
import numpy as np
from pathlib import Path
from edge_sent.train.feature_store import FeatureStore

store = FeatureStore(Path(sys.argv[1]))
batch = int(sys.argv[2])
done = store.count() // batch
vectors = np.random.default_rng(done).normal(size=(batch, 768)).astype(np.float32)
while True:  # batches of `batch` rows, one transaction each, until killed
    keys = [f"{done}:{i}".encode().ljust(32, b".") for i in range(batch)]
    store.put(keys, vectors)
    done += 1
    print(done, flush=True)
"""


def test_sigkill_while_writing_leaves_only_whole_verified_batches(tmp_path):
    cache, batch = tmp_path / "cache", 250
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER))
    for moment in (0.05, 0.13, 0.31):  # killed at different points inside a transaction
        proc = subprocess.Popen(
            [sys.executable, str(script), str(cache), str(batch)], stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # one batch committed: the writer is in its loop
        time.sleep(moment)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        proc.stdout.close()
        db = sqlite3.connect(cache / STORE_FILE)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
        with FeatureStore(cache) as store:
            good, bad = store.verify()
        assert bad == 0 and good > 0 and good % batch == 0, (good, bad)


def test_cli_cache_dir_table_and_no_cache(tmp_path):
    train_p = _write_tsv(tmp_path / "train.tsv", (DATA / "train.tsv").read_text(encoding="utf-8").splitlines()[1:31])
    base = dict(train=train_p, encoder="random:tiny", max_length=ML, progress=False)
    off = train(TrainConfig(out=tmp_path / "a", cache_dir=tmp_path / "off", no_cache=True, **base))
    assert off["feature_cache"] == {"encoded": 30, "reused": 0, "rejected": 0, "store": None}
    assert not (tmp_path / "off").exists()
    cache = tmp_path / "cache"
    first = train(TrainConfig(out=tmp_path / "b", cache_dir=cache, **base))
    assert first["feature_cache"] == {"encoded": 30, "reused": 0, "rejected": 0, "store": str(cache / STORE_FILE)}
    args = ["--train", str(train_p), "--encoder", "random:tiny", "--max-length", str(ML), "--cache-dir", str(cache)]
    second = run_cli("train", *args, "--out", str(tmp_path / "c"))
    assert second.returncode == 0, second.stderr
    assert "0 encoded, 30 reused" in second.stdout, second.stdout


def test_a_store_that_is_not_a_database_is_a_user_error(tmp_path):
    (tmp_path / STORE_FILE).write_bytes(b"not a database" * 100)
    with pytest.raises(EdgeSentError, match="file is not a database; delete it"):
        FeatureStore(tmp_path)


def test_a_full_disk_reports_itself_and_leaves_no_partial_batch(tmp_path):
    """SQLITE_FULL: SQLite has already rolled the transaction back, so the error must be "disk is full", not the
    "cannot rollback - no transaction is active" of a second ROLLBACK; nothing of the batch is stored."""
    vectors = np.random.default_rng(0).normal(size=(200, 768)).astype(np.float32)
    keys = [f"{i}".encode().ljust(32, b".") for i in range(200)]
    with FeatureStore(tmp_path) as store:
        store.put(keys[:2], vectors[:2])
        pages = int(store._conn.execute("PRAGMA page_count").fetchone()[0])
        store._conn.execute(f"PRAGMA max_page_count={pages + 8}")  # room for a few rows, not for 198
        with pytest.raises(EdgeSentError, match="database or disk is full") as failure:
            store.put(keys[2:], vectors[2:])
        assert "rollback" not in str(failure.value)
        assert store.count() == 2 and store.verify() == (2, 0)
        store._conn.execute("PRAGMA max_page_count=1073741823")  # space freed: the rerun stores the batch once
        store.put(keys[2:], vectors[2:])
        assert store.count() == 200 and store.verify() == (200, 0)
