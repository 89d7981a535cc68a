"""`edge-sent serve` on a REAL server process (python -m edge_sent serve ... --port 0, bound to 127.0.0.1, in its own
process group, always killed at teardown), plus unit tests of the batch planner and of /health's states.

Every request loop is bounded and every request has a timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
requests = pytest.importorskip("requests")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from edge_sent.runtime import Classifier  # noqa: E402
from edge_sent.runtime.serve.batching import plan_batch  # noqa: E402
from tests.conftest import DATA, TORCH_GUARD, assert_user_error, bundle_where_auto_takes_int8  # noqa: E402

KEY = "test-key-0123"
AUTH = {"Authorization": f"Bearer {KEY}"}
ORIGIN = "http://allowed.example"
TIMEOUT = 30  # seconds, for any one request
TEXTS = [line.split("\t", 1)[1] for line in (DATA / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:161]]


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def running(bundle: Path, tmp: Path, *args: str, env: dict | None = None) -> Iterator[Server]:
    """Start `edge-sent serve` on a free port; wait for /health; SIGKILL its process group at the end."""
    log = tmp / f"server-{time.monotonic_ns()}.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_sent", "serve", str(bundle), "--port", "0", *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None:
            assert time.monotonic() < deadline, "no listening line: " + log.read_text()
            assert proc.poll() is None, "server exited: " + log.read_text()
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", log.read_text())
            url = found.group(1) if found else None
            time.sleep(0.05)
        while True:
            assert time.monotonic() < deadline, "never healthy: " + log.read_text()
            try:
                if requests.get(url + "/health", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        yield Server(proc, url, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def metric_samples(server: Server) -> dict[tuple[str, frozenset], float]:
    text = requests.get(server.url + "/metrics", headers=AUTH, timeout=TIMEOUT).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scores(answer: list[dict]) -> dict[str, float]:
    return {item["label"]: item["score"] for item in answer}


def assert_ranked(answer: list[dict]) -> None:
    values = [item["score"] for item in answer]
    assert values == sorted(values, reverse=True), answer
    assert all(set(item) == {"label", "score"} for item in answer)


@pytest.fixture(scope="module")
def clf(tiny_bundle: Path) -> Classifier:
    return Classifier.load(tiny_bundle, variant="fp32", provider="cpu")


@pytest.fixture(scope="module")
def server(tiny_bundle: Path, tmp_path_factory) -> Iterator[Server]:
    """The main server: fp32 on CPU, API key from the environment, CORS for one origin, small limits."""
    with running(
        tiny_bundle,
        tmp_path_factory.mktemp("serve"),
        *("--variant", "fp32", "--provider", "cpu", "--max-client-batch", "8", "--payload-limit", "200000"),
        *("--cors-origin", ORIGIN),
        env={"EDGE_SENT_API_KEY": KEY},
    ) as s:
        yield s


@pytest.fixture(scope="module")
def slow_server(tiny_bundle: Path, tmp_path_factory) -> Iterator[Server]:
    """A queue of 8 texts, and a worker that waits 5 s for a fuller batch once two texts are queued."""
    with running(
        tiny_bundle,
        tmp_path_factory.mktemp("serve-slow"),
        *("--variant", "fp32", "--provider", "cpu", "--max-queue", "8", "--max-client-batch", "8"),
        *("--max-batch-size", "64", "--max-wait-ms", "5000"),
    ) as s:
        yield s


def post(server: Server, path: str, body: object, headers: dict | None = None) -> requests.Response:
    return requests.post(server.url + path, json=body, headers={**AUTH, **(headers or {})}, timeout=TIMEOUT)


# --- unit tests: the batch planner and /health's states -------------------------------------------------


def test_plan_batch_takes_the_oldest_then_the_cheapest_neighbours():
    lengths = [50, 10, 48, 12, 52, 100, 49]
    batch = plan_batch(lengths, max_size=3, max_tokens=10_000)
    assert [lengths[i] for i in batch] == [48, 49, 50]  # length-sorted
    assert sorted(batch) == [0, 2, 6]  # 48, 49, 50: the least padding around the oldest
    # the token budget counts padding: rows × longest
    batch = plan_batch(lengths, max_size=64, max_tokens=160)
    assert 0 in batch and len(batch) * max(lengths[i] for i in batch) <= 160
    assert sorted(batch) == [0, 2, 6]
    assert plan_batch([7], 1, 7) == [0]
    assert plan_batch([], 4, 100) == []
    # the oldest is never starved by many short newcomers
    assert 0 in plan_batch([100] + [5] * 40, max_size=8, max_tokens=10_000)
    # a text joins only if the padding it adds is at most a quarter of its own length (MAX_PADDING_SHARE)
    assert plan_batch([100, 10], max_size=8, max_tokens=10_000) == [0]
    assert plan_batch([100, 80], max_size=8, max_tokens=10_000) == [1, 0]  # 20 padding ≤ 80 / 4
    assert plan_batch([100, 79], max_size=8, max_tokens=10_000) == [0]  # 21 > 79 / 4
    assert plan_batch([12, 15], max_size=8, max_tokens=10_000) == [0, 1]  # 3 ≤ 15 / 4
    assert plan_batch([12, 16, 20], max_size=8, max_tokens=10_000) == [0, 1]  # 20 pads both rows: 2 × 4 > 20 / 4
    assert plan_batch([10, 10, 10, 40], max_size=8, max_tokens=10_000) == [0, 1, 2]  # 3 × 30 padding > 40 / 4
    # ties in added padding go to the older text
    assert sorted(plan_batch([10, 10, 10, 10], max_size=2, max_tokens=100)) == [0, 1]


def test_health_before_ready_and_while_draining(clf, tiny_bundle):
    """/health: 503 before the lifespan has started the worker, 200 while serving, 503 once draining."""
    from edge_sent.runtime.serve.app import ServerState, create_app
    from edge_sent.runtime.serve.config import ServeConfig

    state = ServerState()
    app = create_app(clf, ServeConfig(), tiny_bundle, state)

    async def get(path: str) -> tuple[int, dict]:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        await app(scope, receive, send)
        return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))

    async def scenario() -> list[tuple[int, dict]]:
        seen = [await get("/health")]
        async with app.router.lifespan_context(app):
            seen.append(await get("/health"))
            state.begin_draining()
            seen.append(await get("/health"))
        return seen

    before, serving, draining = asyncio.run(scenario())
    assert before == (503, {"error": "not ready", "error_type": "unhealthy"})
    assert serving == (200, {"status": "ok"})
    assert draining == (503, {"error": "shutting down", "error_type": "unhealthy"})


def test_server_modules_never_import_torch(tiny_bundle):
    code = (
        TORCH_GUARD
        + f"""
