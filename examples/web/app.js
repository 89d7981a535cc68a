// edge-sent in the browser: transformers.js + onnxruntime-web (WebAssembly), everything client-side.
// Query parameters: ?bundle=path of the bundle directory on this server (default "bundle"),
// ?variant=int8|fp32|int8-static|fp16|int4|int8-block|portable (model_quantized.onnx, model.onnx, model_qdq.onnx,
// model_fp16.onnx, model_q4.onnx, model_int8_block.onnx, model_portable.onnx; default int8). A graph whose operators onnxruntime-web
// lacks (int4: GatherBlockQuantized) falls back to the portable graph (standard ONNX ops), then to fp32.
// The result element carries data-* attributes (text, label, probability, ms) for tests; <body> carries
// data-model-file (the graph in use) and data-first-answer-ms (since navigation start).
import { env } from "@huggingface/transformers"; // the import map in index.html: vendor/transformers.min.js
import { VARIANTS, loadBundle } from "./vendor/edge_sent.mjs";

const params = new URLSearchParams(location.search);
// a path on this server (not a URL): transformers.js fetches "local" files from it, never a remote host
const bundle = new URL(`${params.get("bundle") ?? "bundle"}/`, location.href).pathname.replace(/\/$/, "");
const requested = params.get("variant") ?? "int8";

const $ = (id) => document.getElementById(id);
env.allowRemoteModels = false; // no hub, no CDN: the bundle comes from this server
env.allowLocalModels = true;
env.localModelPath = "";
env.useBrowserCache = false;
env.backends.onnx.wasm.wasmPaths = new URL("vendor/", location.href).href; // never a CDN
// WebAssembly threads need cross-origin isolation (serve.py sends the headers); onnxruntime-web's default is
// half the cores, at most 4
if (globalThis.crossOriginIsolated) env.backends.onnx.wasm.numThreads = Math.min(4, navigator.hardwareConcurrency || 1);

function show(text, answer, ms) {
  const scores = answer.labels.map((label, i) => ({ label, score: answer.probabilities[i] }));
  scores.sort((a, b) => b.score - a.score);
  const best = scores[0];
  $("label").textContent = best.label;
  $("scores").replaceChildren(
    ...scores.map((s) => {
      const row = document.createElement("div");
      row.className = "row";
      row.innerHTML = `<span></span><div class="bar" style="width:${(s.score * 100).toFixed(1)}%"></div><span>${s.score.toFixed(4)}</span>`;
      row.firstChild.textContent = s.label;
      return row;
    }),
  );
  $("timing").textContent = `${ms.toFixed(1)} ms in the browser (${document.body.dataset.modelFile})`;
  Object.assign($("result").dataset, {
    state: "done",
    text,
    label: best.label,
    probability: String(best.score),
    ms: String(ms),
  });
}

let classifier;
let queue = Promise.resolve();
function classify() {
  const text = $("text").value;
  if (!classifier || !text.trim()) return queue;
  queue = queue.then(async () => {
    const t0 = performance.now();
    const answer = await classifier.classify(text);
    show(text, { ...answer, labels: classifier.labels }, performance.now() - t0);
    if (!document.body.dataset.firstAnswerMs) {
      document.body.dataset.firstAnswerMs = String(performance.now()); // since navigation start
    }
  });
  return queue;
}

// fallback order when a graph does not run here; a failed session can leave the WebAssembly backend unusable,
// so the next graph is tried in a fresh page (the reason travels in ?failed=)
const FALLBACK = { portable: "fp32" };
try {
  const t0 = performance.now();
  const failed = params.get("failed");
  try {
    // ?optimize=disabled|basic|extended|all: onnxruntime's graph optimization level at load (its default: all)
    const optimize = params.get("optimize");
    const session_options = optimize ? { graphOptimizationLevel: optimize } : undefined;
    classifier = await loadBundle(bundle, requested, { device: "wasm", session_options });
  } catch (err) {
    const reason = `${VARIANTS[requested]?.[2] ?? requested} does not run here: ${String(err.message ?? err).split("\n")[0]}`;
    const next = FALLBACK[requested] ?? (requested === "fp32" ? null : "portable");
    if (!next) throw new Error(failed ? `${failed}; ${reason}` : reason);
    const url = new URL(location.href);
    url.searchParams.set("variant", next);
    url.searchParams.set("failed", failed ? `${failed}; ${reason}` : reason);
    location.replace(url);
    throw new Error(`falling back to ${next}`);
  }
  document.body.dataset.loadMs = String(performance.now() - t0);
  const file = classifier.file;
  document.body.dataset.modelFile = file;
  document.body.dataset.fallback = failed ?? "";
  const note = failed ? ` (fallback: ${failed})` : "";
  const manifest = await fetch(`${bundle}/manifest.json`).then((r) => (r.ok ? r.json() : {}), () => ({}));
  const random = manifest.encoder?.random_weights ? " Encoder with RANDOM weights: the answers mean nothing." : "";
  $("status").textContent = `${file} loaded in ${((performance.now() - t0) / 1000).toFixed(2)} s, runs in this page (WebAssembly)${note}.${random}`;
  document.body.dataset.ready = "true";
  $("go").disabled = false;
  $("go").addEventListener("click", classify);
  let timer;
  $("text").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(classify, 300);
  });
  await classify();
} catch (err) {
  if (!String(err.message).startsWith("falling back")) {
    $("status").textContent = `error: ${err.message ?? err}`;
    document.body.dataset.error = String(err.message ?? err);
  }
}
