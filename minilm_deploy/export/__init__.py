"""The export stage: a model folder → a validated artifact directory (ONNX, OpenVINO IR, TensorRT-ready
graph and engine, Triton repository).

Entry point: `build.export_model(model, profile, output=..., task=...)`; readers use
`manifest.load_manifest(artifact)`, and `runtime.Predictor.load(artifact, backend="tensorrt")` for an engine.
Modules: profile (YAML profiles), reference (the PyTorch model every export is checked against, and its facts), onnx_export, validate,
taskcheck, optimize, quantize, work (one export in progress), backends/ (onnxruntime, openvino,
tensorrt: one module each, one table), trt_engine (the TensorRT API), triton, manifest, build,
auto (`--profile auto`).
"""