from edge_sent.cli import app
from edge_sent.runtime.serve.server import load
from edge_sent.runtime.serve.app import ServerState, create_app
from edge_sent.runtime.serve.config import ServeConfig
clf = load({str(tiny_bundle)!r}, 'fp32', 'cpu', 'auto', None, ServeConfig())
create_app(clf, ServeConfig(), {str(tiny_bundle)!r}, ServerState())
assert not any(m.split('.')[0] in ('torch', 'transformers', 'optimum') for m in sys.modules)
print('ok')
"""
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


# --- the TEI route ----------------------------------------------------------------------------------------


def test_predict_one_text_and_batches(server, clf):
    expected = clf.predict(TEXTS[:3])
    one = post(server, "/predict", {"inputs": TEXTS[0]})
    assert one.status_code == 200 and one.headers["content-type"] == "application/json"
    assert_ranked(one.json())
    assert scores(one.json()) == expected[0].probabilities
    assert one.json()[0]["label"] == expected[0].label
    assert "x-truncated-inputs" not in one.headers and float(one.headers["x-total-time"]) > 0
    for inputs in ([[t] for t in TEXTS[:3]], TEXTS[:3]):  # TEI's [["a"], ["b"]] and a plain list
        many = post(server, "/predict", {"inputs": inputs})
        assert many.status_code == 200
        assert [scores(answer) for answer in many.json()] == [p.probabilities for p in expected]
        for answer in many.json():
            assert_ranked(answer)


def test_predict_raw_scores_are_the_logits(server, clf):
    logits = clf.engine.run_texts(TEXTS[:2], outputs=("logits",))["logits"]
    answer = post(server, "/predict", {"inputs": TEXTS[:2], "raw_scores": True}).json()
    for row, ranked in zip(logits, answer, strict=True):
        assert_ranked(ranked)
        assert scores(ranked) == {label: float(v) for label, v in zip(clf.labels, row, strict=True)}
    assert abs(sum(scores(answer[0]).values()) - 1) > 1e-3  # not probabilities


def test_predict_truncates_and_flags_or_refuses(server, clf):
    long_text = "好" * (clf.max_length * 2)
    expected = clf.predict(["短", long_text])
    assert expected[1].truncated
    answer = post(server, "/predict", {"inputs": ["短", long_text]})
    assert answer.status_code == 200 and answer.headers["x-truncated-inputs"] == "1"
    assert [scores(a) for a in answer.json()] == [p.probabilities for p in expected]
    refused = post(server, "/predict", {"inputs": ["短", long_text], "truncate": False})
    assert refused.status_code == 422
    assert refused.json()["error_type"] == "validation" and "inputs[1]" in refused.json()["error"]
    assert post(server, "/predict", {"inputs": "短", "truncate": False}).status_code == 200
    huge = "好" * 30_000  # tokenized on a thread, off the event loop
    answer = post(server, "/predict", {"inputs": [huge]})
    assert answer.status_code == 200 and answer.headers["x-truncated-inputs"] == "0"
    assert scores(answer.json()[0]) == clf.predict([huge])[0].probabilities


# --- the Hugging Face Inference API -----------------------------------------------------------------------


def test_inference_api_shapes_and_parameters(server, clf):
    expected = clf.predict(TEXTS[:2])
    logits = clf.engine.run_texts(TEXTS[:1], outputs=("logits",))["logits"][0]
    answer = post(server, "/", {"inputs": TEXTS[0]})
    assert answer.status_code == 200 and len(answer.json()) == 1
    assert_ranked(answer.json()[0])
    assert scores(answer.json()[0]) == expected[0].probabilities
    top = post(server, "/", {"inputs": TEXTS[0], "parameters": {"top_k": 1}}).json()
    assert top == [[{"label": expected[0].label, "score": expected[0].probabilities[expected[0].label]}]]
    raw = post(server, "/", {"inputs": TEXTS[0], "parameters": {"function_to_apply": "none"}}).json()[0]
    assert scores(raw) == {label: float(v) for label, v in zip(clf.labels, logits, strict=True)}
    sig = post(server, "/", {"inputs": TEXTS[0], "parameters": {"function_to_apply": "sigmoid", "top_k": None}})
    want = {label: 1 / (1 + np.exp(-np.float64(v))) for label, v in zip(clf.labels, logits, strict=True)}
    assert scores(sig.json()[0]) == pytest.approx(want, rel=1e-12)
    both = post(server, "/", {"inputs": TEXTS[:2], "options": {"wait_for_model": True}}).json()
    assert [scores(a) for a in both] == [p.probabilities for p in expected]


def test_real_huggingface_hub_client(server, clf, tmp_path):
    """huggingface_hub.InferenceClient(model=URL).text_classification(...) unchanged (its own process: the test
    session runs with HF_HUB_OFFLINE=1, which makes the client refuse every URL)."""
    pytest.importorskip("huggingface_hub")
    code = f"""
