"""PyTorch → ONNX: one wrapper per task, dynamic batch and sequence axes, int64 inputs.

Exporter choice (measured with torch 2.13 / onnxruntime 1.32): `torch.onnx.export` defaults to
the dynamo exporter (`dynamo=True`), whose graph ONNX Runtime's transformer optimizer does not
fuse into `Attention`; the legacy TorchScript exporter with eager attention is fused fully
(EmbedLayerNormalization, Attention, SkipLayerNormalization, BiasGelu) and exports in a fraction
of the time. So the default is `legacy`, chosen explicitly; `dynamo` stays available.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch

from minilm_deploy.errors import MinilmError
from minilm_deploy.export.reference import ReferenceModel


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token states where mask == 1, as sentence-transformers computes it."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)  # (B, H)


class EncoderWrapper(torch.nn.Module):
    """(input_ids, attention_mask[, token_type_ids]) → (last_hidden_state, sentence_embedding)."""

    def __init__(self, model: torch.nn.Module, inputs: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.input_names = model, inputs

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feeds = dict(zip(self.input_names, args, strict=True))
        hidden = self.model(**feeds).last_hidden_state  # (B, T, H)
        return hidden, mean_pool(hidden, feeds["attention_mask"])


class ClassifierWrapper(torch.nn.Module):
    """(input_ids, attention_mask[, token_type_ids]) → logits (B, num_labels)."""

    def __init__(self, model: torch.nn.Module, inputs: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.input_names = model, inputs

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, args, strict=True))).logits


WRAPPERS = {"embedding": EncoderWrapper, "classification": ClassifierWrapper, "regression": ClassifierWrapper}


def wrap(source: ReferenceModel) -> torch.nn.Module:
    # eval() on the wrapper itself: the legacy exporter restores the wrapper's own mode, and a
    # freshly built wrapper is in training mode (dropout would be traced in).
    return WRAPPERS[source.task](source.model, source.inputs).eval()


def dummy_inputs(source: ReferenceModel, batch: int = 2, seq: int = 8) -> tuple[torch.Tensor, ...]:
    vocab = int(source.config.vocab_size)
    ids = torch.randint(5, max(6, vocab), (batch, seq), generator=torch.Generator().manual_seed(0))
    feeds = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    feeds["attention_mask"][1, seq // 2 :] = 0  # padding in the traced example
    return tuple(feeds[name] for name in source.inputs)


def graph_opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def export_onnx(source: ReferenceModel, target: Path, *, opset: int, exporter: str) -> Path:
    """Write `target` (one self-contained .onnx file); raise MinilmError with the exporter's first line on failure."""
    module = wrap(source)
    args = dummy_inputs(source)
    outputs = list(source.outputs)
    try:
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # tracer and deprecation chatter; validation checks the result
            EXPORTERS[exporter](module, args, target, list(source.inputs), outputs, opset, source.max_length)
    except Exception as exc:  # the exporters raise many types; all mean "this model did not export"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MinilmError(f"ONNX export ({exporter}) failed: {first[:300]}; try `exporter: dynamo` (or `legacy`) or another opset in the profile") from None
    if module.training or source.model.training:
        raise MinilmError("ONNX export left the model in training mode; this is a bug in the exporter wrapper")
    return target


def _legacy(module, args, target, inputs, outputs, opset, max_length) -> None:
    axes = {name: {0: "batch", 1: "sequence"} for name in inputs}
    axes.update({name: {0: "batch", 1: "sequence"} if name == "last_hidden_state" else {0: "batch"} for name in outputs})
    torch.onnx.export(module, args, str(target), dynamo=False, input_names=inputs, output_names=outputs,
                      dynamic_axes=axes, opset_version=opset, do_constant_folding=True)


def _dynamo(module, args, target, inputs, outputs, opset, max_length) -> None:
    batch, seq = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("sequence", min=1, max=max_length)
    shapes = tuple({0: batch, 1: seq} for _ in inputs)
    program = torch.onnx.export(module, args, dynamo=True, input_names=inputs, output_names=outputs,
                                dynamic_shapes=(shapes,), opset_version=max(opset, 18), verbose=False)  # one entry: *args
    if program is None:  # torch returns None only when given a file to write, which we do not
        raise MinilmError("torch.onnx.export (dynamo) returned no program; try `exporter: legacy` in the profile")
    program.save(str(target), external_data=False)


EXPORTERS = {"legacy": _legacy, "dynamo": _dynamo}
