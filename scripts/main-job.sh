#!/usr/bin/env bash
# The main job, end to end: train a head on ChnSentiCorp, export a verified bundle, classify sentences.
# With no network there are no pretrained weights: it uses random:bert-base-chinese (the real
# bert-base-chinese geometry and tokenizer, seeded RANDOM weights). Speed, size and parity are real;
# accuracy means nothing. To stay under 10 minutes on 2 cores it trains on the first 1,000 training
# rows (250 dev rows) at max length 128. Set ENCODER / LIMIT / MAX_LENGTH to change that.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
ENCODER=${ENCODER:-random:bert-base-chinese}
LIMIT=${LIMIT:-1000}
MAX_LENGTH=${MAX_LENGTH:-128}
OUT=${OUT:-out}
mkdir -p "$OUT"

echo "== 1/3 train ($ENCODER, first $LIMIT training rows, max length $MAX_LENGTH)"
"$BIN/edge-sent" train --train data/chnsenticorp/train.tsv --dev data/chnsenticorp/dev.tsv \
  --test data/chnsenticorp/test.tsv --encoder "$ENCODER" --limit "$LIMIT" --max-length "$MAX_LENGTH" \
  --label-names negative,positive --out "$OUT/run"

echo "== 2/3 export (fp32 fused graph + int8 + int4, verified against torch)"
"$BIN/edge-sent" export "$OUT/run" --out "$OUT/bundle" --quantize int8,int4 --force \
  --eval data/chnsenticorp/test.tsv --eval-limit 200
"$BIN/edge-sent" verify "$OUT/bundle"

echo "== 3/3 predict with the torch-free runtime"
"$BIN/edge-sent" predict "$OUT/bundle" "这家酒店的服务非常好，房间干净，下次还来" "太差了，房间又脏又吵，再也不会来了" \
  "位置不错，早餐一般"
