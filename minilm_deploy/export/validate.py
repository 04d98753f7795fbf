"""Validation of every export against PyTorch, as optimum's `validate_model_outputs` does it.

Two checks:
- outputs: on real tokenised batches of several shapes (padding included, one batch at the full
  max_length), per output the max absolute difference and the worst per-row cosine over the
  valid (unpadded) positions; gates from the profile's tolerance for the variant's precision.
- task: on a task's evaluation split, the share of predictions equal to PyTorch's, and the
  accuracy of each.
A failed gate raises `ValidationFailed` carrying every figure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import onnxruntime as ort
import torch

from minilm_deploy.errors import MinilmError, ValidationFailed
from minilm_deploy.export.onnx_export import wrap
from minilm_deploy.export.profile import Tolerance
from minilm_deploy.export.reference import ReferenceModel
from minilm_deploy.export.samples import LONG_TEXT, PAIRS, SENTENCES

Feeds = dict[str, np.ndarray]


def reference_batches(source: ReferenceModel, texts: Sequence[str] = SENTENCES) -> list[Feeds]:
    """Batches of shapes (1, short), (4, padded), (B, all padded), (2, max_length) and pairs when types are used."""
    tok, n = source.tokenizer, source.max_length
    plan: list[tuple[list[Any], dict[str, Any]]] = [
        ([texts[0]], {"padding": True}),
        (list(texts[1:5]), {"padding": True}),
        (list(texts), {"padding": True}),
        ([LONG_TEXT, texts[-1]], {"padding": "max_length"}),
    ]
    batches = [_encode(tok, n, batch, None, kw) for batch, kw in plan]
    if "token_type_ids" in source.inputs:
        batches.append(_encode(tok, n, [a for a, _ in PAIRS], [b for _, b in PAIRS], {"padding": True}))
    return [{k: v for k, v in b.items() if k in source.inputs} for b in batches]


def _encode(tok: Any, max_length: int, texts: list[str], pairs: list[str] | None, kw: dict[str, Any]) -> Feeds:
    enc = tok(texts, pairs, truncation=True, max_length=max_length, return_tensors="np", **kw)
    return {k: np.asarray(v, dtype=np.int64) for k, v in enc.items()}


def torch_outputs(source: ReferenceModel, feeds: Feeds) -> dict[str, np.ndarray]:
    module = wrap(source)
    with torch.inference_mode():
        out = module(*(torch.from_numpy(feeds[name]) for name in source.inputs))
    out = out if isinstance(out, tuple) else (out,)
    return {name: t.float().numpy() for name, t in zip(source.outputs, out, strict=True)}


def open_session(path: Path, threads: int = 0) -> ort.InferenceSession:
    from minilm_deploy.runtime.backends.ort_runner import session_options  # the runtime's own ORT settings

    options = session_options(threads or None)
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/… types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MinilmError(f"{Path(path).name}: ONNX Runtime cannot load it ({first[:240]}); the file is truncated or invalid: re-export") from None


def onnx_outputs(session: ort.InferenceSession, feeds: Feeds, names: Sequence[str]) -> dict[str, np.ndarray]:
    values = session.run(list(names), feeds)
    return {n: np.asarray(v, dtype=np.float32) for n, v in zip(names, values, strict=True)}


def _rows(name: str, value: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(N, D) rows to compare: valid tokens of a (B, T, H) output, or the rows of a (B, D) output."""
    if value.ndim == 3:
        return value[mask.astype(bool)]  # (valid tokens, H)
    return value.reshape(value.shape[0], -1)


class OutputFigures(TypedDict):
    max_abs_diff: float
    min_cosine: float | None  # None for a one-wide output


Figures = dict[str, OutputFigures]  # output name → its figures


def compare(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], mask: np.ndarray) -> Figures:
    figures: Figures = {}
    for name, expected in ref.items():
        a, b = _rows(name, expected, mask), _rows(name, got[name], mask)
        diff = float(np.max(np.abs(a - b))) if a.size else 0.0
        cos = None
        if a.shape[1] > 1:
            denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
            cos = float(np.min(np.sum(a * b, axis=1) / np.maximum(denom, 1e-12)))
        figures[name] = {"max_abs_diff": diff, "min_cosine": cos}
    return figures


