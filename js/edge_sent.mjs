// Load an edge-sent bundle with transformers.js and classify texts exactly as the Python runtime does.
// Shared by Node.js (js/classify.mjs) and the browser page (examples/web, through an import map).
//
// Why not the plain pipeline: transformers.js truncates a long text after adding [CLS]/[SEP], so it cuts the
// final [SEP] off; the Python runtime (Hugging Face tokenizers) keeps it. Here the text is tokenized without
// truncation and cut the Python way (content shortened, the closing special token kept), then the model runs.
import { Tensor, pipeline } from "@huggingface/transformers";

// variant -> [transformers.js dtype, model_file_name, the file it loads]
export const VARIANTS = {
  fp32: ["fp32", "model", "model.onnx"],
  int8: ["q8", "model", "model_quantized.onnx"],
  "int8-static": ["fp32", "model_qdq", "model_qdq.onnx"],
  fp16: ["fp16", "model", "model_fp16.onnx"],
  int4: ["q4", "model", "model_q4.onnx"],
  "int8-block": ["fp32", "model_int8_block", "model_int8_block.onnx"],
  portable: ["fp32", "model_portable", "model_portable.onnx"], // standard ONNX operators only
};

function pick(tensor, keep) {
  const data = tensor.data;
  const out = new data.constructor(keep.length);
  keep.forEach((index, i) => {
    out[i] = data[index];
  });
  return new Tensor(tensor.type, out, [1, keep.length]);
}

function softmax(values) {
  const top = Math.max(...values);
  const exps = values.map((v) => Math.exp(v - top));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

/**
 * @param {string} bundle the bundle directory (Node.js) or its path on the serving host (browser)
 * @param {string} variant an edge-sent variant name (VARIANTS) or a transformers.js dtype
 * @param {object} options more pipeline options (e.g. device)
 */
export async function loadBundle(bundle, variant = "int8", options = {}) {
  const [dtype, model_file_name, file] = VARIANTS[variant] ?? [variant, "model", variant];
  const pipe = await pipeline("text-classification", bundle, {
    dtype,
    model_file_name,
    subfolder: "",
    local_files_only: true,
    ...options,
  });
  const { tokenizer, model } = pipe;
  const maxLength = tokenizer.model_max_length;
  const closing = tokenizer("").input_ids.dims[1] - 1; // special tokens after the text ([SEP])
  const id2label = model.config.id2label;
  const labels = Object.keys(id2label)
    .sort((a, b) => Number(a) - Number(b))
    .map((id) => id2label[id]);

  async function classify(text) {
    const encoded = tokenizer(text, { truncation: false });
    const length = encoded.input_ids.dims[1];
    const truncated = length > maxLength;
    let inputs = encoded;
    if (truncated) {
      const keep = [...Array(maxLength - closing).keys()];
      for (let i = length - closing; i < length; ++i) keep.push(i);
      inputs = Object.fromEntries(Object.entries(encoded).map(([name, tensor]) => [name, pick(tensor, keep)]));
    }
    const { logits } = await model(inputs);
    const probabilities = softmax(Array.from(logits.data, Number));
    const best = probabilities.indexOf(Math.max(...probabilities));
    return { label: labels[best], probabilities, truncated };
  }

  return { file, labels, maxLength, classify, pipeline: pipe };
}
