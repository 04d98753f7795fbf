"""minilm-deploy: MiniLM distillation, fine-tuning, export, benchmarking and serving."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("minilm-deploy")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
