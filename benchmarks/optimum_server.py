"""The server a user would write without edge-sent: FastAPI + uvicorn, one request → one call of a
transformers text-classification pipeline on Optimum's `ORTModelForSequenceClassification` (int8 graph),
in a plain `def` route (FastAPI runs it on its thread pool). The contender of benchmarks/serve.py.

    .venv/bin/python benchmarks/optimum_server.py MODEL_DIR [--port N]

MODEL_DIR: what `contenders.optimum_classifier_dir` built (the quantized graph, config, tokenizer).
Prints `listening on http://127.0.0.1:PORT` on stderr once the model is loaded.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from optimum.onnxruntime import ORTModelForSequenceClassification
from pydantic import BaseModel
from transformers import AutoTokenizer, pipeline


class Request(BaseModel):
    inputs: str


def create_app(model_dir: Path) -> FastAPI:
    graph = next(model_dir.glob("*quantized.onnx")).name
    model = ORTModelForSequenceClassification.from_pretrained(model_dir, file_name=graph)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    classify = pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None)
    classify("warm-up")
    app = FastAPI()

    @app.post("/predict")
    def predict(request: Request) -> list[dict]:
        return classify([request.inputs], truncation=True)[0]  # [{"label", "score"}, ...], best first

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    app = create_app(args.model_dir)
    sock = socket.create_server(("127.0.0.1", args.port))
    sys.stderr.write(f"listening on http://127.0.0.1:{sock.getsockname()[1]}\n")
    sys.stderr.flush()
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


if __name__ == "__main__":
    main()
