"""Where edge-sent keeps what it measured or computed for this user: the host profiles and the feature store.

`$EDGE_SENT_CACHE` when set, else the platform's user cache folder (`~/.cache/edge-sent` on Linux, via
platformdirs, a base dependency: the torch-free runtime reads this on its first load).
"""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir

CACHE_ENV = "EDGE_SENT_CACHE"


def cache_root() -> Path:
    """The cache root for this user (it may not exist yet, and may not be writable)."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    return Path(user_cache_dir("edge-sent"))
