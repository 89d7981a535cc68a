"""Writing a file whole or not at all: the one way edge-sent replaces a file that a reader may open meanwhile."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from edge_sent.errors import EdgeSentError


def atomic_write(path: Path, text: str, rerun: str = "rerun the same command") -> None:
    """Write `path` whole or not at all: a temporary file beside it, fsynced, renamed over it. On an OS error (a full
    disk, a read-only or missing folder) the temporary file is removed and the error is one line that says nothing
    was kept and ends in `rerun` (what running again will do)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):  # (it may never have been made: a missing folder)
            tmp.unlink(missing_ok=True)
        raise EdgeSentError(
            f"cannot write {path}: {exc.strerror or exc}; nothing of it was kept: free space (or fix the folder) and "
            f"{rerun}"
        ) from None
