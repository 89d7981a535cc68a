"""`edge-sent serve`: an HTTP server with dynamic batching (the `serve` extra: FastAPI + uvicorn +
prometheus-client). Torch-free like the rest of the runtime.

Modules, one job each: `config` (frozen settings), `batching` (the queue, the batch planner and the one
worker), `service` (validate → tokenize → queue → wait), `schemas` (request bodies), `scoring` (rows →
ranked labels), `errors` (JSON errors), `middleware` (payload limit, API key, request metrics), `metrics`
(Prometheus), `app` (routes), `server` (load, bind, run, shut down gracefully).
"""
