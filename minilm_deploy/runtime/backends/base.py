"""The runner interface, Polygraphy style: a small object you `activate`, `infer` and `deactivate`.

`infer` takes int64 feeds `{name: (B, T)}` and returns float32 outputs by name: `logits` (B, C) for a
task model; `last_hidden_state` (B, T, H) and `sentence_embedding` (B, H) for an encoder.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minilm_deploy.runtime.model_folder import ModelFolder


class Runner:
    name = "base"

    def __init__(self, source: ModelFolder, device: str = "cpu", threads: int | None = None) -> None:
        self.source = source
        self.device = device
        self.threads = threads
        self.info: dict[str, Any] = {"backend": self.name, "device": device}
        self.active = False

    @classmethod
    def unsupported(cls, source: ModelFolder, device: str) -> str | None:
        """Why this backend cannot run `source` on `device` (None when it can)."""
        return None

    def activate(self) -> None:
        self.active = True

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def deactivate(self) -> None:
        self.active = False

    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Masked mean over tokens: (B, T, H), (B, T) → (B, H)."""
    m = mask.astype(hidden.dtype)[:, :, None]  # (B, T, 1)
    return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)


def with_sentence_embedding(out: dict[str, np.ndarray], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """An encoder's outputs with `sentence_embedding` added (mean-pooled) where the graph gives only tokens."""
    if "last_hidden_state" in out and "sentence_embedding" not in out:
        out["sentence_embedding"] = mean_pool(out["last_hidden_state"], feeds["attention_mask"])
    return out