def compare_tolerance(reference: dict[str, np.ndarray], got: dict[str, np.ndarray], atol: float,
                      rtol: float) -> dict[str, dict[str, Any]]:
    """Polygraphy-style, per output: passed when |got - ref| <= atol + rtol * |ref| everywhere; max abs and
    relative differences reported (the engine check: an engine against ONNX Runtime's fp32 graph)."""
    figures = {}
    for name, ref in reference.items():
        diff = np.abs(got[name] - ref)
        figures[name] = {"max_abs_diff": float(diff.max()),
                         "max_rel_diff": float((diff / np.maximum(np.abs(ref), 1e-12)).max()),
                         "passed": bool(np.all(diff <= atol + rtol * np.abs(ref)))}
    return figures


def merge(figures: list[Figures]) -> Figures:
    out: Figures = {}
    for fig in figures:
        for name, f in fig.items():
            cur = out.setdefault(name, {"max_abs_diff": 0.0, "min_cosine": None})
            cur["max_abs_diff"] = max(cur["max_abs_diff"], f["max_abs_diff"])
            if f["min_cosine"] is not None:
                cur["min_cosine"] = f["min_cosine"] if cur["min_cosine"] is None else min(cur["min_cosine"], f["min_cosine"])
    return out


@dataclass(frozen=True)
class Graph:
    """A model file to check and the CPU runtime that runs it: ONNX Runtime (an ONNX file) or OpenVINO
    (an IR or ONNX file, compiled with an inference-precision hint)."""

    path: Path
    runner: str = "onnxruntime"  # "onnxruntime" | "openvino"
    inference_precision: str = "f32"  # openvino only

    @property
    def label(self) -> str:
        return "ONNX" if self.runner == "onnxruntime" else f"OpenVINO ({self.inference_precision}) model"

    def infer_function(self, names: Sequence[str]) -> Callable[[Feeds], dict[str, np.ndarray]]:
        """feeds → float32 outputs `names`."""
        if self.runner == "openvino":  # the runtime's own OpenVINO path
            from minilm_deploy.runtime.backends.openvino_runner import OpenVinoInfer

            run = OpenVinoInfer(self.path, self.inference_precision)
            return lambda feeds: {n: v for n, v in run(feeds).items() if n in names}
        session = open_session(self.path)
        return lambda feeds: onnx_outputs(session, feeds, names)


def validate_outputs(source: ReferenceModel, model: Path | Graph, tolerance: Tolerance, *, precision: str,
                     batches: list[Feeds] | None = None, references: list[dict[str, np.ndarray]] | None = None) -> dict[str, Any]:
    """Figures for `model` (an ONNX path, or a Graph) vs PyTorch; raises ValidationFailed when a gate
    fails (nothing is written by the caller)."""
    graph = model if isinstance(model, Graph) else Graph(Path(model))
    batches = batches if batches is not None else reference_batches(source)
    references = references if references is not None else [torch_outputs(source, b) for b in batches]
    infer = graph.infer_function(source.outputs)
    per_batch = [compare(ref, infer(feeds), feeds["attention_mask"]) for feeds, ref in zip(batches, references, strict=True)]
    figures = merge(per_batch)
    result = {"precision": precision, "runner": graph.runner, "shapes": [list(b["input_ids"].shape) for b in batches],
              "outputs": figures}
    failures = gate_outputs(figures, tolerance)
    if failures:
        flat: dict[str, float] = {f"{n}.{k}": v for n, f in figures.items() for k, v in f.items() if isinstance(v, float)}
        raise ValidationFailed(f"{precision} {graph.label} does not match PyTorch: {'; '.join(failures)}; nothing was written",
                               flat)
    return result


# The cosine gate is for embeddings. A classifier's few logits have no meaningful angle (two near-tied
# logits flip to cosine -1 at a tiny change): they are gated by the task check's agreement/accuracy.
COSINE_GATED = ("last_hidden_state", "sentence_embedding")


def gate_outputs(figures: Figures, tol: Tolerance) -> list[str]:
    failures = []
    for name, f in figures.items():
        if tol.atol is not None and f["max_abs_diff"] > tol.atol:
            failures.append(f"{name} max abs diff {f['max_abs_diff']:.3g} > atol {tol.atol:g}")
        cos = f["min_cosine"]
        if tol.min_cosine is not None and name in COSINE_GATED and cos is not None and cos < tol.min_cosine:
            failures.append(f"{name} min cosine {f['min_cosine']:.4f} < {tol.min_cosine:g}")
    return failures
