"""The feature store in process, without an encoder: keys and checksums, which rows count as missing, the SQLite
settings that make a killed or concurrent writer safe, one transaction per batch, and the user errors."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
import time
from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pytest

from edge_sent.errors import EdgeSentError
from edge_sent.train import feature_store as fs
from edge_sent.train.feature_store import STORE_FILE, FeatureStore, checksum, decode_row, text_key

DIM = 4


def _vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def _keys(n: int, prefix: str = "k") -> list[bytes]:
    return [hashlib.sha256(f"{prefix}{i}".encode()).digest() for i in range(n)]


def _row(db: sqlite3.Connection, key: bytes) -> tuple:
    return db.execute("SELECT key, dim, checksum, vector FROM vectors WHERE key = ?", (key,)).fetchone()


def test_the_constants() -> None:
    assert (fs.STORE_FILE, fs.SCHEMA_VERSION, fs.BUSY_TIMEOUT_S) == ("store.sqlite3", 1, 120.0)
    assert fs.LOOKUP_CHUNK == 500 and fs.CHECKSUM_BYTES == 8 and fs.DTYPE.str == "<f4"


def test_text_key_and_checksum_are_the_documented_digests() -> None:
    assert text_key(b"ns", "好") == hashlib.sha256(b"ns\x00" + "好".encode()).digest()
    assert text_key(b"a", "bc") != text_key(b"ab", "c")  # the separator keeps namespace and text apart
    assert text_key(b"a", "x") != text_key(b"b", "x")
    assert checksum(b"key", b"blob") == hashlib.sha256(b"keyblob").digest()[:8]
    assert len(checksum(b"k", b"")) == 8


def test_decode_row_rejects_every_kind_of_damage() -> None:
    vector = np.arange(DIM, dtype=np.float32)
    blob = vector.astype("<f4").tobytes()
    key = b"k" * 32
    good = decode_row(key, DIM, checksum(key, blob), blob, DIM)
    assert good is not None and good.dtype == np.float32 and np.array_equal(good, vector)
    good.setflags(write=True)  # a copy the caller may write, not a view of the row's bytes
    assert decode_row(key, DIM + 1, checksum(key, blob), blob, DIM) is None  # another dimension
    assert decode_row(key, DIM, checksum(key, blob), blob, DIM + 1) is None
    short = blob[:-4]
    assert decode_row(key, DIM, checksum(key, short), short, DIM) is None  # length off, checksum right
    assert decode_row(key, DIM, checksum(b"x" * 32, blob), blob, DIM) is None  # another row's checksum
    assert decode_row(key, DIM, checksum(key, blob)[:-1] + b"\x00", blob, DIM) is None
    assert decode_row("k", DIM, checksum(key, blob), blob, DIM) is None  # not bytes
    assert decode_row(key, DIM, "c", blob, DIM) is None
    assert decode_row(key, DIM, checksum(key, blob), memoryview(blob), DIM) is None


def test_a_new_store_is_created_with_wal_normal_sync_and_the_schema_version(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b"
    with FeatureStore(directory) as store:
        assert store.path == directory / STORE_FILE
        conn = store._conn
        assert conn.isolation_level is None  # autocommit: each batch's transaction is explicit
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 120_000
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        assert store.count() == 0 and store.verify() == (0, 0)
    with FeatureStore(directory, timeout_s=0.25) as store:
        assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 250


def test_a_newer_schema_is_refused_and_the_connection_closed(tmp_path: Path, monkeypatch) -> None:
    db = sqlite3.connect(tmp_path / STORE_FILE)
    db.execute("PRAGMA user_version=2")
    db.close()
    opened: list[sqlite3.Connection] = []
    real_connect = sqlite3.connect

    def connect(*args, **kw):
        opened.append(real_connect(*args, **kw))
        return opened[-1]

    monkeypatch.setattr(fs.sqlite3, "connect", connect)
    where = re.escape(str(tmp_path / STORE_FILE))
    with pytest.raises(EdgeSentError, match=rf"^feature store {where}: schema version 2 is newer than this edge-sent$"):
        FeatureStore(tmp_path)
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        opened[0].execute("SELECT 1")
    # the current version opens, and an older one is brought up to it
    db = real_connect(tmp_path / STORE_FILE)
    db.execute("PRAGMA user_version=0")
    db.close()
    with FeatureStore(tmp_path) as store:
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == 1


def test_the_context_manager_closes(tmp_path: Path) -> None:
    with FeatureStore(tmp_path) as store:
        pass
    with pytest.raises(sqlite3.ProgrammingError):
        store._conn.execute("SELECT 1")


def test_put_then_get_by_position_across_lookup_chunks(tmp_path: Path) -> None:
    n = fs.LOOKUP_CHUNK * 2 + 3
    keys, vectors = _keys(n), _vectors(n)
    with FeatureStore(tmp_path) as store:
        store.put(keys[::2], vectors[::2])  # every other row stored
        assert store.count() == len(keys[::2])
        ask = [*keys[1::2], *keys[::2]]  # the missing ones first, then the stored ones
        lookup = store.get(ask, DIM)
        assert lookup.rejected == 0
        first_stored = len(keys[1::2])
        assert sorted(lookup.found) == list(range(first_stored, len(ask)))
        for position, vector in lookup.found.items():
            np.testing.assert_array_equal(vector, vectors[::2][position - first_stored])
        assert store.get([], DIM).found == {}
        with pytest.raises(FrozenInstanceError):
            lookup.rejected = 1


def test_get_counts_rows_rejected_by_their_check(tmp_path: Path) -> None:
    keys, vectors = _keys(3), _vectors(3)
    with FeatureStore(tmp_path) as store:
        store.put(keys, vectors)
        lookup = store.get(keys, DIM + 1)  # every row has another dimension
        assert lookup.found == {} and lookup.rejected == 3
        store._conn.execute("UPDATE vectors SET checksum = ? WHERE key = ?", (b"\x00" * 8, keys[1]))
        lookup = store.get(keys, DIM)
        assert sorted(lookup.found) == [0, 2] and lookup.rejected == 1
        assert store.verify() == (2, 1)
        store._conn.execute("UPDATE vectors SET dim = ? WHERE key = ?", (b"4", keys[0]))  # bytes, not a number
        assert store.verify() == (1, 2)


def test_put_replaces_and_stores_float32_with_its_checksum(tmp_path: Path) -> None:
    key = _keys(1)
    with FeatureStore(tmp_path) as store:
        store.put(key, np.ones((1, DIM), dtype=np.float64))  # stored as little-endian float32 whatever it was given
        store.put(key, np.full((1, DIM), 2.0, dtype=np.float32))  # a second writer of the same text
        assert store.count() == 1
        k, dim, check, blob = _row(store._conn, key[0])
        assert dim == DIM and blob == np.full(DIM, 2.0, dtype="<f4").tobytes() and check == checksum(k, blob)
        np.testing.assert_array_equal(store.get(key, DIM).found[0], np.full(DIM, 2.0))
        assert not store._conn.in_transaction


def test_put_refuses_keys_and_vectors_of_different_lengths(tmp_path: Path) -> None:
    with FeatureStore(tmp_path) as store, pytest.raises(ValueError, match=r"^2 keys for 3 vectors$"):
        store.put(_keys(2), _vectors(3))


class _FailsMidway:
    """A connection whose batch insert writes its first row and then fails (an I/O error inside the transaction)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __getattr__(self, name: str):
        return getattr(self.conn, name)

    def executemany(self, sql: str, rows: list) -> None:
        self.conn.executemany(sql, rows[:1])
        raise sqlite3.OperationalError("disk I/O error")


