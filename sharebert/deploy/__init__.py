"""Deployment: `sharebert export onnx` and `sharebert bench-infer` (docs/deploy.md).

onnx and onnxruntime (the `onnx` extra) are imported only inside these modules' functions.
"""
