"""Serving settings: frozen, validated once before the model is loaded and the port opens."""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_sent.errors import EdgeSentError


@dataclass(frozen=True)
class BatchSettings:
    """How the worker builds batches from the queue.

    max_batch_size: texts per batch; max_batch_tokens: rows × longest row (padding counts) per batch;
    max_wait_ms: how long the worker may wait for more texts when more than one is already queued (a lone
    request never waits); max_queue: texts waiting for a batch before new requests get 429.
    """

    max_batch_size: int = 32
    max_batch_tokens: int = 8192
    max_wait_ms: float = 0.0
    max_queue: int = 1024

    def check(self) -> None:
        if self.max_batch_size < 1:
            raise EdgeSentError(f"--max-batch-size must be at least 1, got {self.max_batch_size}")
        if self.max_batch_tokens < 1:
            raise EdgeSentError(f"--max-batch-tokens must be at least 1, got {self.max_batch_tokens}")
        if self.max_wait_ms < 0:
            raise EdgeSentError(f"--max-wait-ms must be 0 or more, got {self.max_wait_ms}")
        if self.max_queue < 1:
            raise EdgeSentError(f"--max-queue must be at least 1, got {self.max_queue}")

    def check_model(self, max_length: int) -> None:
        """One text of the bundle's max length must fit in a batch on its own."""
        if self.max_batch_tokens < max_length:
            raise EdgeSentError(
                f"--max-batch-tokens {self.max_batch_tokens} is below the bundle's max length {max_length}: "
                "a text of that length could never run"
            )


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    batching: BatchSettings = field(default_factory=BatchSettings)
    max_client_batch: int = 32  # texts in one request
    payload_limit: int = 2_000_000  # request body bytes
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    graceful_timeout_s: float = 30.0  # after SIGTERM: how long open requests may take before the server exits anyway

    def check(self) -> None:
        self.batching.check()
        if self.graceful_timeout_s <= 0:
            raise EdgeSentError(f"--graceful-timeout must be above 0 seconds, got {self.graceful_timeout_s}")
        if not 0 <= self.port <= 65535:
            raise EdgeSentError(f"--port must be 0..65535, got {self.port}")
        if self.max_client_batch < 1:
            raise EdgeSentError(f"--max-client-batch must be at least 1, got {self.max_client_batch}")
        if self.max_client_batch > self.batching.max_queue:
            raise EdgeSentError(
                f"--max-client-batch {self.max_client_batch} is above --max-queue {self.batching.max_queue}: "
                "a full request could never be queued"
            )
        if self.payload_limit < 64:
            raise EdgeSentError(f"--payload-limit must be at least 64 bytes, got {self.payload_limit}")
        if self.api_key is not None and not self.api_key.strip():
            raise EdgeSentError("the API key is empty")