def test_a_batch_that_fails_midway_leaves_none_of_its_rows(tmp_path: Path) -> None:
    keys, vectors = _keys(3), _vectors(3)
    with FeatureStore(tmp_path) as store:
        store.put(keys[:1], vectors[:1])
        real = store._conn
        store._conn = _FailsMidway(real)
        with pytest.raises(EdgeSentError, match=rf"^feature store {tmp_path / STORE_FILE}: disk I/O error \("):
            store.put(_keys(2, "new"), vectors[:2])
        store._conn = real
        assert not real.in_transaction
        assert store.count() == 1 and store.verify() == (1, 0)
        store.put(keys, vectors)  # the store still takes the next batch
        assert store.count() == 3


def test_a_writer_waits_for_the_lock_up_to_its_timeout(tmp_path: Path) -> None:
    keys, vectors = _keys(2), _vectors(2)
    with FeatureStore(tmp_path) as holder, FeatureStore(tmp_path, timeout_s=0.05) as impatient:
        holder._conn.execute("BEGIN IMMEDIATE")  # another run is writing its batch
        with pytest.raises(EdgeSentError, match=r"database is locked \(--cache-dir elsewhere, or --no-cache\)$"):
            impatient.put(keys, vectors)
        assert not impatient._conn.in_transaction
        waited: list[float] = []

        def patient_writer() -> None:  # another run, with the default busy timeout
            with FeatureStore(tmp_path) as patient:
                started = time.monotonic()
                patient.put(keys, vectors)  # waits for the other writer, then commits
                waited.append(time.monotonic() - started)

        writer = threading.Thread(target=patient_writer)
        writer.start()
        time.sleep(0.3)
        holder._conn.execute("COMMIT")
        writer.join(timeout=30)
        assert waited and holder.count() == 2  # it waited for the lock instead of failing
        # readers are never blocked by a writer (WAL)
        holder._conn.execute("BEGIN IMMEDIATE")
        assert impatient.get(keys, DIM).rejected == 0 and len(impatient.get(keys, DIM).found) == 2
        holder._conn.execute("ROLLBACK")


def test_errors_become_one_line_user_errors_naming_the_store(tmp_path: Path) -> None:
    path = tmp_path / STORE_FILE
    cases = [
        (sqlite3.OperationalError("locked"), f"feature store {path}: locked (--cache-dir elsewhere, or --no-cache)"),
        (
            sqlite3.DatabaseError("malformed"),
            f"feature store {path}: malformed; delete it (it holds only recomputable vectors)",
        ),
        (sqlite3.InterfaceError("odd"), f"feature store {path}: odd"),
        (PermissionError("denied"), f"feature store {path}: denied"),
    ]
    for raised, message in cases:
        with pytest.raises(EdgeSentError) as caught, fs._errors(path):
            raise raised
        assert str(caught.value) == message
        assert caught.value.__suppress_context__ and caught.value.__cause__ is None
    with pytest.raises(ValueError), fs._errors(path):
        raise ValueError("not the store's")


def test_a_directory_that_cannot_be_created_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(EdgeSentError, match=r"^feature store .*file/sub/store.sqlite3: "):
        FeatureStore(tmp_path / "file" / "sub")
    with pytest.raises(EdgeSentError, match="file is not a database; delete it"):
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / STORE_FILE).write_bytes(b"not a database" * 100)
        FeatureStore(tmp_path / "bad")
