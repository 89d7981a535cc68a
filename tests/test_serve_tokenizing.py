"""The server's limit on requests tokenized on threads at once holds when a request is cancelled mid-tokenize
(its thread cannot be stopped: its place is held until the thread is done)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from edge_sent.runtime.serve import service as service_module
from edge_sent.tokenization import Tokenizer
from tests.test_serve_units import TOKENIZER, EchoEngine, _never_disconnects


class BlockingTokenizer(Tokenizer):
    """The real tokenizer, held inside `prefixes` until released; counts the threads inside at once."""

    def __init__(self, path: Path, max_length: int) -> None:
        super().__init__(path, max_length)
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.inside = self.most = 0

    def prefixes(self, texts):  # type: ignore[no-untyped-def]
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        try:
            assert self.release.wait(30)
            return super().prefixes(texts)
        finally:
            with self.lock:
                self.inside -= 1


def test_a_cancelled_request_keeps_its_tokenizing_place_until_its_thread_is_done() -> None:
    from types import SimpleNamespace

    from edge_sent.runtime.serve.batching import Batcher
    from edge_sent.runtime.serve.config import BatchSettings
    from edge_sent.runtime.serve.metrics import ServeMetrics

    async def scenario() -> None:
        tokenizer = BlockingTokenizer(TOKENIZER, 32)
        engine = EchoEngine(tokenizer)
        metrics = ServeMetrics("v", "cpu", "0")
        batcher = Batcher(engine, BatchSettings(max_queue=64), ["probabilities"], metrics)  # type: ignore[arg-type]
        classifier = SimpleNamespace(engine=engine, max_length=32)
        service = service_module.ClassifyService(classifier, batcher, 8, metrics)  # type: ignore[arg-type]
        batcher.start()
        long_text = ["好" * (service_module.TOKENIZE_INLINE_CHARS + 1)]

        def request() -> asyncio.Task:
            return asyncio.ensure_future(service.classify(long_text, True, _never_disconnects))

        async def settle() -> None:
            for _ in range(50):
                await asyncio.sleep(0.01)

        first, others = request(), [request() for _ in range(service_module.TOKENIZING_AT_ONCE - 1)]
        await settle()
        assert tokenizer.inside == service_module.TOKENIZING_AT_ONCE  # the limit's worth, all on threads
        first.cancel()  # the client left while its text was being tokenized: its thread runs on
        await settle()
        late = request()
        await settle()
        assert tokenizer.most == service_module.TOKENIZING_AT_ONCE, tokenizer.most  # the late one waits
        tokenizer.release.set()
        results = await asyncio.gather(*others, late)
        assert all(len(r.scores) == 1 for r in results) and first.cancelled()
        await batcher.close()

    asyncio.run(scenario())
