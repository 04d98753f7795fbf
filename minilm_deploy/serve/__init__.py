"""serve stage: an Open Inference Protocol (KServe v2) HTTP server over a Predictor, with dynamic batching."""

from minilm_deploy.serve.config import ServeConfig

__all__ = ["ServeConfig"]
