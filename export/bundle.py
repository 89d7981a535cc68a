"""Write a bundle atomically: build in a temporary directory beside the target, rename at the end.

Temporary directories are named `.edge-sent-tmp-<name>-<pid>-<random>`; the next export to the same
target removes those whose process is gone (a killed export leaves nothing half-written at the target).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge_sent.contract import TMP_PREFIX
from edge_sent.errors import EdgeSentError


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(target: Path) -> list[Path]:
    """Remove temporary directories of earlier exports to `target` whose process no longer runs."""
    removed = []
    for path in target.parent.glob(f"{TMP_PREFIX}{target.name}-*"):
        parts = path.name[len(TMP_PREFIX) + len(target.name) + 1 :].split("-")
        if parts and parts[0].isdigit() and not _pid_alive(int(parts[0])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextmanager
def staging_dir(target: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary directory; on success it becomes `target`, on failure it is removed."""
    target = target.absolute()
    if target.exists() and not force:
        raise EdgeSentError(f"{target} already exists (use --force to replace it)")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(target)
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{target.name}-{os.getpid()}-", dir=target.parent))
    except OSError as exc:
        raise EdgeSentError(f"cannot write to {target.parent}: {exc.strerror or exc}") from None
    try:
        yield tmp
        old = None
        if target.exists():
            old = target.parent / f"{TMP_PREFIX}{target.name}-{os.getpid()}-old"
            os.replace(target, old)
            if os.environ.get("EDGE_SENT_TEST_KILL_AT") == "between-renames":  # crash-safety test hook
                os.kill(os.getpid(), 9)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def hf_config(encoder_config: dict, labels: list[str], max_length: int, pooling: str) -> dict:
    """A Hugging Face style config.json: the encoder config plus the classification fields."""
    config = {k: v for k, v in encoder_config.items() if not k.startswith("_")}
    config.update(
        architectures=["BertForSequenceClassification"] if config.get("model_type") == "bert" else None,
        id2label={str(i): name for i, name in enumerate(labels)},
        label2id={name: i for i, name in enumerate(labels)},
        num_labels=len(labels),
        max_length=max_length,
        pooling=pooling,
        problem_type="single_label_classification",
    )
    return {k: v for k, v in config.items() if v is not None}


def tokenizer_config(encoder_tokenizer_config: dict, model_type: str | None, max_length: int) -> dict:
    """The bundle's `tokenizer_config.json`, which transformers.js needs beside `tokenizer.json`: the encoder's
    own (when it has one) with `model_max_length` set to the bundle's max length, so a JavaScript or Hugging Face
    tokenizer truncates where the bundle's runtime does."""
    config = {k: v for k, v in encoder_tokenizer_config.items() if k != "model_max_length"}
    if "tokenizer_class" not in config and model_type == "bert":
        config["tokenizer_class"] = "BertTokenizer"
    return config | {"model_max_length": max_length}
