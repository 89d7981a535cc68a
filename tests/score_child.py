"""`edge-sent score` with a fault planted at the N-th shard rename (the moment a kill or a second run matters):

python tests/score_child.py kill N FLAG -- SCORE ARGS   SIGKILL itself there: the shard is written, not renamed
python tests/score_child.py pause N FLAG -- SCORE ARGS  write FLAG, then wait until FLAG.go exists
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

mode, target, flag = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
real_replace = os.replace
renames = 0


def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    global renames
    if Path(dst).name.startswith("part-"):
        if renames == target:
            if mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            flag.write_text("paused")
            deadline = time.monotonic() + 120
            while not flag.with_name(flag.name + ".go").exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        renames += 1
    real_replace(src, dst)


os.replace = replace  # type: ignore[assignment]

from edge_sent.cli import main  # noqa: E402

sys.argv = ["edge-sent", "score", *sys.argv[sys.argv.index("--") + 1 :]]
main()
