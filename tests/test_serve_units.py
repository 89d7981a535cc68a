"""The server's request path without a server: admission before tokenizing, a dead worker, per-request batches,
and a 500's body (a request id, never the exception's text)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from starlette.requests import Request

from edge_sent.runtime.serve.batching import Batcher
from edge_sent.runtime.serve.config import BatchSettings
from edge_sent.runtime.serve.errors import ApiError, _unexpected
from edge_sent.runtime.serve.metrics import ServeMetrics
from edge_sent.runtime.serve.service import ClassifyService
from edge_sent.tokenization import Encoded, Tokenizer
from tests.conftest import ROOT

TOKENIZER = ROOT / "src" / "edge_sent" / "assets" / "bert-base-chinese" / "tokenizer.json"


class CountingTokenizer(Tokenizer):
    """The real tokenizer, counting the texts it is given."""

    def __init__(self, path: Path, max_length: int) -> None:
        super().__init__(path, max_length)
        self.seen = 0

    def prefixes(self, texts):  # type: ignore[no-untyped-def]
        self.seen += len(texts)
        return super().prefixes(texts)


class EchoEngine:
    """Each row's output is its batch's size and its own token count: what a batch held is visible in the answer."""

    output_names = ("probabilities",)

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    def run(self, feeds: dict[str, np.ndarray], outputs: tuple[str, ...]) -> list[np.ndarray]:
        mask = feeds["attention_mask"]
        rows = len(mask)
        return [np.stack([np.full(rows, float(rows)), mask.sum(axis=1).astype(float)], axis=1)]


def _service(max_queue: int = 4, per_request: bool = False, wait_ms: float = 0.0):  # type: ignore[no-untyped-def]
    tokenizer = CountingTokenizer(TOKENIZER, 32)
    engine = EchoEngine(tokenizer)
    metrics = ServeMetrics("v", "cpu", "0")
    settings = BatchSettings(max_batch_size=64, max_queue=max_queue, max_wait_ms=wait_ms)
    batcher = Batcher(engine, settings, ["probabilities"], metrics, per_request=per_request)  # type: ignore[arg-type]
    classifier = SimpleNamespace(engine=engine, max_length=32)
    return ClassifyService(classifier, batcher, 8, metrics), batcher, tokenizer  # type: ignore[arg-type]


async def _never_disconnects() -> dict:
    await asyncio.sleep(3600)
    return {"type": "http.disconnect"}


def test_a_full_queue_refuses_before_tokenizing_and_frees_its_places() -> None:
    async def scenario() -> None:
        service, batcher, tokenizer = _service(max_queue=4)
        batcher.start()
        batcher.admit(3)  # three texts admitted and being tokenized elsewhere
        with pytest.raises(ApiError) as refused:
            await service.classify(["好", "坏"], True, _never_disconnects)
        assert refused.value.status == 429 and tokenizer.seen == 0  # refused without tokenizing
        batcher.release(3)
        answer = await service.classify(["好", "坏"], True, _never_disconnects)
        assert len(answer.scores) == 2 and tokenizer.seen == 2
        with pytest.raises(ApiError) as too_long:  # given up after tokenizing: its places are freed
            await service.classify(["好" * 100], False, _never_disconnects)
        assert too_long.value.status == 422
        assert len((await service.classify(["好"] * 4, True, _never_disconnects)).scores) == 4
        await batcher.close()

    asyncio.run(scenario())


def test_a_dead_worker_answers_503_not_retry_later() -> None:
    async def scenario() -> None:
        service, batcher, tokenizer = _service()
        batcher.start()
        assert batcher._task is not None
        batcher._task.cancel()
        await asyncio.sleep(0)
        assert not batcher.alive
        with pytest.raises(ApiError) as refused:
            await service.classify(["好"], True, _never_disconnects)
        assert (refused.value.status, refused.value.error_type) == (503, "unhealthy")
        assert "worker has stopped" in refused.value.message and tokenizer.seen == 0

    asyncio.run(scenario())


@pytest.mark.parametrize("per_request", [True, False])
def test_per_request_batches_hold_one_requests_texts(per_request: bool) -> None:
    """Two requests queued together: per request, each runs in a batch of its own texts; otherwise they share one
    (the worker waits for a fuller batch)."""

    async def scenario() -> list[float]:
        service, batcher, _ = _service(max_queue=16, per_request=per_request, wait_ms=200)
        batcher.start()
        first = service.classify(["好", "坏", "行"], True, _never_disconnects)
        second = service.classify(["棒"], True, _never_disconnects)  # same length: no padding
        answers = await asyncio.gather(first, second)
        await batcher.close()
        return [float(s.rows["probabilities"][0]) for a in answers for s in a.scores]

    sizes = asyncio.run(scenario())
    assert sizes == ([3.0, 3.0, 3.0, 1.0] if per_request else [4.0] * 4)


def test_a_500_body_carries_a_request_id_and_the_log_the_exception(caplog: pytest.LogCaptureFixture) -> None:
    request = Request({"type": "http", "method": "POST", "path": "/predict", "headers": [], "query_string": b""})
    with caplog.at_level(logging.ERROR, logger="edge_sent.serve"):
        response = asyncio.run(_unexpected(request, RuntimeError("secret detail of /srv/model.onnx")))
    body = json.loads(bytes(response.body))
    assert response.status_code == 500 and body["error_type"] == "backend"
    assert "secret" not in response.body.decode() and "RuntimeError" not in response.body.decode()
    request_id = body["request_id"]
    assert len(request_id) == 16 and request_id in body["error"] and response.headers["x-request-id"] == request_id
    logged = caplog.records[-1]
    assert request_id in logged.getMessage() and "secret detail" in str(logged.exc_info[1])  # type: ignore[index]


def test_encoded_is_what_the_batcher_pads() -> None:
    """(the echo engine above reads the padded batch the real tokenizer builds)"""
    tokenizer = Tokenizer(TOKENIZER, 32)
    encoded = tokenizer.encode(["好", "不好"])
    assert isinstance(encoded[0], Encoded) and tokenizer.pad(encoded, np.arange(2)).attention_mask.sum() == 7
