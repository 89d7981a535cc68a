"""Export stage: one fused ONNX graph, quantized variants, verification, the bundle."""
