"""Errors as JSON: `{"error": "...", "error_type": "..."}` with the right status, never a 500 for a client mistake.

error_type (TEI's vocabulary where it has one): validation (422, and 413 for too many inputs), invalid_json
(400), payload_too_large (413), unauthorized (401), not_found (404), method_not_allowed (405), overloaded
(429), unhealthy (503: shutting down, or the batch worker stopped), backend (500: the model failed; the worker goes
on). A 500's body carries a request id, never the exception: the server logs the exception under that id.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

STATUS_TYPES = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
CLIENT_CLOSED = 499  # nginx's code for "client closed the request": recorded in metrics, never sent
log = logging.getLogger("edge_sent.serve")


class ApiError(Exception):
    def __init__(self, status: int, message: str, error_type: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.headers = headers


class ClientDisconnected(Exception):
    """The client went away while its texts were queued; their work was dropped."""


def error_response(status: int, message: str, error_type: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "error_type": error_type}, status_code=status, headers=headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.error_type, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers: Any = getattr(exc, "headers", None)
    return error_response(exc.status_code, str(exc.detail), STATUS_TYPES.get(exc.status_code, "http"), headers)


async def _disconnected(request: Request, exc: Exception) -> Response:
    return Response(status_code=CLIENT_CLOSED)


async def _unexpected(request: Request, exc: Exception) -> Response:
    request_id = uuid.uuid4().hex[:16]
    log.error("request %s (%s %s) failed", request_id, request.method, request.url.path, exc_info=exc)
    body = {
        "error": f"internal error (request id {request_id}: the server's log has the details)",
        "error_type": "backend",
        "request_id": request_id,
    }
    return JSONResponse(body, status_code=500, headers={"x-request-id": request_id})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnected, _disconnected)
    app.add_exception_handler(Exception, _unexpected)
