"""The ASGI app: routes for TEI (`POST /predict`), the Hugging Face Inference API (`POST /`), health, info,
metrics and OpenAPI docs, over one `Batcher`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from edge_sent import __version__
from edge_sent.runtime.classifier import Classifier
from edge_sent.runtime.engine import PROBABILITIES
from edge_sent.runtime.host.candidates import engine_fields
from edge_sent.runtime.serve.batching import Batcher
from edge_sent.runtime.serve.config import ServeConfig
from edge_sent.runtime.serve.errors import ClientDisconnected, error_response, install_error_handlers
from edge_sent.runtime.serve.metrics import ServeMetrics
from edge_sent.runtime.serve.middleware import ApiKey, PayloadLimit, RequestMetrics
from edge_sent.runtime.serve.schemas import ErrorBody, HfRequest, Label, PredictRequest, flatten, parse_body
from edge_sent.runtime.serve.scoring import LOGITS, output_for, ranked, transformed
from edge_sent.runtime.serve.service import Classified, ClassifyService

ROUTES = frozenset({"/", "/predict", "/health", "/info", "/metrics", "/docs", "/openapi.json"})
OPEN_PATHS = frozenset({"/health", "/docs", "/openapi.json", "/docs/oauth2-redirect"})
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": what}
    for code, what in {
        400: "malformed JSON",
        401: "missing or wrong API key",
        413: "body over --payload-limit, or more inputs than --max-client-batch",
        422: "wrong types, unknown fields, empty or whitespace text, too long with truncate=false",
        429: "the queue is full: retry later",
        503: "shutting down, or the batch worker stopped: retrying here will not help",
    }.items()
}


@dataclass
class ServerState:
    """Set by the lifespan and by the signal handler (both on the event loop's thread)."""

    ready: bool = False
    draining: bool = False
    on_drain: list[Callable[[], None]] = field(default_factory=list)

    def begin_draining(self) -> None:
        """/health turns 503 and queued texts run without waiting for more."""
        self.draining = True
        for hook in self.on_drain:
            hook()


def _body(model: type) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


async def _read(request: Request) -> bytes:
    try:
        return await request.body()
    except ClientDisconnect:
        raise ClientDisconnected from None


def _answer(payload: Any, classified: Classified, start: float) -> JSONResponse:
    headers = classified.timing_headers()
    headers["x-total-time"] = f"{(time.perf_counter() - start) * 1000:.3f}"
    return JSONResponse(payload, headers=headers)


@dataclass(frozen=True)
class Served:
    """What the routes serve: the classifier and its batching queue, the settings, the metrics (on `app.state`)."""

    classifier: Classifier
    config: ServeConfig
    bundle: Path
    state: ServerState
    batcher: Batcher
    service: ClassifyService
    metrics: ServeMetrics
    outputs: list[str]
    batch_independent: bool

    @property
    def labels(self) -> list[str]:
        return self.classifier.labels


def _served(request: Request) -> Served:
    served: Served = request.app.state.served
    return served


async def predict(request: Request) -> Response:
    """Text Embeddings Inference's classifier route: `{"inputs": "text"}` → labels with scores, best first;
    a list of texts → one such list per text."""
    served, start = _served(request), time.perf_counter()
    body: PredictRequest = parse_body(PredictRequest, await _read(request))
    texts, single = flatten(body.inputs)
    output = LOGITS if body.raw_scores else PROBABILITIES
    served.service.require_output(output)
    classified = await served.service.classify(texts, body.truncate, request.receive)
    answers = [ranked(served.labels, s.rows[output]) for s in classified.scores]
    return _answer(answers[0] if single else answers, classified, start)


async def inference_api(request: Request) -> Response:
    """The Hugging Face Inference API's text classification: `{"inputs": "text", "parameters": {"top_k",
    "function_to_apply"}}` → `[[{"label", "score"}, ...]]` (`huggingface_hub.InferenceClient` works as is)."""
    served, start = _served(request), time.perf_counter()
    body: HfRequest = parse_body(HfRequest, await _read(request))
    texts, _ = flatten(body.inputs)
    function = body.parameters.function_to_apply if body.parameters else None
    top_k = body.parameters.top_k if body.parameters else None
    served.service.require_output(output_for(function))
    classified = await served.service.classify(texts, True, request.receive)
    answers = [ranked(served.labels, transformed(function, s.rows), top_k) for s in classified.scores]
    return _answer(answers, classified, start)


async def health(request: Request) -> Response:
    """200 while the model answers; 503 before it is ready and while shutting down."""
    served = _served(request)
    if served.state.draining:
        return error_response(503, "shutting down", "unhealthy")
    if not served.state.ready or not served.batcher.alive:
        return error_response(503, "not ready", "unhealthy")
    return JSONResponse({"status": "ok"})


async def info(request: Request) -> JSONResponse:
    """The model and the batching settings."""
    served = _served(request)
    classifier, config, manifest = served.classifier, served.config, served.classifier.manifest
    return JSONResponse(
        {
            "bundle": str(served.bundle),
            "encoder": (manifest.data.get("encoder") or {}).get("spec"),
            "random_weights": manifest.random_weights,
            "variant": classifier.variant,
            "variant_reason": classifier.why,  # `auto`: what this host measured (startup probe), or "named"
            "provider": classifier.providers[0],
            **engine_fields(classifier.variant, classifier.provider),  # engine (onnxruntime, openvino), its version
            "precision": classifier.precision,
            "labels": served.labels,
            "max_length": classifier.max_length,
            "outputs": served.outputs,
            "batch_independent": served.batch_independent,  # False: batches hold one request's texts only
            "batching": asdict(config.batching) | {"scope": "request" if served.batcher.per_request else "queue"},
            "graceful_timeout_s": config.graceful_timeout_s,
            "max_client_batch": config.max_client_batch,
            "payload_limit": config.payload_limit,
            "auth": config.api_key is not None,
            "version": __version__,
        }
    )


async def prometheus(request: Request) -> Response:
    """Prometheus text format."""
    data, content_type = _served(request).metrics.render()
    return Response(data, media_type=content_type)


def _add_routes(app: FastAPI) -> None:
    app.add_api_route(
        "/predict",
        predict,
        methods=["POST"],
        response_model=list[Label] | list[list[Label]],
        responses=ERRORS,
        openapi_extra=_body(PredictRequest),
    )
    app.add_api_route(
        "/",
        inference_api,
        methods=["POST"],
        response_model=list[list[Label]],
        responses=ERRORS,
        openapi_extra=_body(HfRequest),
    )
    not_ready: dict[int | str, dict[str, Any]] = {
        503: {"model": ErrorBody, "description": "shutting down or not ready"}
    }
    app.add_api_route("/health", health, methods=["GET"], responses=not_ready)
    app.add_api_route("/info", info, methods=["GET"])
    app.add_api_route("/metrics", prometheus, methods=["GET"])


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The OpenAPI schema with the request bodies' models (the routes parse their bodies themselves)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (PredictRequest, HfRequest):
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def _add_middleware(app: FastAPI, config: ServeConfig, metrics: ServeMetrics) -> None:
    # added innermost first: the last one added is the outermost
    app.add_middleware(PayloadLimit, limit=config.payload_limit)
    if config.api_key is not None:
        app.add_middleware(ApiKey, key=config.api_key, open_paths=OPEN_PATHS)
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["x-total-time", "x-queue-time", "x-inference-time", "x-truncated-inputs"],
        )
    app.add_middleware(RequestMetrics, metrics=metrics, routes=ROUTES)


