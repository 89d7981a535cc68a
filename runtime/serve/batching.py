"""Dynamic batching: one queue of tokenized texts, one worker that builds batches from it and runs them.

* Texts are queued already tokenized (`submit`); a request with several texts queues each of them.
* The worker takes the OLDEST queued text, then adds its neighbours in length order (the one that adds the
  least padding first) while the batch stays within `max_batch_size` texts and `max_batch_tokens` padded
  tokens (rows × longest row), and while the padding a text adds stays within MAX_PADDING_SHARE of its own
  length: batches are length-sorted, and no text waits behind ever-newer short ones.
* A lone text runs at once. `max_wait_ms` only applies when more than one text is queued and the next batch
  is not full yet: the worker then waits for more until the oldest text has waited that long.
* A batch runs in a one-thread executor (onnxruntime releases the GIL), so the event loop keeps accepting,
  tokenizing and answering while the graph runs. Its rows go back to the waiting futures.
* A future cancelled while queued (its client disconnected) leaves the queue at once: its work is dropped.
* A batch whose run raises fails only its own futures; the worker goes on.
* Admission comes first (`admit`, before the request is tokenized): a request whose texts would not fit in the
  queue is refused at once (QueueFull: 429), and one that arrives while the worker is stopping or dead is refused
  as unavailable (503); an admitted request's place is reserved until it is queued or given up.
* `per_request`: every batch holds the texts of one request only (a batch-dependent variant then answers a
  client the same whatever other clients send).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from edge_sent.runtime.engine import Engine
from edge_sent.runtime.serve.config import BatchSettings
from edge_sent.runtime.serve.metrics import ServeMetrics
from edge_sent.tokenization import Encoded

# On CPU a padded batch of n texts costs nearly n runs of its longest text, so batching buys little and padding
# costs in full: a text joins a batch only if the padding it adds is at most this share of its own length (the
# offline `Classifier.predict` sorts ALL its texts by length and pads ~4%; the queue holds only the texts of
# the current clients, and with a share of 1 their batches padded ~17% at 32 clients).
MAX_PADDING_SHARE = 0.25


class QueueFull(Exception):
    """The queue holds `max_queue` texts: the request is refused at once (429)."""


class Unavailable(Exception):
    """The worker is shutting down or has stopped: the request is refused (503), retrying here will not help."""


@dataclass(frozen=True)
class Scores:
    """One text's output rows (by output name), whether max length cut it, and where its time went."""

    rows: dict[str, np.ndarray]
    truncated: bool
    queue_seconds: float
    inference_seconds: float


@dataclass(eq=False)
class Job:
    key: int
    encoded: Encoded
    future: asyncio.Future[Scores]
    request: int = 0
    enqueued: float = field(default_factory=time.perf_counter)

    @property
    def length(self) -> int:
        return len(self.encoded.ids)


def plan_batch(lengths: Sequence[int], max_size: int, max_tokens: int) -> list[int]:
    """The next batch, as positions in `lengths` (queue order, oldest first), sorted by length.

    Always holds position 0 (the oldest text); grows a window around it in length order, taking whichever
    neighbour adds less padding (the older one on a tie), while rows ≤ max_size, rows × longest ≤ max_tokens,
    and the padding a text adds is at most MAX_PADDING_SHARE of its own length.
    """
    if not lengths:
        return []
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    lo = order.index(0)
    hi = lo + 1  # the batch is order[lo:hi]
    while hi - lo < max_size:
        rows = hi - lo
        width = lengths[order[hi - 1]]
        options: list[tuple[int, int, int]] = []  # (added padding, arrival, side)
        if lo > 0 and (rows + 1) * width <= max_tokens:
            shorter = order[lo - 1]
            options.append((width - lengths[shorter], shorter, -1))
        if hi < len(order) and (rows + 1) * lengths[order[hi]] <= max_tokens:
            longer = order[hi]
            options.append((rows * (lengths[longer] - width), longer, +1))
        # padded tokens cost as much as real ones: a text that would add much padding runs in a later batch,
        # with texts of its length
        options = [option for option in options if option[0] <= MAX_PADDING_SHARE * lengths[option[1]]]
        if not options:
            break
        if min(options)[2] < 0:
            lo -= 1
        else:
            hi += 1
    return order[lo:hi]


