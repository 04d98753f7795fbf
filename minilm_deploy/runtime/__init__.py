"""One `Predictor` over PyTorch, ONNX Runtime and TensorRT (see `predictor.py`, `backends/`)."""

from minilm_deploy.runtime.model_folder import ModelFolder, inspect_model
from minilm_deploy.runtime.predictor import Predictions, Predictor

__all__ = ["ModelFolder", "Predictions", "Predictor", "inspect_model"]
