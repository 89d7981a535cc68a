"""edge-sent: a frozen BERT encoder + linear head, exported as one fused ONNX graph and served torch-free."""

__version__ = "0.1.0"
