"""The NNCF candidates of issue 13 (README "A faithful, batch-independent fast CPU variant"), in a venv with nncf:

    python3 -m venv .venv-nncf && .venv-nncf/bin/pip install nncf onnx onnxruntime-openvino==1.24.1 tokenizers
    .venv-nncf/bin/pip install --no-deps -e .
    .venv-nncf/bin/python benchmarks/nncf_candidates.py weights PORTABLE.onnx OUT.onnx
    .venv-nncf/bin/python benchmarks/nncf_candidates.py ptq PORTABLE.onnx OUT.onnx --tokenizer T --texts 128

`weights`: nncf.compress_weights INT8_SYM (per channel, embeddings too). `ptq`: nncf.quantize with
model_type=TRANSFORMER (SmoothQuant, fast bias correction, transformer ignored patterns), overflow fix off
(VNNI CPU), calibrated on the first N ChnSentiCorp training texts one at a time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nncf
import onnx
from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

from edge_sent.readers import read_records
from edge_sent.tokenization import Tokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=("weights", "ptq"))
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--tokenizer")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--texts", type=int, default=128)
    ap.add_argument("--data", type=Path, default=Path("data/chnsenticorp/train.tsv"))
    args = ap.parse_args()
    model = onnx.load(str(args.src))
    if args.step == "weights":
        out = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_SYM)
    else:
        tok = Tokenizer(args.tokenizer, args.max_length)
        texts = [r.text for r in read_records(args.data)][: args.texts]
        dataset = nncf.Dataset([b.feeds() for b in tok.batches(tok.encode(texts), 1)])
        out = nncf.quantize(
            model,
            dataset,
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=args.texts,
            advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix.DISABLE),
        )
    onnx.save(out, str(args.dst))


if __name__ == "__main__":
    main()
