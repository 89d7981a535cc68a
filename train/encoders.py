"""Load a frozen encoder from a hub id, a local directory or a synthetic `random:` spec."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from edge_sent.errors import EdgeSentError

RANDOM_SPECS = ("random:bert-base-chinese", "random:tiny")
RANDOM_SEED = 0
TINY = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 256}
POOLINGS = ("cls", "mean")


@dataclass(frozen=True)
class LoadedEncoder:
    spec: str
    model: torch.nn.Module
    tokenizer_file: Path
    config: dict[str, Any]  # the Hugging Face config of the encoder
    identity: str  # sha256 over the weights (random and local) or hub id@revision plus weights hash
    revision: str | None

    @property
    def hidden_size(self) -> int:
        return int(self.config["hidden_size"])

    @property
    def max_positions(self) -> int:
        return int(self.config.get("max_position_embeddings", 512))

    @property
    def is_random(self) -> bool:
        return self.spec.startswith("random:")


def bundled_asset_dir() -> Path:
    return Path(str(resources.files("edge_sent") / "assets" / "bert-base-chinese"))


def weights_sha256(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def _random_encoder(spec: str) -> LoadedEncoder:
    from transformers import BertConfig, BertModel

    assets = bundled_asset_dir()
    values = json.loads((assets / "config.json").read_text())
    if spec == "random:tiny":
        values.update(TINY)
    config = BertConfig(**values)
    config._attn_implementation = "eager"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        model = BertModel(config, add_pooling_layer=False)
    model.eval()
    return LoadedEncoder(spec, model, assets / "tokenizer.json", config.to_dict(), weights_sha256(model), None)


def _local_encoder(spec: str, directory: Path, revision: str | None = None) -> LoadedEncoder:
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # unused pooler weights are expected: we read the hidden states

    tokenizer_file = directory / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise EdgeSentError(f"encoder {spec!r}: {directory} has no tokenizer.json (a fast tokenizer is required)")
    try:
        config = AutoConfig.from_pretrained(directory)
        try:
            model = AutoModel.from_pretrained(directory, attn_implementation="eager", add_pooling_layer=False)
        except TypeError:  # architectures without a pooler argument
            model = AutoModel.from_pretrained(directory, attn_implementation="eager")
    except (OSError, ValueError) as exc:
        raise EdgeSentError(f"cannot load encoder {spec!r}: {str(exc).splitlines()[0]}") from None
    model.eval()
    return LoadedEncoder(spec, model, tokenizer_file, config.to_dict(), weights_sha256(model), revision)


def _hub_encoder(spec: str) -> LoadedEncoder:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    patterns = [
        "config.json",
        "tokenizer.json",
        "*.safetensors",
        "*.bin",
        "tokenizer_config.json",
        "vocab.txt",
    ]
    try:
        local = Path(snapshot_download(spec, allow_patterns=patterns))
    except HFValidationError:
        raise EdgeSentError(
            f"cannot load encoder {spec!r}: not a local directory, a random: spec or a valid hub id"
        ) from None
    except Exception as exc:  # offline cache miss, network errors, missing repo
        offline = " (HF_HUB_OFFLINE is set and it is not in the cache)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise EdgeSentError(f"cannot load encoder {spec!r}{offline}: {type(exc).__name__}") from None
    return _local_encoder(spec, local, revision=local.name)


def load_encoder(spec: str) -> LoadedEncoder:
    """Resolve `spec`: `random:bert-base-chinese`, `random:tiny`, a local directory, or a hub id."""
    if spec.startswith("random:"):
        if spec not in RANDOM_SPECS:
            raise EdgeSentError(f"unknown synthetic encoder {spec!r} (choose from {', '.join(RANDOM_SPECS)})")
        return _random_encoder(spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _local_encoder(spec, path.resolve())
    return _hub_encoder(spec)