import json
from huggingface_hub import InferenceClient
client = InferenceClient(model={server.url!r}, token={KEY!r})
out = [[(e.label, e.score) for e in client.text_classification(t)] for t in {TEXTS[:3]!r}]
out.append([(e.label, e.score) for e in client.text_classification({TEXTS[0]!r}, top_k=1)])
try:
    InferenceClient(model={server.url!r}, token='wrong').text_classification('x')
    out.append('no error')
except Exception as exc:
    out.append(getattr(getattr(exc, 'response', None), 'status_code', repr(exc)))
print(json.dumps(out))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | {"HF_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    *answers, top, wrong_key = json.loads(proc.stdout)
    for answer, p in zip(answers, clf.predict(TEXTS[:3]), strict=True):
        assert dict(map(tuple, answer)) == p.probabilities
        assert answer[0][0] == p.label
    best = clf.predict(TEXTS[:1])[0]
    assert top == [[best.label, best.probabilities[best.label]]]
    assert wrong_key == 401


# --- concurrency: batched answers are exactly the in-process answers --------------------------------------


def test_64_concurrent_clients_get_the_in_process_answers(server, clf):
    expected = {text: p.probabilities for text, p in zip(TEXTS, clf.predict(TEXTS), strict=True)}
    before = metric_samples(server)
    failures: list[str] = []
    sent = [0] * 64
    start = threading.Barrier(64)

    def client(n: int) -> None:
        session = requests.Session()
        session.headers.update(AUTH)
        start.wait(timeout=60)
        for round_ in range(4):
            size = 1 + (n + round_) % 3  # 1, 2 or 3 texts a request
            texts = [TEXTS[(n * 7 + round_ * 31 + k) % len(TEXTS)] for k in range(size)]
            body = {"inputs": texts[0]} if size == 1 else {"inputs": [[t] for t in texts]}
            try:
                reply = session.post(server.url + "/predict", json=body, timeout=TIMEOUT)
            except requests.RequestException as exc:
                failures.append(repr(exc))
                continue
            if reply.status_code != 200:
                failures.append(f"{reply.status_code} {reply.text}")
                continue
            answers = [reply.json()] if size == 1 else reply.json()
            for text, answer in zip(texts, answers, strict=True):
                if scores(answer) != expected[text]:
                    failures.append(f"wrong answer for text {TEXTS.index(text)}: {answer} != {expected[text]}")
            sent[n] += size

    threads = [threading.Thread(target=client, args=(n,)) for n in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not any(t.is_alive() for t in threads)
    assert not failures, failures[:5]
    after = metric_samples(server)
    texts = sample(after, "edge_sent_texts_total") - sample(before, "edge_sent_texts_total")
    batches = sample(after, "edge_sent_batch_size_count") - sample(before, "edge_sent_batch_size_count")
    assert texts == sum(sent) and sum(sent) > 64 * 4
    # dynamic batching put several requests' texts together: fewer batches than requests, and a batch larger than
    # any one request (3 texts at most): above the histogram's 4-text bucket
    assert batches < 64 * 4
    over_4 = batches - (
        sample(after, "edge_sent_batch_size_bucket", le="4.0") - sample(before, "edge_sent_batch_size_bucket", le="4.0")
    )
    assert over_4 > 0
    assert sample(after, "edge_sent_queue_size") == 0


# --- errors -----------------------------------------------------------------------------------------------

BAD = [
    ("malformed JSON", "/predict", b'{"inputs": ', 400, "invalid_json"),
    ("invalid UTF-8", "/predict", b'{"inputs": "\xff"}', 400, "invalid_json"),
    ("empty body", "/predict", b"", 422, "validation"),
    ("not an object", "/predict", b"[1, 2]", 422, "validation"),
    ("no inputs", "/predict", b'{"truncate": true}', 422, "validation"),
    ("number", "/predict", b'{"inputs": 5}', 422, "validation"),
    ("numbers", "/predict", b'{"inputs": [1, 2]}', 422, "validation"),
    ("null text", "/predict", b'{"inputs": ["a", null]}', 422, "validation"),
    ("text pair", "/predict", b'{"inputs": [["a", "b"]]}', 422, "validation"),
    ("string bool", "/predict", b'{"inputs": "a", "truncate": "yes"}', 422, "validation"),
    ("int bool", "/predict", b'{"inputs": "a", "raw_scores": 1}', 422, "validation"),
    ("unknown field", "/predict", b'{"inputs": "a", "top_k": 1}', 422, "validation"),
    ("left truncation", "/predict", b'{"inputs": "a", "truncation_direction": "left"}', 422, "validation"),
    ("empty text", "/predict", b'{"inputs": ""}', 422, "validation"),
    ("whitespace", "/predict", b'{"inputs": " \\n\\t "}', 422, "validation"),
    ("whitespace in a batch", "/predict", b'{"inputs": ["ok", "  "]}', 422, "validation"),
    ("empty list", "/predict", b'{"inputs": []}', 422, "validation"),
    ("too many inputs", "/predict", json.dumps({"inputs": ["a"] * 9}).encode(), 413, "validation"),
    ("HF empty", "/", b'{"inputs": "   "}', 422, "validation"),
    ("HF top_k 0", "/", b'{"inputs": "a", "parameters": {"top_k": 0}}', 422, "validation"),
    ("HF top_k float", "/", b'{"inputs": "a", "parameters": {"top_k": 1.5}}', 422, "validation"),
    ("HF function", "/", b'{"inputs": "a", "parameters": {"function_to_apply": "relu"}}', 422, "validation"),
    ("HF parameters", "/", b'{"inputs": "a", "parameters": "x"}', 422, "validation"),
    ("HF too many", "/", json.dumps({"inputs": ["a"] * 9}).encode(), 413, "validation"),
    ("over the payload limit", "/predict", json.dumps({"inputs": "好" * 40_000}).encode(), 413, "payload_too_large"),
]


@pytest.mark.parametrize(("what", "path", "body", "status", "error_type"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_json_error(server, what, path, body, status, error_type):
    reply = requests.post(
        server.url + path, data=body, headers={**AUTH, "Content-Type": "application/json"}, timeout=TIMEOUT
    )
    assert reply.status_code == status, reply.text
    assert set(reply.json()) == {"error", "error_type"} and reply.json()["error_type"] == error_type
    assert reply.json()["error"]


def test_other_http_errors_are_json_and_the_server_survives(server):
    for method, path, status in (("GET", "/predict", 405), ("GET", "/nope", 404), ("DELETE", "/", 405)):
        reply = requests.request(method, server.url + path, headers=AUTH, timeout=TIMEOUT)
        assert reply.status_code == status and set(reply.json()) == {"error", "error_type"}
    # a declared Content-Length over the limit: answered 413 (the body is drained, the client reads the answer)
    big = b'{"inputs": "' + b"a" * 400_000 + b'"}'
    reply = requests.post(server.url + "/predict", data=big, headers=AUTH, timeout=TIMEOUT)
    assert reply.status_code == 413
    # no Content-Length (chunked transfer): counted while it streams
    chunks = (b'{"inputs": "' if i == 0 else b"a" * 50_000 for i in range(6))
    reply = requests.post(server.url + "/predict", data=chunks, headers=AUTH, timeout=TIMEOUT)
    assert reply.status_code == 413 and reply.json()["error_type"] == "payload_too_large"
    small = (part for part in (b'{"inputs": ', b'"ok"}'))
    assert requests.post(server.url + "/predict", data=small, headers=AUTH, timeout=TIMEOUT).status_code == 200
    # no Content-Type at all, or a form type (curl -d's default): still parsed as JSON
    for headers in ({}, {"Content-Type": "application/x-www-form-urlencoded"}):
        reply = requests.post(server.url + "/predict", data=b'{"inputs": "ok"}', headers={**AUTH, **headers})
        assert reply.status_code == 200, reply.text
    assert requests.get(server.url + "/health", timeout=TIMEOUT).status_code == 200
    assert post(server, "/predict", {"inputs": "还好"}).status_code == 200


def test_api_key(server):
    body = {"inputs": "还好"}
    missing = requests.post(server.url + "/predict", json=body, timeout=TIMEOUT)
    wrong = requests.post(server.url + "/", json=body, headers={"Authorization": "Bearer nope"}, timeout=TIMEOUT)
    for reply in (missing, wrong):
        assert reply.status_code == 401 and reply.json()["error_type"] == "unauthorized"
        assert reply.headers["www-authenticate"] == "Bearer"
    for path in ("/info", "/metrics"):
        assert requests.get(server.url + path, timeout=TIMEOUT).status_code == 401
    for path in ("/health", "/openapi.json", "/docs"):  # open: probes and docs
        assert requests.get(server.url + path, timeout=TIMEOUT).status_code == 200
    assert post(server, "/predict", body).status_code == 200


def test_cors(server):
    preflight = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    allowed = requests.options(server.url + "/predict", headers=preflight, timeout=TIMEOUT)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ORIGIN
    other = requests.options(server.url + "/predict", headers={**preflight, "Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    reply = post(server, "/predict", {"inputs": "还好"}, headers={"Origin": ORIGIN})
    assert reply.status_code == 200 and reply.headers["access-control-allow-origin"] == ORIGIN
    assert "x-total-time" in reply.headers["access-control-expose-headers"]


# --- info, docs, metrics ----------------------------------------------------------------------------------


def test_info_and_docs(server, clf, tiny_bundle):
    info = requests.get(server.url + "/info", headers=AUTH, timeout=TIMEOUT).json()
    assert info["bundle"] == str(tiny_bundle) and info["variant"] == "fp32"
    assert info["provider"] == "CPUExecutionProvider" and info["labels"] == clf.labels
    assert info["max_length"] == clf.max_length and info["max_client_batch"] == 8
    batching = {"max_batch_size": 32, "max_batch_tokens": 8192, "max_wait_ms": 0.0, "max_queue": 1024}
    assert info["batching"] == batching | {"scope": "queue"} and info["batch_independent"] is True
    assert info["graceful_timeout_s"] == 30.0
    assert info["version"] == __import__("edge_sent").__version__ and info["auth"] is True
    spec = requests.get(server.url + "/openapi.json", timeout=TIMEOUT).json()
    assert {"/predict", "/", "/health", "/info", "/metrics"} <= set(spec["paths"])
    assert {"PredictRequest", "HfRequest", "HfParameters"} <= set(spec["components"]["schemas"])
    assert "swagger" in requests.get(server.url + "/docs", timeout=TIMEOUT).text.lower()


def test_metrics_count_what_happened(server):
    before = metric_samples(server)
    for _ in range(3):
        assert post(server, "/predict", {"inputs": ["好", "坏"]}).status_code == 200
    assert post(server, "/", {"inputs": "好"}).status_code == 200
    for _ in range(2):
        assert post(server, "/predict", {"inputs": ""}).status_code == 422
    assert requests.post(server.url + "/predict", json={"inputs": "好"}, timeout=TIMEOUT).status_code == 401
    after = metric_samples(server)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("edge_sent_requests_total", route="/predict", status="200") == 3
    assert delta("edge_sent_requests_total", route="/", status="200") == 1
    assert delta("edge_sent_requests_total", route="/predict", status="422") == 2
    assert delta("edge_sent_requests_total", route="/predict", status="401") == 1
    assert delta("edge_sent_request_duration_seconds_count", route="/predict") == 6
    assert delta("edge_sent_texts_total") == 7
    assert delta("edge_sent_queue_duration_seconds_count") == 7
    batches = delta("edge_sent_batch_size_count")
    assert 4 <= batches <= 7 and delta("edge_sent_inference_duration_seconds_count") == batches
    assert delta("edge_sent_batch_size_sum") == 7
    assert delta("edge_sent_batch_tokens_sum") >= 7 * 3  # [CLS] text [SEP], padding included
    assert sample(after, "edge_sent_queue_size") == 0
    assert sample(after, "edge_sent_info", variant="fp32", provider="CPUExecutionProvider", version="0.1.0") == 1


# --- overload, disconnects, shutdown, failed load ----------------------------------------------------------


@contextmanager
def queue_held_open(server: Server) -> Iterator[list]:
    """One request with two texts: both are queued at once, so the worker waits (--max-wait-ms) for a fuller
    batch. Yields the list that receives that request's status once it is answered."""
    status: list = []

    def blocker() -> None:
        body = {"inputs": TEXTS[100:102]}
        status.append(requests.post(server.url + "/predict", json=body, timeout=TIMEOUT).status_code)

    thread = threading.Thread(target=blocker)
    thread.start()
    try:
        wait_for_queue(server, 2)
        yield status
    finally:
        thread.join(timeout=60)


def wait_for_queue(server: Server, size: int) -> None:
    deadline = time.monotonic() + 10
    while sample(metric_samples(server), "edge_sent_queue_size") < size:
        assert time.monotonic() < deadline, f"never {size} texts queued"
        time.sleep(0.01)


def test_overload_gives_429_at_once_then_full_service(slow_server):
    """A queue of 8 held open (2 texts queued, the worker waiting 5 s for more), then 32 simultaneous requests:
    6 are queued and answered 200 after the wait, 26 get 429 at once; nothing else. Then lone requests run at once."""
    before = metric_samples(slow_server)
    results: list[tuple[int, float, dict]] = []
    start = threading.Barrier(32)

    def client(n: int) -> None:
        start.wait(timeout=60)
        t0 = time.perf_counter()
        reply = requests.post(slow_server.url + "/predict", json={"inputs": TEXTS[n]}, timeout=TIMEOUT)
        results.append((reply.status_code, time.perf_counter() - t0, reply.json()))

    with queue_held_open(slow_server) as blocker:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert blocker == [200]
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200] * 6 + [429] * 26, statuses
    for status, seconds, body in results:
        if status == 429:
            assert body["error_type"] == "overloaded" and seconds < 2.5  # refused at once, not after the 5 s wait
        else:
            assert seconds > 2.0  # these did wait for the batch
    after = metric_samples(slow_server)
    rejected = sample(after, "edge_sent_requests_total", route="/predict", status="429") - sample(
        before, "edge_sent_requests_total", route="/predict", status="429"
    )
    assert rejected == 26
    for text in TEXTS[:5]:  # full service right after, and a lone request does not wait
        t0 = time.perf_counter()
        assert requests.post(slow_server.url + "/predict", json={"inputs": text}, timeout=TIMEOUT).status_code == 200
        assert time.perf_counter() - t0 < 2.5  # (generous: a loaded 2-core CI machine)


def test_max_wait_only_until_the_batch_is_full(tiny_bundle, tmp_path, clf):
    """--max-wait-ms 5000 with batches of at most 4 texts and 2 × max length tokens: two short texts wait for
    more; four (size cap) or two long ones (token budget) run at once."""
    budget = 2 * clf.max_length
    args = ("--variant", "fp32", "--provider", "cpu", "--max-batch-size", "4", "--max-wait-ms", "5000")
    with running(tiny_bundle, tmp_path, *args, "--max-batch-tokens", str(budget)) as srv:

        def seconds(inputs: list[str]) -> float:
            t0 = time.perf_counter()
            assert requests.post(srv.url + "/predict", json={"inputs": inputs}, timeout=TIMEOUT).status_code == 200
            return time.perf_counter() - t0

        long_text = "好" * clf.max_length  # max length tokens once truncated
        assert seconds(["好", "坏"]) > 4.0
        assert seconds(["好", "坏", "好", "坏"]) < 2.5
        assert seconds([long_text, long_text + "!"]) < 2.5  # (2 + 1) × max length > the budget
        assert seconds(["好"]) < 2.5


def raw_request(url: str, body: dict) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    data = json.dumps(body).encode()
    sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)
    head = f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(data)}\r\n\r\n"
    sock.sendall(head.encode() + data)
    return sock


def test_client_disconnect_while_queued_drops_its_work(slow_server):
    """Clients that hang up while their texts wait for a batch: the texts leave the queue and never run."""
    before = metric_samples(slow_server)
    sockets = [raw_request(slow_server.url, {"inputs": TEXTS[:2]})]  # both queued at once: the worker waits
    try:
        wait_for_queue(slow_server, 2)
        sockets += [raw_request(slow_server.url, {"inputs": TEXTS[n]}) for n in range(2, 7)]
        wait_for_queue(slow_server, 7)
    finally:
        for sock in sockets:
            sock.close()
    deadline = time.monotonic() + 10
    while True:
        after = metric_samples(slow_server)
        dropped = sample(after, "edge_sent_dropped_texts_total") - sample(before, "edge_sent_dropped_texts_total")
        if dropped == 7 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert dropped == 7
    assert sample(after, "edge_sent_queue_size") == 0
    assert sample(after, "edge_sent_texts_total") == sample(before, "edge_sent_texts_total")  # none of them ran
    closed = sample(after, "edge_sent_requests_total", route="/predict", status="499") - sample(
        before, "edge_sent_requests_total", route="/predict", status="499"
    )
    assert closed == 6
    # a client that leaves halfway through sending its body: counted as 499, not as a server error
    host, port = slow_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(b'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"inputs": ')
    deadline = time.monotonic() + 10
    while sample(metric_samples(slow_server), "edge_sent_requests_total", route="/predict", status="499") < (
        sample(after, "edge_sent_requests_total", route="/predict", status="499") + 1
    ):
        assert time.monotonic() < deadline, "the half-sent request was not counted"
        time.sleep(0.02)
    assert sample(metric_samples(slow_server), "edge_sent_requests_total", route="/predict", status="500") == 0
    assert requests.post(slow_server.url + "/predict", json={"inputs": "还好"}, timeout=TIMEOUT).status_code == 200


def test_sigterm_finishes_queued_requests_and_exits_0(tiny_bundle, tmp_path):
    """20 requests queued behind a 15 s batching wait; SIGTERM: every one is answered at once (the wait is cut
    short), no new connection is accepted, the process exits 0."""
    args = ("--variant", "fp32", "--provider", "cpu", "--max-batch-size", "64", "--max-wait-ms", "15000")
    with running(tiny_bundle, tmp_path, *args) as srv:
        results: list[int | str] = []

        def client(n: int) -> None:
            try:
                reply = requests.post(srv.url + "/predict", json={"inputs": TEXTS[n]}, timeout=TIMEOUT)
                results.append(reply.status_code)
            except requests.RequestException as exc:
                results.append(repr(exc))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
        with queue_held_open(srv) as blocker:
            for t in threads:
                t.start()
            wait_for_queue(srv, 22)
            signalled = time.monotonic()
            srv.proc.send_signal(signal.SIGTERM)
            for t in threads:
                t.join(timeout=60)
        answered = time.monotonic() - signalled
        assert results == [200] * 20 and blocker == [200], results
        assert answered < 8.0  # not after the 15 s wait
        assert srv.proc.wait(timeout=30) == 0, srv.output()
        assert "Traceback" not in srv.output()


def _open_upload(url: str, body: bytes, sent: int) -> socket.socket:
    """A POST /predict whose first `sent` body bytes are on the wire (the server is reading its body)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)
    head = f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body[:sent])
    return sock


def _status(sock: socket.socket) -> int:
    reply = b""
    while b"\r\n" not in reply:
        chunk = sock.recv(65536)
        if not chunk:
            break
        reply += chunk
    return int(reply.split(b" ", 2)[1]) if reply else 0


def test_sigterm_drain_is_bounded_refuses_new_requests_and_finishes_one_in_flight(tiny_bundle, tmp_path):
    """Two uploads open at SIGTERM: one completes (200); one stalls, and only --graceful-timeout bounds the exit.
    While the server drains (still running), a new request is refused (503 or connection refused)."""
    args = ("--variant", "fp32", "--provider", "cpu", "--graceful-timeout", "3")
    with running(tiny_bundle, tmp_path, *args) as srv:
        body = json.dumps({"inputs": TEXTS[0]}).encode()
        in_flight = _open_upload(srv.url, body, 5)
        stalled = _open_upload(srv.url, body, 5)
        try:
            time.sleep(0.5)  # both requests are being read
            srv.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert srv.proc.poll() is None  # draining: the stalled upload holds it open
            try:
                refused = requests.post(srv.url + "/predict", json={"inputs": "好"}, timeout=5).status_code == 503
            except requests.ConnectionError:
                refused = True
            assert refused
            assert srv.proc.poll() is None  # the refusal was seen during the drain, not after the exit
            in_flight.sendall(body[5:])
            assert _status(in_flight) == 200
            assert srv.proc.wait(timeout=30) == 0, srv.output()  # the stalled upload did not hold it forever
        finally:
            in_flight.close()
            stalled.close()


def test_failed_load_exits_nonzero_with_one_line(tiny_bundle, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    with (broken / "model.onnx").open("ab") as f:
        f.write(b"\0")
    cmd = [sys.executable, "-m", "edge_sent", "serve", str(broken), "--variant", "fp32", "--provider", "cpu"]
    proc = subprocess.run([*cmd, "--port", "0"], capture_output=True, text=True, timeout=120)
    assert_user_error(proc, "model.onnx")
    assert "listening" not in proc.stderr
    bad_option = subprocess.run([*cmd, "--max-batch-size", "0"], capture_output=True, text=True, timeout=120)
    assert_user_error(bad_option, "--max-batch-size")
    small = [sys.executable, "-m", "edge_sent", "serve", str(tiny_bundle), "--max-batch-tokens", "8", "--port", "0"]
    assert_user_error(subprocess.run(small, capture_output=True, text=True, timeout=120), "--max-batch-tokens")
    with socket.create_server(("127.0.0.1", 0)) as taken:  # a busy port: one line, after the bundle loaded
        busy = [sys.executable, "-m", "edge_sent", "serve", str(tiny_bundle), "--port", str(taken.getsockname()[1])]
        assert_user_error(subprocess.run(busy, capture_output=True, text=True, timeout=120), "cannot listen")


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def test_huge_texts_against_a_small_queue_refuse_early_and_tokenize_only_what_the_model_reads(tiny_bundle, tmp_path):
    """32 clients post ~1 MB texts (2 rounds) at a queue of 4 texts while one client sends short requests: only
    200/413/429; the tokenizer sees a prefix of each admitted text, nothing of a refused one; memory stays bounded."""
    args = ("--variant", "fp32", "--provider", "cpu", "--max-queue", "4", "--max-client-batch", "4")
    args += ("--payload-limit", "3000000")
    huge = "".join(TEXTS) * 12  # ~600,000 characters, ~1.8 MB of UTF-8
    with running(tiny_bundle, tmp_path, *args) as srv:
        rss_before = _rss_mb(srv.proc.pid)
        before = metric_samples(srv)
        statuses: list[int] = []
        short_ms: list[float] = []
        start = threading.Barrier(33)

        def big(n: int) -> None:
            start.wait(timeout=60)
            for round_ in range(2):
                body = {"inputs": huge[n + round_ :]}
                try:
                    statuses.append(requests.post(srv.url + "/predict", json=body, timeout=120).status_code)
                except requests.RequestException as exc:
                    statuses.append(-1)
                    print(repr(exc))

        def short() -> None:
            start.wait(timeout=60)
            for n in range(20):
                t0 = time.perf_counter()
                reply = requests.post(srv.url + "/predict", json={"inputs": TEXTS[n]}, timeout=120)
                short_ms.append((time.perf_counter() - t0) * 1000)
                statuses.append(reply.status_code)

        threads = [threading.Thread(target=big, args=(n,)) for n in range(32)] + [threading.Thread(target=short)]
        for t in threads:
            t.start()
        peak = rss_before
        while any(t.is_alive() for t in threads):
            peak = max(peak, _rss_mb(srv.proc.pid))
            time.sleep(0.05)
        after = metric_samples(srv)
    assert set(statuses) <= {200, 413, 429} and len(statuses) == 32 * 2 + 20, sorted(set(statuses))
    answered = sample(after, "edge_sent_texts_total") - sample(before, "edge_sent_texts_total")
    tokenized = sample(after, "edge_sent_tokenized_characters_total") - sample(
        before, "edge_sent_tokenized_characters_total"
    )
    assert answered == statuses.count(200) > 20  # some huge texts were served
    # each answered text tokenized from a prefix of 8 × max length characters (Chinese: one token a character)
    assert tokenized <= answered * 8 * srv_max_length(tiny_bundle), (tokenized, answered)
    assert peak - rss_before < 1500, (rss_before, peak)  # MB; 64 bodies of 1.8 MB posted
    short_ms.sort()
    print(
        f"short requests: p50 {short_ms[len(short_ms) // 2]:.0f} ms, max {short_ms[-1]:.0f} ms; rss {rss_before:.0f} "
        f"→ peak {peak:.0f} MB; statuses {sorted((s, statuses.count(s)) for s in set(statuses))}"
    )


def srv_max_length(bundle: Path) -> int:
    return int(json.loads((bundle / "manifest.json").read_text())["max_length"])


def test_auto_serves_a_batch_independent_variant_and_a_named_dependent_one_per_request(tiny_bundle, tmp_path, clf):
    """Where the recorded ranking takes int8 (batch-dependent), `serve`'s auto takes int8-block; a named int8 runs
    each request in batches of its own texts: every client gets int8's answer for its request alone."""
    bundle = bundle_where_auto_takes_int8(tiny_bundle, tmp_path / "b")
    assert Classifier.load(bundle, provider="cpu", probe=False).variant == "int8"  # what predict and score take
    env = {"EDGE_SENT_PROBE": "0"}
    with running(bundle, tmp_path, "--provider", "cpu", env=env) as srv:
        info = requests.get(srv.url + "/info", timeout=TIMEOUT).json()
        assert (info["variant"], info["batch_independent"], info["batching"]["scope"]) == ("int8-block", True, "queue")
    int8 = Classifier.load(bundle, variant="int8", provider="cpu")
    texts = TEXTS[:24]
    alone = {t: int8.predict([t])[0].probabilities for t in texts}
    args = ("--provider", "cpu", "--variant", "int8", "--max-wait-ms", "300", "--max-batch-size", "64")
    with running(bundle, tmp_path, *args, env=env) as srv:
        info = requests.get(srv.url + "/info", timeout=TIMEOUT).json()
        assert (info["variant"], info["batch_independent"], info["batching"]["scope"]) == ("int8", False, "request")
        assert "each request runs in batches of its own texts" in srv.output()
        got: dict[str, dict] = {}
        start = threading.Barrier(len(texts))

        def client(text: str) -> None:
            start.wait(timeout=60)
            got[text] = scores(requests.post(srv.url + "/predict", json={"inputs": text}, timeout=TIMEOUT).json())

        threads = [threading.Thread(target=client, args=(t,)) for t in texts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    spread = max(abs(got[t][label] - alone[t][label]) for t in texts for label in clf.labels)
    assert spread < 1e-5, spread
