"""A per-text feature store: one float32 vector per (namespace, text), in one SQLite database.

Why SQLite (from the standard library) rather than a file per entry or append-only shards with an index:

* **one file** holds millions of vectors (no million-file directories, no inode or listing costs);
* **atomic transactions**: a batch of vectors is written in one transaction, so a run killed at any
  moment (SIGKILL included) leaves either the whole batch or none of it — never a torn entry; the
  write-ahead log (WAL mode) is rolled back or replayed by the next open;
* **concurrency**: in WAL mode readers never block and are never blocked; writers take the write lock
  with ``BEGIN IMMEDIATE`` and wait for each other (busy timeout), so two training runs can share a
  store; ``INSERT OR REPLACE`` makes a text encoded by both runs simply end up with one of the two
  (equal) vectors;
* **lookup by key** through the primary-key index, whatever the size of the store.

Each row holds the key (sha256 of the namespace digest and the text), the dimension, the vector's bytes
(little-endian float32) and a checksum (the first 8 bytes of sha256 over key + bytes). A row whose length,
dimension or checksum does not match is treated as missing: the caller recomputes it and overwrites it,
it is never used. ``synchronous=NORMAL`` in WAL mode keeps the database consistent after a crash of the
process or of the machine; after a power loss the last committed batches may be lost (and recomputed).

This module is torch-free (numpy and sqlite3 only).
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from edge_sent.errors import EdgeSentError

STORE_FILE = "store.sqlite3"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 120.0
SETUP_RETRY_FIRST_S = 0.01  # first pause when another connection is creating the store; doubles
SETUP_RETRY_MAX_S = 0.5
LOOKUP_CHUNK = 500  # keys per SELECT ... IN (...), below SQLite's bound-parameter limit
CHECKSUM_BYTES = 8
DTYPE = np.dtype("<f4")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    key BLOB PRIMARY KEY,
    dim INTEGER NOT NULL,
    checksum BLOB NOT NULL,
    vector BLOB NOT NULL
)
"""


def text_key(namespace: bytes, text: str) -> bytes:
    """The row key of `text` under `namespace` (a digest of encoder, tokenizer, max length and pooling)."""
    return hashlib.sha256(namespace + b"\x00" + text.encode("utf-8")).digest()


def checksum(key: bytes, blob: bytes) -> bytes:
    """Covers the key too, so a vector copied onto another text's row fails its check."""
    return hashlib.sha256(key + blob).digest()[:CHECKSUM_BYTES]


def decode_row(key: object, dim: object, check: object, blob: object, expected_dim: int) -> np.ndarray | None:
    """The row's vector, or None when any of type, dimension, length or checksum is off."""
    if not (isinstance(key, bytes) and isinstance(check, bytes) and isinstance(blob, bytes)) or dim != expected_dim:
        return None
    if len(blob) != expected_dim * DTYPE.itemsize or checksum(key, blob) != check:
        return None
    return np.frombuffer(blob, dtype=DTYPE).astype(np.float32)


@dataclass(frozen=True)
class Lookup:
    """What the store holds for a list of keys: valid vectors by position, and rows rejected by their check."""

    found: dict[int, np.ndarray]
    rejected: int


@contextmanager
def _errors(path: Path) -> Iterator[None]:
    """sqlite3 and OS errors as one-line user errors naming the store."""
    try:
        yield
    except sqlite3.OperationalError as exc:  # locked past the busy timeout, read-only, disk full
        raise EdgeSentError(f"feature store {path}: {exc} (--cache-dir elsewhere, or --no-cache)") from None
    except sqlite3.DatabaseError as exc:  # not a database, malformed
        raise EdgeSentError(f"feature store {path}: {exc}; delete it (it holds only recomputable vectors)") from None
    except (sqlite3.Error, OSError) as exc:
        raise EdgeSentError(f"feature store {path}: {exc}") from None


class FeatureStore:
    """The feature store in `directory` (created if absent); use as a context manager or call close()."""

    def __init__(self, directory: Path, timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(directory) / STORE_FILE
        with _errors(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # autocommit mode: transactions are opened explicitly (BEGIN IMMEDIATE) around each batch
            self._conn = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None)
            try:
                self._setup_when_free(timeout_s)
            except BaseException:
                self._conn.close()
                raise

    def _setup_when_free(self, timeout_s: float) -> None:
        """_setup, retried while another connection creates the same store: switching to WAL and creating the
        table return "database is locked" at once (SQLite skips the busy handler where waiting could deadlock)."""
        deadline = time.monotonic() + timeout_s
        pause = SETUP_RETRY_FIRST_S
        while True:
            try:
                self._setup()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, SETUP_RETRY_MAX_S)

    def _setup(self) -> None:
        conn = self._conn
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise EdgeSentError(f"feature store {self.path}: schema version {version} is newer than this edge-sent")
        conn.execute(_SCHEMA)
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def get(self, keys: Sequence[bytes], dim: int) -> Lookup:
        """Valid vectors for `keys` (by position in `keys`); keys must be distinct."""
        position = {key: i for i, key in enumerate(keys)}
        found: dict[int, np.ndarray] = {}
        rejected = 0
        with _errors(self.path):
            for start in range(0, len(keys), LOOKUP_CHUNK):
                chunk = list(keys[start : start + LOOKUP_CHUNK])
                marks = ",".join("?" * len(chunk))
                query = f"SELECT key, dim, checksum, vector FROM vectors WHERE key IN ({marks})"
                for key, row_dim, check, blob in self._conn.execute(query, chunk):
                    vector = decode_row(key, row_dim, check, blob, dim)
                    if vector is None:
                        rejected += 1
                    else:
                        found[position[key]] = vector
        return Lookup(found, rejected)

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Write one batch of vectors in ONE transaction: all rows are stored, or (killed, failed) none."""
        if len(keys) != len(vectors):
            raise ValueError(f"{len(keys)} keys for {len(vectors)} vectors")
        rows = []
        for key, vector in zip(keys, vectors, strict=True):
            blob = np.ascontiguousarray(vector, dtype=DTYPE).tobytes()
            rows.append((key, int(vector.shape[0]), checksum(key, blob), blob))
        with _errors(self.path):
            self._conn.execute("BEGIN IMMEDIATE")  # take the write lock now: waits (busy timeout), never deadlocks
            try:
                self._conn.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)", rows)
                self._conn.execute("COMMIT")
            except BaseException:
                # SQLite has already rolled back on some errors (SQLITE_FULL, SQLITE_IOERR): a second ROLLBACK would
                # raise "no transaction is active" and hide the real error
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def count(self) -> int:
        with _errors(self.path):
            return int(self._conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def verify(self) -> tuple[int, int]:
        """(rows that pass their check, rows that fail it), over the whole store."""
        good = bad = 0
        with _errors(self.path):
            for key, dim, check, blob in self._conn.execute("SELECT key, dim, checksum, vector FROM vectors"):
                ok = isinstance(dim, int) and decode_row(key, dim, check, blob, dim) is not None
                good, bad = (good + 1, bad) if ok else (good, bad + 1)
        return good, bad
