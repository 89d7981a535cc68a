"""The string-in graphs (`export --with-tokenizer`): text in, label out, the tokenizer inside as onnxruntime-extensions
operators. `spec` reads the tokenizer, `graph` builds the nodes (with `case`, the exact case map, on `nodes`), `check`
proves the token ids identical, `build` is the export step."""
