"""Run the server: check the settings, load and verify the bundle, THEN open the port, serve until
SIGTERM/SIGINT, finish what is queued and in flight, return (exit 0).

uvicorn handles the graceful part (stop accepting, wait for open requests — at most `graceful_timeout_s`, so a
stalled upload cannot hold the exit forever — then the app's lifespan shutdown, which drains the batch queue).
`auto` takes a batch-independent variant only: a client's answer never moves with other clients' texts.
Two changes to its signal handling: /health turns 503 as soon as the signal
arrives, and uvicorn's re-raising of the signal after a clean shutdown (which would end the process with
"killed by SIGTERM" instead of status 0) is skipped. A second SIGINT still forces the exit.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import uvicorn

from edge_sent.errors import EdgeSentError
from edge_sent.runtime.classifier import Classifier
from edge_sent.runtime.serve.app import ServerState, create_app
from edge_sent.runtime.serve.config import ServeConfig


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_signal: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_signal = on_signal

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        try:  # a signal handler: hand the work to the event loop
            asyncio.get_running_loop().call_soon_threadsafe(self._on_signal)
        except RuntimeError:
            self._on_signal()
        super().handle_exit(sig, frame)
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list):
            captured.clear()  # exit 0 after a graceful shutdown, not "killed by the signal"


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise EdgeSentError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def load(
    bundle: Path, variant: str, provider: str, precision: str, threads: int | None, config: ServeConfig
) -> Classifier:
    """Check the settings and load the bundle (every file the session reads is checked against its sha256)."""
    config.check()
    classifier = Classifier.load(
        bundle, variant=variant, provider=provider, threads=threads, precision=precision, batch_independent=True
    )
    config.batching.check_model(classifier.max_length)
    return classifier


def serve(classifier: Classifier, bundle: Path, config: ServeConfig) -> None:
    state = ServerState()
    app = create_app(classifier, config, bundle, state)
    sock = bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    sys.stderr.write(
        f"edge-sent serve: listening on http://{shown}:{port} (variant {classifier.variant}, "
        f"{classifier.providers[0]}, labels {', '.join(classifier.labels)})\n"
    )
    sys.stderr.flush()
    if not classifier.manifest.batch_independent(classifier.variant):
        sys.stderr.write(
            f"edge-sent serve: variant {classifier.variant}'s answers depend on their batch: each request runs in "
            "batches of its own texts only (the same answer whatever other clients send)\n"
        )
    uv_config = uvicorn.Config(
        app,
        log_level="info",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=config.graceful_timeout_s,  # type: ignore[arg-type]  # a float works
    )

    try:
        _Server(uv_config, state.begin_draining).run(sockets=[sock])
    finally:
        sock.close()
