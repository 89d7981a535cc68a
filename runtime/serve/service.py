"""One classification request: validate the texts, tokenize on arrival, queue, wait for the rows (or for the
client to leave, which drops its queued work)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive

from edge_sent.runtime.classifier import Classifier
from edge_sent.runtime.serve.batching import Batcher, QueueFull, Scores
from edge_sent.runtime.serve.errors import ApiError, ClientDisconnected
from edge_sent.tokenization import Encoded

TOKENIZE_INLINE_CHARS = 20_000  # longer requests are tokenized on a thread, off the event loop


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
    def __init__(self, classifier: Classifier, batcher: Batcher, max_client_batch: int) -> None:
        self.classifier = classifier
        self.batcher = batcher
        self.max_client_batch = max_client_batch

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
        except QueueFull as exc:
            raise ApiError(429, f"overloaded: {exc}; retry later", "overloaded", {"Retry-After": "1"}) from None
        return Classified(await _wait(futures, receive), truncated)

    async def _encode(self, texts: Sequence[str]) -> list[Encoded]:
        encode = self.classifier.engine.encode
        if sum(map(len, texts)) <= TOKENIZE_INLINE_CHARS:
            return encode(texts)
        return await asyncio.to_thread(encode, texts)


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
