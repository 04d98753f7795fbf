"""The export stage: a model folder → a validated artifact directory (ONNX, optional TensorRT engine, Triton repository).

Entry point: `build.export_model(model, profile, output=..., task=...)`; readers use
`manifest.load_manifest(artifact)` and `tensorrt.load_engine(artifact, manifest)`.
Modules: profile (YAML profiles), source (the model and its facts), onnx_export, validate,
taskcheck, optimize, quantize, triton, tensorrt, manifest, build.
"""
