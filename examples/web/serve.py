"""Serve the browser page with a bundle on a static server (Python's http.server, standard library only).

    python examples/web/serve.py BUNDLE_DIR [--port 8000] [--host 127.0.0.1]

Lays out a temporary directory of links: the page (index.html, app.js), vendor/ (js/edge_sent.mjs, transformers.js
and the onnxruntime-web WebAssembly files from js/node_modules: nothing comes from a CDN) and bundle/ (BUNDLE_DIR), and
serves it with the cross-origin isolation headers that let onnxruntime-web use threads. Prints the URL
(`--port 0` picks a free port) and serves until interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import sys
import tempfile
from pathlib import Path
from typing import ClassVar

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE.parents[1] / "js" / "node_modules"
ORT_WASM = [f"ort-wasm-simd-threaded{kind}.{ext}" for kind in ("", ".jsep", ".asyncify") for ext in ("mjs", "wasm")]
VENDOR = {"transformers.min.js": "@huggingface/transformers/dist/transformers.min.js"} | {
    name: f"onnxruntime-web/dist/{name}" for name in ORT_WASM
}


def layout(root: Path, bundle: Path) -> None:
    """Link the page, vendor/ and bundle/ into `root`."""
    missing = [rel for rel in VENDOR.values() if not (NODE_MODULES / rel).is_file()]
    if missing:
        raise SystemExit(
            f"error: {NODE_MODULES / missing[0]} is missing: run `cd js && ONNXRUNTIME_NODE_INSTALL=skip npm ci` first"
        )
    if not (bundle / "config.json").is_file():
        raise SystemExit(f"error: {bundle} is not a bundle (no config.json)")
    for name in ("index.html", "app.js"):
        (root / name).symlink_to(HERE / name)
    (root / "vendor").mkdir()
    for name, rel in VENDOR.items():
        (root / "vendor" / name).symlink_to(NODE_MODULES / rel)
    (root / "vendor" / "edge_sent.mjs").symlink_to(NODE_MODULES.parent / "edge_sent.mjs")
    (root / "bundle").symlink_to(bundle.resolve(), target_is_directory=True)


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict[str, str]] = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
        ".json": "application/json",
        ".onnx": "application/octet-stream",
    }

    def end_headers(self) -> None:
        # cross-origin isolation: SharedArrayBuffer, so onnxruntime-web runs its WebAssembly threads
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edge-sent-web-") as tmp:
        layout(Path(tmp), args.bundle)
        handler = functools.partial(Handler, directory=tmp)
        with http.server.ThreadingHTTPServer((args.host, args.port), handler) as server:
            host, port = server.server_address[:2]
            print(f"serving http://{host}:{port}/ (bundle {args.bundle})", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
