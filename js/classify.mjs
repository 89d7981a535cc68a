// Classify texts with an edge-sent bundle in Node.js through transformers.js (onnxruntime-node).
//
//   node js/classify.mjs BUNDLE_DIR [VARIANT] < texts.txt      (one text a line; empty lines are skipped)
//
// VARIANT is an edge-sent variant name or a transformers.js dtype; the graph it loads (transformers.js picks
// files by dtype suffix, `model_file_name` by stem):
//   fp32 -> model.onnx, int8 (q8) -> model_quantized.onnx, int8-static -> model_qdq.onnx,
//   fp16 -> model_fp16.onnx, int4 (q4) -> model_q4.onnx, int8-block -> model_int8_block.onnx,
//   portable -> model_portable.onnx (standard ONNX ops only)
// Prints one JSON object: the graph loaded, the load time, and per text its label, every label's
// probability (in the bundle's label order) and the milliseconds it took (texts run one at a time).
import { readFileSync } from "node:fs";
import path from "node:path";
import { env } from "@huggingface/transformers";
import { VARIANTS, loadBundle } from "./edge_sent.mjs";

function fail(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(2);
}

const [bundleArg, variant = "int8"] = process.argv.slice(2);
if (!bundleArg) fail(`usage: node classify.mjs BUNDLE_DIR [${Object.keys(VARIANTS).join("|")}] < texts`);
const bundle = path.resolve(bundleArg);
try {
  JSON.parse(readFileSync(path.join(bundle, "config.json"), "utf8"));
} catch (err) {
  fail(`${bundle}: not a bundle (${err.message})`);
}

env.allowRemoteModels = false;
env.localModelPath = "";
const started = performance.now();
let model;
try {
  model = await loadBundle(bundle, variant);
} catch (err) {
  fail(`cannot load ${bundle} (${variant}): ${String(err.message ?? err).split("\n")[0]}`);
}
const loadMs = performance.now() - started;

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk); // not readFileSync(0): EAGAIN on a non-blocking pipe
const texts = Buffer.concat(chunks)
  .toString("utf8")
  .split("\n")
  .map((line) => line.replace(/\r$/, ""))
  .filter((line) => line.trim() !== "");
const predictions = [];
for (const text of texts) {
  const t0 = performance.now();
  const answer = await model.classify(text);
  predictions.push({ ...answer, ms: performance.now() - t0 });
}
process.stdout.write(
  `${JSON.stringify({ variant, model_file: model.file, labels: model.labels, load_ms: loadMs, predictions })}\n`,
);
