"""Prometheus metrics of one server (its own registry, so that two apps in one process never collide)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TOKENS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


class ServeMetrics:
    def __init__(self, variant: str, provider: str, version: str) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "edge_sent_requests", "HTTP requests by route and status code", ["route", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "edge_sent_request_duration_seconds", "HTTP request duration", ["route"], buckets=SECONDS, registry=r
        )
        self.queue_seconds = Histogram(
            "edge_sent_queue_duration_seconds", "Time a text waited in the queue", buckets=SECONDS, registry=r
        )
        self.inference_seconds = Histogram(
            "edge_sent_inference_duration_seconds", "Time one batch spent in the graph", buckets=SECONDS, registry=r
        )
        self.queue_size = Gauge("edge_sent_queue_size", "Texts waiting for a batch", registry=r)
        self.batch_size = Histogram("edge_sent_batch_size", "Texts per batch", buckets=SIZES, registry=r)
        self.batch_tokens = Histogram(
            "edge_sent_batch_tokens", "Tokens per batch, padding included (rows x longest)", buckets=TOKENS, registry=r
        )
        self.texts = Counter("edge_sent_texts", "Texts classified", registry=r)
        self.dropped = Counter(
            "edge_sent_dropped_texts", "Queued texts dropped because their client disconnected", registry=r
        )
        self.batch_errors = Counter("edge_sent_batch_errors", "Batches whose run raised", registry=r)
        self.tokenized_chars = Counter(
            "edge_sent_tokenized_characters", "Characters given to the tokenizer (a long text: its prefix)", registry=r
        )
        info = Gauge("edge_sent_info", "The model being served", ["variant", "provider", "version"], registry=r)
        info.labels(variant, provider, version).set(1)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