def _served_for(classifier: Classifier, config: ServeConfig, bundle: Path, state: ServerState) -> Served:
    outputs = [name for name in (PROBABILITIES, LOGITS) if name in classifier.engine.output_names]
    metrics = ServeMetrics(classifier.variant, classifier.providers[0], __version__)
    batch_independent = classifier.manifest.batch_independent(classifier.variant)
    batcher = Batcher(classifier.engine, config.batching, outputs, metrics, per_request=not batch_independent)
    service = ClassifyService(classifier, batcher, config.max_client_batch, metrics)
    state.on_drain.append(batcher.flush)
    return Served(classifier, config, bundle, state, batcher, service, metrics, outputs, batch_independent)


def create_app(classifier: Classifier, config: ServeConfig, bundle: Path, state: ServerState) -> FastAPI:
    """The app: one batching queue over the classifier, the routes, the OpenAPI schema and the middleware."""
    served = _served_for(classifier, config, bundle, state)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        served.batcher.start()
        state.ready = True
        yield
        state.begin_draining()
        await served.batcher.close()  # runs whatever is still queued

    app = FastAPI(
        title="edge-sent",
        version=__version__,
        summary="Sentiment classification (TEI /predict and the Hugging Face Inference API) with dynamic batching.",
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.served = served
    install_error_handlers(app)
    _add_routes(app)
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    _add_middleware(app, config, served.metrics)
    return app
