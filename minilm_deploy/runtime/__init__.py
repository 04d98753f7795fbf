"""One `Predictor` over PyTorch, ONNX Runtime and TensorRT (see `predictor.py`, `backends/`)."""

from minilm_deploy.runtime.predictor import Predictions, Predictor
from minilm_deploy.runtime.source import ModelSource, inspect_model

__all__ = ["ModelSource", "Predictions", "Predictor", "inspect_model"]
