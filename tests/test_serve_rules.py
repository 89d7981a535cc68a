"""The server's rules in process, without a server or a model: the settings' bounds and messages, the error bodies,
the batch plan's bounds, the queue's admission, failures, cancellation, waiting and shutdown, and a request's
validation and timing headers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException

from edge_sent.errors import EdgeSentError
from edge_sent.runtime.serve import batching, service
from edge_sent.runtime.serve.batching import Batcher, QueueFull, Scores, Unavailable, plan_batch
from edge_sent.runtime.serve.config import BatchSettings, ServeConfig
from edge_sent.runtime.serve.errors import (
    CLIENT_CLOSED,
    STATUS_TYPES,
    ApiError,
    ClientDisconnected,
    _api_error,
    _disconnected,
    _http_error,
    _unexpected,
    error_response,
    install_error_handlers,
)
from edge_sent.runtime.serve.metrics import ServeMetrics
from edge_sent.runtime.serve.service import Classified, ClassifyService, wait_for_disconnect
from edge_sent.tokenization import Tokenizer
from tests.test_serve_units import TOKENIZER, EchoEngine

# ---------------------------------------------------------------------------------------------------- settings


def test_the_default_settings() -> None:
    assert BatchSettings() == BatchSettings(32, 8192, 0.0, 1024)
    c = ServeConfig()
    assert (c.host, c.port, c.max_client_batch, c.payload_limit) == ("127.0.0.1", 8000, 32, 2_000_000)
    assert (c.api_key, c.cors_origins, c.graceful_timeout_s, c.batching) == (None, (), 30.0, BatchSettings())
    c.check()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_batch_size": 0}, "--max-batch-size must be at least 1, got 0"),
        ({"max_batch_tokens": 0}, "--max-batch-tokens must be at least 1, got 0"),
        ({"max_wait_ms": -0.5}, "--max-wait-ms must be 0 or more, got -0.5"),
        ({"max_queue": 0}, "--max-queue must be at least 1, got 0"),
    ],
)
def test_batch_settings_refuse_each_bad_value(settings: dict, message: str) -> None:
    with pytest.raises(EdgeSentError) as refused:
        BatchSettings(**settings).check()
    assert str(refused.value) == message
    with pytest.raises(EdgeSentError):
        ServeConfig(batching=BatchSettings(**settings)).check()


def test_batch_settings_accept_their_bounds() -> None:
    BatchSettings(max_batch_size=1, max_batch_tokens=1, max_wait_ms=0.0, max_queue=1).check()
    BatchSettings(max_batch_tokens=128).check_model(128)
    with pytest.raises(EdgeSentError) as refused:
        BatchSettings(max_batch_tokens=127).check_model(128)
    assert str(refused.value) == (
        "--max-batch-tokens 127 is below the bundle's max length 128: a text of that length could never run"
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"graceful_timeout_s": 0.0}, "--graceful-timeout must be above 0 seconds, got 0.0"),
        ({"port": -1}, "--port must be 0..65535, got -1"),
        ({"port": 65536}, "--port must be 0..65535, got 65536"),
        ({"max_client_batch": 0}, "--max-client-batch must be at least 1, got 0"),
        (
            {"max_client_batch": 5, "batching": BatchSettings(max_queue=4)},
            "--max-client-batch 5 is above --max-queue 4: a full request could never be queued",
        ),
        ({"payload_limit": 63}, "--payload-limit must be at least 64 bytes, got 63"),
        ({"api_key": " "}, "the API key is empty"),
        ({"api_key": ""}, "the API key is empty"),
    ],
)
def test_serve_config_refuses_each_bad_value(config: dict, message: str) -> None:
    with pytest.raises(EdgeSentError) as refused:
        ServeConfig(**config).check()
    assert str(refused.value) == message


def test_serve_config_accepts_its_bounds() -> None:
    for port in (0, 65535):
        ServeConfig(port=port).check()
    ServeConfig(graceful_timeout_s=0.001, payload_limit=64, api_key="k", max_client_batch=1).check()
    ServeConfig(max_client_batch=4, batching=BatchSettings(max_queue=4)).check()


def test_settings_checked_once_cannot_change_afterwards() -> None:
    from dataclasses import FrozenInstanceError

    with pytest.raises(FrozenInstanceError):
        BatchSettings().max_batch_size = 0  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        ServeConfig().port = -1  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------------ errors


def test_error_bodies_and_their_types() -> None:
    assert STATUS_TYPES == {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
    assert CLIENT_CLOSED == 499
    error = ApiError(429, "busy", "overloaded", {"Retry-After": "1"})
    assert (str(error), error.status, error.message, error.error_type, error.headers) == (
        "busy",
        429,
        "busy",
        "overloaded",
        {"Retry-After": "1"},
    )
    assert ApiError(400, "m", "invalid_json").headers is None
    response = asyncio.run(_api_error(None, error))
    assert response.status_code == 429 and response.headers["retry-after"] == "1"
    assert json.loads(bytes(response.body)) == {"error": "busy", "error_type": "overloaded"}
    plain = error_response(404, "no", "not_found")
    assert plain.status_code == 404 and json.loads(bytes(plain.body)) == {"error": "no", "error_type": "not_found"}

    def http(status: int, headers: dict | None = None):
        exc = StarletteHTTPException(status, detail="why", headers=headers)
        return asyncio.run(_http_error(None, exc))

    for status, kind in STATUS_TYPES.items():
        response = http(status)
        assert response.status_code == status and json.loads(bytes(response.body))["error_type"] == kind
    odd = http(418)
    assert json.loads(bytes(odd.body)) == {"error": "why", "error_type": "http"}
    assert http(405, {"Allow": "POST"}).headers["allow"] == "POST"
    gone = asyncio.run(_disconnected(None, ClientDisconnected()))
    assert gone.status_code == 499 and bytes(gone.body) == b""


def test_every_handler_is_installed() -> None:
    app = FastAPI()
    install_error_handlers(app)
    assert app.exception_handlers[ApiError] is _api_error
    assert app.exception_handlers[StarletteHTTPException] is _http_error
    assert app.exception_handlers[ClientDisconnected] is _disconnected
    assert app.exception_handlers[Exception] is _unexpected


# ------------------------------------------------------------------------------------------------ batch plan


def test_plan_batch_bounds_rows_tokens_and_padding_exactly() -> None:
    assert batching.MAX_PADDING_SHARE == 0.25
    assert plan_batch([10, 10], max_size=8, max_tokens=20) == [0, 1]  # rows × longest = 20: in
    assert plan_batch([10, 10], max_size=8, max_tokens=19) == [0]
    assert plan_batch([10, 12], max_size=8, max_tokens=24) == [0, 1]
    assert plan_batch([10, 12], max_size=8, max_tokens=23) == [0]
    assert plan_batch([5] * 10, max_size=3, max_tokens=1000) == [0, 1, 2]  # the oldest on equal lengths
    assert plan_batch([5] * 10, max_size=1, max_tokens=1000) == [0]
    assert plan_batch([10, 10, 11], max_size=8, max_tokens=1000) == [0, 1, 2]  # 2 rows × 1 ≤ 11 / 4
    assert plan_batch([10, 10, 12], max_size=8, max_tokens=1000) == [0, 1]  # 2 rows × 2 > 12 / 4
    assert plan_batch([12, 10], max_size=8, max_tokens=1000) == [1, 0]  # a shorter one pads 2 ≤ 10 / 4
    assert plan_batch([10, 6, 100], max_size=8, max_tokens=10_000) == [0]  # 4 > 6 / 4: judged by its own length
    assert plan_batch([12, 10], max_size=8, max_tokens=24) == [1, 0]  # a shorter one: rows × the longest = 24
    assert plan_batch([12, 10], max_size=8, max_tokens=23) == [0]
    assert plan_batch([12, 9], max_size=8, max_tokens=1000) == [0]  # 3 > 9 / 4
    # the shorter and the longer neighbour add the same padding: the older one joins
    assert plan_batch([10, 12, 8], max_size=2, max_tokens=1000) == [0, 1]
    assert plan_batch([10, 8, 12], max_size=2, max_tokens=1000) == [1, 0]
    # the neighbour that adds less padding joins first, whichever side and however new
    assert plan_batch([10, 12, 9], max_size=2, max_tokens=1000) == [2, 0]
    assert plan_batch([10, 8, 11], max_size=2, max_tokens=1000) == [0, 2]
    assert plan_batch([10, 7, 11], max_size=8, max_tokens=1000) == [0, 2]  # 3 > 7 / 4: never joins


# ------------------------------------------------------------------------------------------------------- queue


class FailingOnce(EchoEngine):
    def __init__(self, tokenizer: Tokenizer) -> None:
        super().__init__(tokenizer)
        self.failed = False

    def run(self, feeds: dict[str, np.ndarray], outputs: tuple[str, ...]) -> list[np.ndarray]:
        if not self.failed:
            self.failed = True
            raise RuntimeError("the graph failed")
        return super().run(feeds, outputs)


def _batcher(engine_type: type = EchoEngine, **settings: float) -> tuple[Batcher, ServeMetrics, Tokenizer]:
    tokenizer = Tokenizer(TOKENIZER, 32)
    metrics = ServeMetrics("v", "cpu", "0")
    options = {"max_batch_size": 64, "max_queue": 8} | settings
    batcher = Batcher(engine_type(tokenizer), BatchSettings(**options), ["probabilities"], metrics)
    return batcher, metrics, tokenizer


def _value(metrics: ServeMetrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


def test_admission_counts_queued_and_reserved_texts() -> None:
    async def scenario() -> None:
        batcher, _, tokenizer = _batcher(max_queue=4)
        with pytest.raises(Unavailable, match=r"^the batch worker has stopped$"):
            batcher.admit(1)  # never started
        batcher.start()
        assert batcher.alive and batcher.queued == 0
        batcher.admit(4)  # exactly the queue's size
        with pytest.raises(QueueFull, match=r"^the queue is full \(4 of 4 texts waiting\)$"):
            batcher.admit(1)
        batcher.release(4)
        batcher.admit(2)
        batcher.admit(2)  # reservations add up
        with pytest.raises(QueueFull, match=r"\(4 of 4 texts waiting\)"):
            batcher.admit(1)
        batcher.release(2)
        futures = batcher.submit(tokenizer.encode(["好", "坏"]))
        batcher.release(2)
        assert batcher.queued == 2
        with pytest.raises(QueueFull, match=r"\(2 of 4 texts waiting\)"):
            batcher.admit(3)
        await asyncio.gather(*futures)
        assert batcher.queued == 0
        batcher.admit(4)
        batcher.release(4)
        await batcher.close()
        assert not batcher.alive
        with pytest.raises(Unavailable, match=r"^the server is shutting down$"):
            batcher.admit(1)
        with pytest.raises(Unavailable, match=r"^the server is shutting down$"):
            batcher.submit(tokenizer.encode(["好"]))

    asyncio.run(scenario())


def test_a_failed_batch_fails_its_own_texts_and_the_worker_goes_on() -> None:
    async def scenario() -> None:
        batcher, metrics, tokenizer = _batcher(FailingOnce)
        batcher.start()
        began = time.perf_counter()
        failed = batcher.submit(tokenizer.encode(["好", "不好"]))
        results = await asyncio.gather(*failed, return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        assert _value(metrics, "edge_sent_batch_errors_total") == 1 and _value(metrics, "edge_sent_texts_total") == 0
        (ok,) = await asyncio.gather(*batcher.submit(tokenizer.encode(["好"])))
        assert batcher.alive and isinstance(ok, Scores)
        assert ok.rows["probabilities"].tolist() == [1.0, 3.0] and not ok.truncated
        assert ok.queue_seconds >= 0 and ok.inference_seconds >= 0
        assert _value(metrics, "edge_sent_texts_total") == 1 and _value(metrics, "edge_sent_batch_size_sum") == 1
        assert _value(metrics, "edge_sent_batch_tokens_sum") == 3  # one row of [CLS] 好 [SEP]
        assert _value(metrics, "edge_sent_inference_duration_seconds_count") == 1
        assert _value(metrics, "edge_sent_queue_duration_seconds_count") == 3
        waited = time.perf_counter() - began  # each text's queue time lies inside the scenario's own time
        assert 0 <= ok.queue_seconds <= waited and 0 <= ok.inference_seconds <= waited
        assert 0 <= _value(metrics, "edge_sent_queue_duration_seconds_sum") <= 3 * waited
        await batcher.close()

    asyncio.run(scenario())


def test_a_cancelled_text_leaves_the_queue_and_counts_as_dropped() -> None:
    async def scenario() -> None:
        batcher, metrics, tokenizer = _batcher()  # not started: nothing runs
        batcher._task = asyncio.get_running_loop().create_future()  # "alive"
        futures = batcher.submit(tokenizer.encode(["好", "坏", "行"]))
        assert batcher.queued == 3 and _value(metrics, "edge_sent_queue_size") == 3
        futures[1].cancel()
        await asyncio.sleep(0)
        assert batcher.queued == 2 and _value(metrics, "edge_sent_queue_size") == 2
        assert _value(metrics, "edge_sent_dropped_texts_total") == 1
        futures[0].set_result(None)  # done, not cancelled: not dropped
        await asyncio.sleep(0)
        assert batcher.queued == 2 and _value(metrics, "edge_sent_dropped_texts_total") == 1
        batcher._task.cancel()

    asyncio.run(scenario())


def test_the_worker_waits_only_for_a_fuller_batch_and_never_past_a_flush() -> None:
    async def scenario() -> None:
        batcher, _, tokenizer = _batcher(max_wait_ms=60_000, max_batch_size=2)
        batcher.start()
        (lone,) = batcher.submit(tokenizer.encode(["好"]))
        assert (await asyncio.wait_for(lone, 5)).rows["probabilities"][0] == 1.0  # a lone text never waits
        full = batcher.submit(tokenizer.encode(["好", "坏"]))  # a full batch: no wait
        assert [s.rows["probabilities"][0] for s in await asyncio.wait_for(asyncio.gather(*full), 5)] == [2.0, 2.0]
        await batcher.close()

        batcher, _, tokenizer = _batcher(max_wait_ms=60_000, max_batch_size=8)
        batcher.start()
        waiting = batcher.submit(tokenizer.encode(["好", "坏"]))
        await asyncio.sleep(0.05)
        assert not any(f.done() for f in waiting)  # two texts, room for more: it waits
        more = batcher.submit(tokenizer.encode(["行"]))
        await asyncio.sleep(0.05)
        assert not any(f.done() for f in more)
        batcher.flush()  # shutting down: run what is queued now
        done = await asyncio.wait_for(asyncio.gather(*waiting, *more), 5)
        assert [s.rows["probabilities"][0] for s in done] == [3.0] * 3
        await batcher.close()

        batcher, _, tokenizer = _batcher(max_wait_ms=50, max_batch_size=8)
        batcher.start()
        started = asyncio.get_running_loop().time()
        timed = await asyncio.wait_for(asyncio.gather(*batcher.submit(tokenizer.encode(["好", "坏"]))), 5)
        assert asyncio.get_running_loop().time() - started >= 0.04 and timed[0].rows["probabilities"][0] == 2.0
        # the token budget is full: no wait either
        await batcher.close()

    asyncio.run(scenario())


def test_a_full_token_budget_runs_at_once() -> None:
    async def scenario() -> None:
        batcher, _, tokenizer = _batcher(max_wait_ms=60_000, max_batch_size=8, max_batch_tokens=6)
        batcher.start()
        both = batcher.submit(tokenizer.encode(["好", "坏"]))  # 2 rows × 3 tokens = 6: a third would not fit
        done = await asyncio.wait_for(asyncio.gather(*both), 5)
        assert [s.rows["probabilities"][0] for s in done] == [2.0, 2.0]
        await batcher.close()

    asyncio.run(scenario())


def test_a_batch_with_room_for_one_more_row_waits_for_it() -> None:
    async def scenario() -> None:
        batcher, _, tokenizer = _batcher(max_wait_ms=60_000, max_batch_size=8, max_batch_tokens=9)
        batcher.start()
        two = batcher.submit(tokenizer.encode(["好", "坏"]))  # 2 rows × 3 tokens; a third fits exactly (9)
        await asyncio.sleep(0.3)
        assert not any(f.done() for f in two)  # not full: the worker waits for more
        third = batcher.submit(tokenizer.encode(["行"]))  # 3 × 3 = 9: full, runs at once
        done = await asyncio.wait_for(asyncio.gather(*two, *third), 5)
        assert [s.rows["probabilities"][0] for s in done] == [3.0, 3.0, 3.0]
        await batcher.close()

    asyncio.run(scenario())


def test_close_runs_what_is_queued_then_stops() -> None:
    async def scenario() -> None:
        batcher, _, tokenizer = _batcher(max_wait_ms=60_000)
        batcher.start()
        futures = batcher.submit(tokenizer.encode(["好", "坏", "不行"]))
        await batcher.close()
        assert all(f.done() and not f.cancelled() for f in futures) and not batcher.alive
        assert batcher._executor._shutdown

    asyncio.run(scenario())


# ----------------------------------------------------------------------------------------------------- service


def _service(max_client_batch: int = 4, max_queue: int = 8) -> tuple[ClassifyService, Batcher, ServeMetrics]:
    batcher, metrics, _ = _batcher(max_queue=max_queue)
    classifier = SimpleNamespace(engine=batcher._engine, max_length=32)
    return ClassifyService(classifier, batcher, max_client_batch, metrics), batcher, metrics


async def _stays() -> dict:
    await asyncio.sleep(3600)
    return {"type": "http.disconnect"}


def test_the_constants() -> None:
    assert service.TOKENIZE_INLINE_CHARS == 20_000 and service.TOKENIZING_AT_ONCE == 2


def test_timing_headers() -> None:
    scores = [Scores({}, False, 0.0012345, 0.5), Scores({}, True, 0.002, 0.25)]
    assert Classified(scores, []).timing_headers() == {"x-queue-time": "2.000", "x-inference-time": "500.000"}
    assert Classified(scores, [1, 3]).timing_headers()["x-truncated-inputs"] == "1,3"


def test_a_request_is_validated_before_it_is_admitted() -> None:
    async def scenario() -> None:
        svc, batcher, _ = _service(max_client_batch=2)
        batcher.start()
        cases = [
            ([], 422, "inputs is empty", "validation"),
            (["a", "b", "c"], 413, "3 inputs; at most 2 per request (--max-client-batch)", "validation"),
            (["好", " \n"], 422, "inputs[1] is empty or whitespace", "validation"),
        ]
        for texts, status, message, kind in cases:
            with pytest.raises(ApiError) as refused:
                await svc.classify(texts, True, _stays)
            assert (refused.value.status, refused.value.message, refused.value.error_type) == (status, message, kind)
        assert batcher._reserved == 0
        svc.require_output("probabilities")
        with pytest.raises(ApiError) as missing:
            svc.require_output("logits")
        assert (missing.value.status, missing.value.message, missing.value.error_type) == (
            422,
            "this bundle's graph has no 'logits' output",
            "validation",
        )
        await batcher.close()

    asyncio.run(scenario())


def test_overloaded_and_unavailable_answers() -> None:
    async def scenario() -> None:
        svc, batcher, _ = _service(max_queue=2)
        batcher.start()
        batcher.admit(2)
        with pytest.raises(ApiError) as busy:
            await svc.classify(["好"], True, _stays)
        assert (busy.value.status, busy.value.error_type, busy.value.headers) == (
            429,
            "overloaded",
            {"Retry-After": "1"},
        )
        assert busy.value.message == "overloaded: the queue is full (2 of 2 texts waiting); retry later"
        batcher.release(2)
        await batcher.close()
        with pytest.raises(ApiError) as down:
            await svc.classify(["好"], True, _stays)
        assert (down.value.status, down.value.message) == (503, "unavailable: the server is shutting down")

    asyncio.run(scenario())


def test_a_worker_stopping_between_admission_and_queueing_is_503() -> None:
    async def scenario() -> None:
        svc, batcher, _ = _service()
        batcher.start()
        real = svc._encode

        async def encode_then_stop(texts: Sequence[str]):
            encoded = await real(texts)
            batcher._closing = True
            return encoded

        svc._encode = encode_then_stop
        with pytest.raises(ApiError) as down:
            await svc.classify(["好"], True, _stays)
        assert (down.value.status, down.value.error_type) == (503, "unhealthy")
        assert down.value.message == "unavailable: the server is shutting down" and batcher._reserved == 0
        batcher._closing = False
        await batcher.close()

    asyncio.run(scenario())


def test_answers_truncation_and_tokenized_characters() -> None:
    async def scenario() -> None:
        svc, batcher, metrics = _service()
        batcher.start()
        long = "好" * 5_000
        answer = await svc.classify(["好", long], True, _stays)
        assert answer.truncated == [1] and [s.truncated for s in answer.scores] == [False, True]
        assert answer.scores[1].rows["probabilities"][1] == 32.0  # cut at max length
        assert 1 < _value(metrics, "edge_sent_tokenized_characters_total") < 1 + len(long)  # a long text: a prefix
        with pytest.raises(ApiError) as refused:
            await svc.classify(["好", long], False, _stays)
        assert refused.value.message == (
            "inputs[1] is longer than the model's max length of 32 tokens and truncate is false"
        )
        assert refused.value.status == 422 and batcher._reserved == 0
        await batcher.close()

    asyncio.run(scenario())


def test_long_requests_are_tokenized_off_the_loop_a_few_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[bool] = []

    async def scenario() -> None:
        svc, batcher, _ = _service()
        batcher.start()
        real = svc._tokenize
        loop_thread = __import__("threading").get_ident()

        def tokenize(texts: Sequence[str]):
            threads.append(__import__("threading").get_ident() != loop_thread)
            return real(texts)

        svc._tokenize = tokenize
        await svc.classify(["好" * 20_000], True, _stays)  # at the bound: inline
        await svc.classify(["好" * 20_001], True, _stays)  # above it: on a thread
        assert svc._tokenizing._value == 2  # its place given back
        await batcher.close()

    asyncio.run(scenario())
    assert threads == [False, True]


def test_a_client_that_leaves_drops_its_queued_texts() -> None:
    async def scenario() -> None:
        batcher, metrics, tokenizer = _batcher()
        batcher._task = asyncio.get_running_loop().create_future()  # alive, never runs
        messages = iter([{"type": "http.request"}, {"type": "http.disconnect"}])

        async def receive() -> dict:
            return next(messages)

        futures = batcher.submit(tokenizer.encode(["好", "坏"]))
        with pytest.raises(ClientDisconnected):
            await service._wait(futures, receive)
        await asyncio.sleep(0)
        assert all(f.cancelled() for f in futures) and batcher.queued == 0
        assert _value(metrics, "edge_sent_dropped_texts_total") == 2
        done = asyncio.get_running_loop().create_future()
        done.set_result("scores")
        assert await service._wait([done], _stays) == ["scores"]
        batcher._task.cancel()

    asyncio.run(scenario())


def test_wait_for_disconnect_ignores_other_messages() -> None:
    async def scenario() -> int:
        seen = 0

        async def receive() -> dict:
            nonlocal seen
            seen += 1
            return {"type": "http.disconnect" if seen == 3 else "http.request"}

        await wait_for_disconnect(receive)
        return seen

    assert asyncio.run(scenario()) == 3


def test_a_texts_scores_and_a_requests_answer_cannot_be_changed() -> None:
    from dataclasses import FrozenInstanceError

    with pytest.raises(FrozenInstanceError):
        Scores({}, False, 0.0, 0.0).truncated = True  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        Classified([], []).truncated = [0]  # type: ignore[misc]