class Batcher:
    """The queue and its single worker. `start` and every other method run on the event loop's thread."""

    def __init__(
        self,
        engine: Engine,
        settings: BatchSettings,
        outputs: Sequence[str],
        metrics: ServeMetrics,
        per_request: bool = False,
    ) -> None:
        self._engine = engine
        self.per_request = per_request
        self._reserved = 0  # texts admitted and being tokenized, not queued yet
        self._requests = itertools.count()
        self._settings = settings
        self._outputs = tuple(outputs)
        self._metrics = metrics
        self._pending: dict[int, Job] = {}  # insertion order = arrival order
        self._keys = itertools.count()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._flushing = False  # shutting down: stop waiting for more texts
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-sent-batch")
        self._task: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        return len(self._pending)

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="edge-sent-batcher")

    def admit(self, texts: int) -> None:
        """Reserve room for a request's texts before it is tokenized; raises Unavailable or QueueFull (nothing
        reserved then). Every admit is matched by one `release` once the texts are queued or given up."""
        self._check_running()
        waiting = len(self._pending) + self._reserved
        if waiting + texts > self._settings.max_queue:
            raise QueueFull(f"the queue is full ({waiting} of {self._settings.max_queue} texts waiting)")
        self._reserved += texts

    def _check_running(self) -> None:
        if self._closing or not self.alive:
            raise Unavailable("the server is shutting down" if self._closing else "the batch worker has stopped")

    def release(self, texts: int) -> None:
        self._reserved -= texts

    def submit(self, encoded: Sequence[Encoded]) -> list[asyncio.Future[Scores]]:
        """Queue an admitted request's tokenized texts (raises Unavailable when the worker stopped meanwhile)."""
        self._check_running()
        loop = asyncio.get_running_loop()
        request = next(self._requests)
        futures: list[asyncio.Future[Scores]] = []
        for item in encoded:
            job = Job(next(self._keys), item, loop.create_future(), request)
            job.future.add_done_callback(functools.partial(self._forget, job.key))
            self._pending[job.key] = job
            futures.append(job.future)
        self._metrics.queue_size.set(len(self._pending))
        self._wakeup.set()
        return futures

    def flush(self) -> None:
        """From now on run what is queued without waiting for more (the server is shutting down)."""
        self._flushing = True
        self._wakeup.set()

    async def close(self) -> None:
        """Run everything still queued, then stop the worker."""
        self._closing = self._flushing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    def _forget(self, key: int, future: asyncio.Future[Scores]) -> None:
        if future.cancelled() and self._pending.pop(key, None) is not None:
            self._metrics.dropped.inc()
            self._metrics.queue_size.set(len(self._pending))

    async def _loop(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self._settings.max_wait_ms > 0:
                await self._wait_for_more()
            jobs = self._take()
            if jobs:
                await self._run(jobs)

    def _plan(self, jobs: Sequence[Job]) -> list[int]:
        s = self._settings
        return plan_batch([job.length for job in jobs], s.max_batch_size, s.max_batch_tokens)

    def _candidates(self) -> list[Job]:
        """What the next batch may take: every queued text, or (per request) the oldest request's texts."""
        jobs = list(self._pending.values())
        return [job for job in jobs if job.request == jobs[0].request] if self.per_request else jobs

    def _full(self) -> bool:
        """The next batch cannot take one more text, even one no longer than its longest."""
        jobs = self._candidates()
        planned = self._plan(jobs)
        width = max(jobs[i].length for i in planned)
        return (
            len(planned) >= self._settings.max_batch_size
            or (len(planned) + 1) * width > self._settings.max_batch_tokens
        )

    async def _wait_for_more(self) -> None:
        """Only while more than one text is queued (a lone text runs at once) and the batch is not full yet."""
        oldest = next(iter(self._pending.values()))
        deadline = oldest.enqueued + self._settings.max_wait_ms / 1000
        while not self._flushing and not self.per_request and len(self._pending) > 1 and not self._full():
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _take(self) -> list[Job]:
        queued = self._candidates()
        jobs = [queued[i] for i in self._plan(queued)]
        for job in jobs:
            del self._pending[job.key]
        self._metrics.queue_size.set(len(self._pending))
        return jobs

    async def _run(self, jobs: list[Job]) -> None:
        started = time.perf_counter()
        for job in jobs:
            self._metrics.queue_seconds.observe(started - job.enqueued)
        loop = asyncio.get_running_loop()
        try:
            rows, seconds, tokens = await loop.run_in_executor(self._executor, self._infer, [j.encoded for j in jobs])
        except Exception as exc:  # a failed batch fails its own requests, never the worker
            self._metrics.batch_errors.inc()
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        self._metrics.inference_seconds.observe(seconds)
        self._metrics.batch_size.observe(len(jobs))
        self._metrics.batch_tokens.observe(tokens)
        self._metrics.texts.inc(len(jobs))
        for position, job in enumerate(jobs):
            if not job.future.done():
                scores = Scores(
                    {name: values[position] for name, values in rows.items()},
                    job.encoded.truncated,
                    started - job.enqueued,
                    seconds,
                )
                job.future.set_result(scores)

    def _infer(self, encoded: list[Encoded]) -> tuple[dict[str, np.ndarray], float, int]:
        """On the batch thread: pad, run the graph; returns the outputs, the run's seconds and padded tokens."""
        batch = self._engine.tokenizer.pad(encoded, np.arange(len(encoded)))
        start = time.perf_counter()
        values = self._engine.run(batch.feeds(), self._outputs)
        seconds = time.perf_counter() - start
        return dict(zip(self._outputs, values, strict=True)), seconds, int(batch.input_ids.size)
