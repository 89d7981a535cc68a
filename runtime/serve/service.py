"""One classification request: validate the texts, admit it (room in the queue, before any tokenizing), tokenize
it (a long text only as far as max length reads it; long requests off the event loop, a few at a time), queue it,
wait for the rows (or for the client to leave, which drops its queued work)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive

from edge_sent.runtime.classifier import Classifier
from edge_sent.runtime.serve.batching import Batcher, QueueFull, Scores, Unavailable
from edge_sent.runtime.serve.errors import ApiError, ClientDisconnected
from edge_sent.runtime.serve.metrics import ServeMetrics
from edge_sent.tokenization import Encoded

TOKENIZE_INLINE_CHARS = 20_000  # longer requests are tokenized on a thread, off the event loop
TOKENIZING_AT_ONCE = 2  # requests tokenized on threads at once (the others wait, their queue places reserved)


@dataclass(frozen=True)
class Classified:
    scores: list[Scores]
    truncated: list[int]  # positions of the texts that max length cut

    def timing_headers(self) -> dict[str, str]:
        """TEI-style timing headers (milliseconds)."""
        queue = max(s.queue_seconds for s in self.scores)
        inference = max(s.inference_seconds for s in self.scores)
        headers = {"x-queue-time": f"{queue * 1000:.3f}", "x-inference-time": f"{inference * 1000:.3f}"}
        if self.truncated:
            headers["x-truncated-inputs"] = ",".join(map(str, self.truncated))
        return headers


async def wait_for_disconnect(receive: Receive) -> None:
    """Returns when the client disconnects (the request body has already been read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class ClassifyService:
    def __init__(self, classifier: Classifier, batcher: Batcher, max_client_batch: int, metrics: ServeMetrics) -> None:
        self.classifier = classifier
        self.batcher = batcher
        self.max_client_batch = max_client_batch
        self.metrics = metrics
        self._tokenizing = asyncio.Semaphore(TOKENIZING_AT_ONCE)

    def require_output(self, name: str) -> None:
        if name not in self.classifier.engine.output_names:
            raise ApiError(422, f"this bundle's graph has no {name!r} output", "validation")

    async def classify(self, texts: list[str], truncate: bool, receive: Receive) -> Classified:
        if not texts:
            raise ApiError(422, "inputs is empty", "validation")
        if len(texts) > self.max_client_batch:
            raise ApiError(
                413,
                f"{len(texts)} inputs; at most {self.max_client_batch} per request (--max-client-batch)",
                "validation",
            )
        for position, text in enumerate(texts):
            if not text.strip():
                raise ApiError(422, f"inputs[{position}] is empty or whitespace", "validation")
        try:
            self.batcher.admit(len(texts))  # before any tokenizing: an overloaded server refuses cheaply
        except QueueFull as exc:
            raise ApiError(429, f"overloaded: {exc}; retry later", "overloaded", {"Retry-After": "1"}) from None
        except Unavailable as exc:
            raise ApiError(503, f"unavailable: {exc}", "unhealthy") from None
        try:
            encoded = await self._encode(texts)
            truncated = [i for i, e in enumerate(encoded) if e.truncated]
            if truncated and not truncate:
                raise ApiError(
                    422,
                    f"inputs[{truncated[0]}] is longer than the model's max length of {self.classifier.max_length} "
                    "tokens and truncate is false",
                    "validation",
                )
            try:
                futures = self.batcher.submit(encoded)
            except Unavailable as exc:
                raise ApiError(503, f"unavailable: {exc}", "unhealthy") from None
        finally:
            self.batcher.release(len(texts))
        return Classified(await _wait(futures, receive), truncated)

    def _tokenize(self, texts: Sequence[str]) -> list[Encoded]:
        tokenizer = self.classifier.engine.tokenizer
        prefixes = tokenizer.prefixes(texts)
        self.metrics.tokenized_chars.inc(sum(map(len, prefixes)))  # (prometheus counters are thread-safe)
        return tokenizer.encode(prefixes, prefixed=True)

    async def _encode(self, texts: Sequence[str]) -> list[Encoded]:
        if sum(map(len, texts)) <= TOKENIZE_INLINE_CHARS:
            return self._tokenize(texts)
        await self._tokenizing.acquire()
        try:
            job = asyncio.ensure_future(asyncio.to_thread(self._tokenize, texts))
        except BaseException:
            self._tokenizing.release()
            raise
        # a thread cannot be stopped: a cancelled request's place is given back when its thread is done
        job.add_done_callback(self._tokenized)
        return await asyncio.shield(job)

    def _tokenized(self, job: asyncio.Future[list[Encoded]]) -> None:
        self._tokenizing.release()
        if not job.cancelled():
            job.exception()  # retrieved: a cancelled request's failure is not logged as never retrieved


async def _wait(futures: list[asyncio.Future[Scores]], receive: Receive) -> list[Scores]:
    results = asyncio.gather(*futures)
    gone = asyncio.ensure_future(wait_for_disconnect(receive))
    either: set[asyncio.Future[Any]] = {results, gone}
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        results.cancel()
        gone.cancel()
        raise
    if results.done():
        gone.cancel()
        return list(results.result())
    results.cancel()  # cancels every queued future: they leave the queue (counted as dropped)
    raise ClientDisconnected
