"""PyTorch backend: the Hugging Face model itself (the reference every export is compared with)."""

from __future__ import annotations

import numpy as np

from minilm_deploy.errors import MinilmError
from minilm_deploy.runtime.backends.base import Runner
from minilm_deploy.runtime.model_folder import ModelFolder


class TorchRunner(Runner):
    name = "torch"
    autocast_bf16 = False

    @classmethod
    def unsupported(cls, source: ModelFolder, device: str) -> str | None:
        if source.weights_dir is None:
            return f"{source.path}: no PyTorch weights (an artifact whose source folder is gone); use --backend onnxruntime"
        return None

    def activate(self) -> None:
        import inspect

        import torch
        import transformers

        if self.device == "cuda" and not torch.cuda.is_available():
            raise MinilmError("device cuda was requested but torch sees no CUDA GPU; use --device cpu")
        if self.threads:
            torch.set_num_threads(int(self.threads))
        auto = transformers.AutoModel if self.source.task == "embedding" else transformers.AutoModelForSequenceClassification
        from minilm_deploy.models.loading import load_weights

        assert self.source.weights_dir is not None, "unsupported() refuses a source without weights"
        self.model = load_weights(auto, self.source.weights_dir).eval().to(self.device)
        self.accepts = set(inspect.signature(self.model.forward).parameters)
        self.info.update(torch=torch.__version__, threads=torch.get_num_threads(),
                         precision="bf16 autocast" if self.autocast_bf16 else "fp32")
        super().activate()

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode(), torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.autocast_bf16):
            inputs = {k: torch.from_numpy(v).to(self.device) for k, v in feeds.items() if k in self.accepts}
            out = self.model(**inputs)
            if self.source.task != "embedding":
                return {"logits": out.logits.float().cpu().numpy()}
            hidden = out.last_hidden_state.float()  # (B, T, H)
            mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, H)
            return {"last_hidden_state": hidden.cpu().numpy(), "sentence_embedding": pooled.cpu().numpy()}

    def deactivate(self) -> None:
        self.model = None
        super().deactivate()


class TorchBf16Runner(TorchRunner):
    """The same model under bf16 autocast (matrix products in bf16, outputs returned as float32): fast where
    the CPU has AMX or AVX512-BF16 (or on a GPU), slower than fp32 elsewhere; `minilm bench` measures which."""

    name = "torch-bf16"
    autocast_bf16 = True
