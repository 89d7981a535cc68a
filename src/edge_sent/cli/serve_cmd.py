"""`serve`: the HTTP server (torch-free; needs the `serve` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_sent.cli.common import user_errors
from edge_sent.cli.options import PrecisionOpt, ProviderOpt, ThreadsOpt, VariantOpt
from edge_sent.errors import EdgeSentError


@user_errors
def serve_cmd(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory written by `edge-sent export`.")],
    host: Annotated[str, typer.Option(help="Address to bind (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port, printed on stderr).")] = 8000,
    variant: VariantOpt = "auto",
    provider: ProviderOpt = "auto",
    precision: PrecisionOpt = "auto",
    threads: ThreadsOpt = None,
    max_batch_size: Annotated[int, typer.Option(help="Texts per batch.")] = 32,
    max_batch_tokens: Annotated[
        int, typer.Option(help="Tokens per batch, padding included (texts × longest text).")
    ] = 8192,
    max_wait_ms: Annotated[
        float, typer.Option(help="Wait for more texts when more than one is queued and the batch is not full.")
    ] = 0.0,
    max_queue: Annotated[int, typer.Option(help="Texts waiting for a batch before requests get 429.")] = 1024,
    max_client_batch: Annotated[int, typer.Option(help="Texts in one request (more: 413).")] = 32,
    payload_limit: Annotated[int, typer.Option(help="Request body bytes (more: 413).")] = 2_000_000,
    graceful_timeout: Annotated[
        float, typer.Option(help="Seconds open requests may take after SIGTERM before the server exits anyway.")
    ] = 30.0,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="EDGE_SENT_API_KEY", show_default=False, help="Require `Authorization: Bearer KEY` (not on /health)."
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None, typer.Option(help="Allow browser calls from this origin (repeatable; * for any).")
    ] = None,
) -> None:
    """Serve the bundle over HTTP, with dynamic batching.

    Routes: TEI's POST /predict, the Hugging Face Inference API (POST /), /health, /info, /metrics, /docs. SIGTERM
    or Ctrl-C: finish queued requests (at most --graceful-timeout seconds), exit 0. `auto` serves a
    batch-independent variant; a named batch-dependent one runs each request in batches of its own."""
    try:
        from edge_sent.runtime.serve.config import BatchSettings, ServeConfig
        from edge_sent.runtime.serve.server import load, serve
    except ImportError as exc:
        raise EdgeSentError(f"serving needs the serve extra: pip install 'edge-sent[serve]' ({exc})") from None

    config = ServeConfig(
        host=host,
        port=port,
        batching=BatchSettings(max_batch_size, max_batch_tokens, max_wait_ms, max_queue),
        max_client_batch=max_client_batch,
        payload_limit=payload_limit,
        api_key=api_key,
        cors_origins=tuple(cors_origin or ()),
        graceful_timeout_s=graceful_timeout,
    )
    classifier = load(bundle, variant, provider, precision, threads, config)
    serve(classifier, bundle, config)
