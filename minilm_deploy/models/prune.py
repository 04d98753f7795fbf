"""Width pruning: a student narrower than its teacher, started from copies of teacher layers (`init: teacher-pruned`).

What Minitron (Muralidharan et al. 2024, "Compact Language Models via Pruning and Knowledge Distillation") does to
width, applied to an encoder: run the teacher on a few batches of the distillation corpus, rank

- each residual channel by its mean |activation| at the outputs of the LayerNorms the student keeps (the
  embedding's and those of the copied layers), summed over them: one ranking for the whole model, since the
  residual stream is shared;
- each attention head by the mean L2 norm of its context vector (the input of the attention output projection);
- each FFN neuron by its mean |activation| after the non-linearity (the input of the FFN's second Linear);

and keep the top ones, in their original order. Every weight of the student is the teacher's, indexed: a
channel-sized axis by the kept channels, a Q/K/V output or attention-output input axis by the kept heads' dims, an
FFN-sized axis by the kept neurons, the score-bias table (MPNet's relative positions) by the kept heads. Heads keep
the teacher's size, so the student has hidden / head-size heads. Where the heads share a score bias, one set of
heads is kept in every layer (the table is shared); otherwise each layer keeps its own.

Pruning to the teacher's own width keeps every weight: the student then computes exactly the teacher's copied
layers (tested).

`refit` (`student.refit`) then reconstructs, as FLAP and ZipLM do for structured pruning: from the bottom layer up,
each layer's attention-output and FFN-output Linears are solved by (ridge) least squares on the calibration tokens
so that each residual sum (the Linear's output plus the block's residual input, what the LayerNorm after it reads)
matches the full-width copy's at the kept channels, given the student's own inputs. The refit takes up what the
dropped heads, neurons and channels contributed, and what the layers below it lost.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from minilm_deploy.errors import InputError
from minilm_deploy.models.adapters import Adapter, adapter_for, attention_shape, base_model, layer_list, model_config

Batch = tuple[Tensor, Tensor]  # input_ids (B, T), attention_mask (B, T)


@dataclass(frozen=True)
class Width:
    """What pruning reads of a model's config: its architecture's adapter, width, heads and FFN size."""

    adapter: Adapter
    hidden: int
    heads: int
    ffn: int

    @property
    def head_size(self) -> int:
        return self.hidden // self.heads


def width_of(model_or_config) -> Width:
    """The `Width` of a model (or of its config)."""
    config = model_or_config if not isinstance(model_or_config, nn.Module) else model_config(model_or_config)
    adapter = adapter_for(config.model_type)
    _, hidden, heads = attention_shape(config)
    return Width(adapter, hidden, heads, int(getattr(config, adapter.ffn_attr)))


@dataclass(frozen=True)
class PrunedShape:
    heads: int
    ffn: int


def pruned_shape(teacher_config, hidden: int, ffn: int, heads: int | None) -> PrunedShape:
    """The student's heads and FFN size when pruned from `teacher_config` to `hidden` wide; one-line errors that name
    the key to change. Heads keep the teacher's head size."""
    t = width_of(teacher_config)
    t_hidden, t_heads, head_size, t_ffn = t.hidden, t.heads, t.head_size, t.ffn
    what = f"init: teacher-pruned ({hidden} wide, from a teacher {t_hidden} wide with {t_heads} heads of {head_size})"
    if hidden > t_hidden or hidden % head_size:
        raise InputError(f"{what}: distill.student.hidden must be a multiple of the head size {head_size}, at most "
                         f"{t_hidden}")
    if heads is not None and heads * head_size != hidden:
        raise InputError(f"{what}: heads keep their size, so distill.student.heads must be {hidden // head_size} "
                         "(or left out)")
    if ffn > t_ffn:
        raise InputError(f"{what}: distill.student.ffn={ffn} is more than the teacher's {t_ffn} FFN neurons")
    return PrunedShape(heads=hidden // head_size, ffn=ffn)


@dataclass(frozen=True)
class Importance:
    """Activation statistics of the teacher on the calibration batches."""

    embedding_channels: Tensor  # (hidden,): Σ over the LayerNorms outside the layers of mean |activation|
    channels: list[Tensor]  # per teacher layer, (hidden,): Σ over its LayerNorms of mean |activation|
    heads: list[Tensor]  # per teacher layer, (heads,): mean L2 norm of each head's context vector
    neurons: list[Tensor]  # per teacher layer, (ffn,): mean |activation| after the FFN's non-linearity


@dataclass(frozen=True)
class Kept:
    """What a pruned student keeps, in the teacher's order: residual channels, and per student layer, heads and
    FFN neurons."""

    channels: Tensor
    heads: list[Tensor]
    neurons: list[Tensor]


def run_hooked(model: nn.Module, batches: Iterable[Batch],
               attach: Callable[[Callable[[], Tensor]], list[RemovableHandle]]) -> int:
    """Run `model` (in eval mode, without gradients) on `batches` with the hooks that `attach` registers, and remove
    them and restore the model's mode after, whatever happens. `attach` gets a function that gives the attention mask
    (B, T) of the batch being run, for hooks that keep real tokens only. Returns the number of real tokens run."""
    current: dict[str, Tensor] = {}
    handles = attach(lambda: current["mask"])
    was_training = model.training
    model.eval()
    tokens = 0
    try:
        with torch.no_grad():
            for ids, mask in batches:
                current["mask"] = mask
                tokens += int(mask.sum())
                model(input_ids=ids, attention_mask=mask)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return tokens


def measure_importance(teacher: nn.Module, batches: Iterable[Batch]) -> Importance:
    """Run `teacher` on `batches` with hooks; the statistics are means over real tokens."""
    width = width_of(teacher)
    adapter, hidden, heads = width.adapter, width.hidden, width.heads
    layers = layer_list(teacher)
    sums: dict[str, Tensor] = {}

    def norms(module: nn.Module) -> list[nn.Module]:
        return [m for m in module.modules() if isinstance(m, nn.LayerNorm) and m.normalized_shape == (hidden,)]

    def attach(mask_now: Callable[[], Tensor]) -> list[RemovableHandle]:
        def add(key: str, values: Tensor) -> None:  # values (B, T, N) → Σ over real tokens, (N,)
            real = mask_now().to(values.dtype)[..., None]
            total = (values.float() * real).sum(dim=(0, 1))
            sums[key] = sums[key] + total if key in sums else total

        handles = []
        inside = {id(m) for layer in layers for m in norms(layer)}
        for norm in norms(base_model(teacher)):
            if id(norm) not in inside:
                handles.append(norm.register_forward_hook(lambda m, i, out: add("channels", out.abs())))
        for index, layer in enumerate(layers):
            for norm in norms(layer):
                handles.append(norm.register_forward_hook(
                    lambda m, i, out, index=index: add(f"channels.{index}", out.abs())))

            def context(module, args, index=index):  # (B, T, heads·d) → per-head L2 norms (B, T, heads)
                x = args[0]
                add(f"heads.{index}", x.float().view(*x.shape[:-1], heads, -1).norm(dim=-1))

            def neurons(module, args, index=index):
                add(f"neurons.{index}", args[0].abs())

            handles.append(layer.get_submodule(adapter.attention_output).register_forward_pre_hook(context))
            handles.append(layer.get_submodule(adapter.ffn_out).register_forward_pre_hook(neurons))
        return handles

    tokens = run_hooked(teacher, batches, attach)
    count = torch.tensor(float(max(tokens, 1)))
    if not sums:
        raise InputError("init: teacher-pruned ranks the teacher's channels on calibration text, and none was given")
    return Importance(embedding_channels=sums.get("channels", torch.zeros(hidden)) / count,
                      channels=[sums[f"channels.{i}"] / count for i in range(len(layers))],
                      heads=[sums[f"heads.{i}"] / count for i in range(len(layers))],
                      neurons=[sums[f"neurons.{i}"] / count for i in range(len(layers))])


def top(scores: Tensor, keep: int) -> Tensor:
    """The indices of the `keep` largest scores, in ascending index order (ties: the lower index)."""
    order = torch.argsort(-scores, stable=True)[:keep]
    return torch.sort(order).values


def choose(importance: Importance, picks: Sequence[int], hidden: int, shape: PrunedShape, shared_heads: bool) -> Kept:
    """The channels, heads and neurons a student of `hidden` × `shape` keeps from teacher layers `picks`."""
    head_scores = [importance.heads[p] for p in picks]
    if shared_heads:  # one head set for every layer: Σ of the picked layers' scores
        common = top(torch.stack(head_scores).sum(dim=0), shape.heads)
        heads = [common] * len(picks)
    else:
        heads = [top(scores, shape.heads) for scores in head_scores]
    channels = importance.embedding_channels + sum(importance.channels[p] for p in picks)
    return Kept(channels=top(channels, hidden), heads=heads,
                neurons=[top(importance.neurons[p], shape.ffn) for p in picks])


def head_dims(heads: Tensor, head_size: int) -> Tensor:
    """The Q/K/V output dims of `heads`: (h·d … h·d + d−1) for each kept head h, in order."""
    return (heads[:, None] * head_size + torch.arange(head_size)[None, :]).reshape(-1)


def layer_axes(adapter: Adapter, name: str, channels: Tensor, dims: Tensor, neurons: Tensor) -> list[Tensor | None]:
    """For a parameter of one layer (`name` relative to it): the index kept along each axis (None: not a width
    axis; decided by shape below)."""
    module, _, kind = name.rpartition(".")
    weight = kind == "weight"
    if module in (adapter.query, adapter.key, adapter.value):
        return [dims, channels] if weight else [dims]
    if module == adapter.attention_output:
        return [channels, dims] if weight else [channels]
    if module == adapter.ffn_in:
        return [neurons, channels] if weight else [neurons]
    if module == adapter.ffn_out:
        return [channels, neurons] if weight else [channels]
    return []


def sliced(tensor: Tensor, target: torch.Size, axes: list[Tensor | None], channels: Tensor, teacher_hidden: int,
           name: str) -> Tensor:
    """`tensor` indexed along each axis to `target`: by `axes[i]` where given, else by the kept channels where the
    axis is the teacher's width; an axis that would have to shrink any other way is an error (a parameter this
    module does not know how to prune)."""
    out = tensor
    for axis, size in enumerate(target):
        index = axes[axis] if axis < len(axes) else None
        if index is None and out.shape[axis] == size:
            continue
        if index is None and out.shape[axis] == teacher_hidden:
            index = channels
        if index is None or len(index) != size:
            raise InputError(f"init: teacher-pruned cannot narrow {name} {tuple(tensor.shape)} to {tuple(target)}; "
                             "use init: random for this architecture")
        out = out.index_select(axis, index.to(out.device))
    return out  # load_state_dict copies it into the student: no clone needed


def copy_pruned(teacher: nn.Module, student: nn.Module, picks: Sequence[int], kept: Kept) -> None:
    """Load into `student` the teacher's embeddings and layers `picks`, narrowed to what `kept` keeps."""
    t = width_of(teacher)
    adapter, t_hidden, head_size = t.adapter, t.hidden, t.head_size
    t_state, s_state = teacher.state_dict(), student.state_dict()
    prefix = adapter.layers + "."
    bias_table = f"{adapter.score_bias}.weight" if adapter.score_bias else None
    new: dict[str, Tensor] = {}
    for name, target in s_state.items():
        axes: list[Tensor | None] = []
        source = name
        if name.startswith(prefix):
            index, _, rest = name[len(prefix):].partition(".")
            s_layer = int(index)
            source = f"{prefix}{picks[s_layer]}.{rest}"
            axes = layer_axes(adapter, rest, kept.channels, head_dims(kept.heads[s_layer], head_size),
                              kept.neurons[s_layer])
        elif name == bias_table:  # (buckets, heads): one column per head, the same heads in every layer
            axes = [None, kept.heads[0]]
        if source not in t_state:
            raise InputError(f"init: teacher-pruned: the teacher has no {source} for the student's {name}")
        new[name] = sliced(t_state[source], target.shape, axes, kept.channels, t_hidden, name)
    student.load_state_dict(new, strict=True)


def prune_into(teacher: nn.Module, student: nn.Module, picks: Sequence[int], calibration: Iterable[Batch]) -> dict:
    """Measure the teacher on `calibration`, choose what `student`'s width keeps, copy it; returns a record of the
    choice (for run.json)."""
    t, s = width_of(teacher), width_of(student)
    shared_heads = t.adapter.score_bias is not None
    importance = measure_importance(teacher, calibration)
    kept = choose(importance, picks, s.hidden, PrunedShape(heads=s.heads, ffn=s.ffn), shared_heads=shared_heads)
    copy_pruned(teacher, student, picks, kept)
    return {"channels": f"{s.hidden} of {t.hidden}", "heads": f"{s.heads} of {t.heads} per layer",
            "ffn": f"{s.ffn} of {t.ffn}", "kept_heads": [k.tolist() for k in kept.heads], "shared_heads": shared_heads,
            "kept_channels": kept.channels.tolist()}


REFIT_RIDGE = 1e-3  # the ridge, relative to the mean diagonal of the features' Gram matrix


def _inputs_and_outputs(model: nn.Module, names: Sequence[str], batches: Sequence[Batch]) -> dict[str, Tensor]:
    """For each named submodule of `model`: its input (`<name>:in`) and output (`<name>:out`) on the real tokens of
    `batches`, (tokens, width) each."""
    found: dict[str, list[Tensor]] = {}

    def attach(mask_now: Callable[[], Tensor]) -> list[RemovableHandle]:
        def hook(module: nn.Module, args: tuple[Tensor, ...], output: Tensor, name: str) -> None:
            real = mask_now().bool()
            found.setdefault(f"{name}:in", []).append(args[0][real].double())
            found.setdefault(f"{name}:out", []).append(output[real].double())
        return [model.get_submodule(name).register_forward_hook(functools.partial(hook, name=name)) for name in names]

    run_hooked(model, batches, attach)
    return {key: torch.cat(values) for key, values in found.items()}


def least_squares(features: Tensor, targets: Tensor, ridge: float = REFIT_RIDGE) -> tuple[Tensor, Tensor]:
    """(weight (out, in), bias (out,)) minimising ‖features·Wᵀ + b − targets‖² + ridge·mean(diag(XᵀX))·‖W‖², in
    float64. features (N, in), targets (N, out)."""
    x = torch.cat([features.double(), torch.ones(len(features), 1, dtype=torch.float64)], dim=1)  # (N, in + 1)
    gram = x.T @ x
    penalty = torch.diag(torch.full((len(gram),), ridge * float(gram.diagonal()[:-1].mean()), dtype=torch.float64))
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    solution = torch.linalg.solve(gram + penalty, x.T @ targets.double())  # (in + 1, out)
    return solution[:-1].T, solution[-1]


@torch.no_grad()
def refit(student: nn.Module, copy: nn.Module, channels: Tensor, calibration: Sequence[Batch]) -> dict[str, Any]:
    """Refit `student`'s output Linears against `copy` (the same teacher layers at full width), bottom layer first
    (see the module docstring); returns a record of the fit (for run.json)."""
    adapter = width_of(copy).adapter
    s_base, c_base = base_model(student), base_model(copy)
    fit: list[float] = []
    for index in range(len(layer_list(student))):
        # the attention block's residual input is what its query reads; the FFN block's, what its first Linear reads
        for block, reader in ((adapter.attention_output, adapter.query), (adapter.ffn_out, adapter.ffn_in)):
            linear, residual = f"{adapter.layers}.{index}.{block}", f"{adapter.layers}.{index}.{reader}"
            wanted = _inputs_and_outputs(c_base, (linear, residual), calibration)
            own = _inputs_and_outputs(s_base, (linear, residual), calibration)
            target = (wanted[f"{linear}:out"] + wanted[f"{residual}:in"])[:, channels] - own[f"{residual}:in"]
            weight, bias = least_squares(own[f"{linear}:in"], target, REFIT_RIDGE)
            module = s_base.get_submodule(linear)
            assert isinstance(module, nn.Linear), f"{linear} is not a Linear"
            module.weight.copy_(weight)
            module.bias.copy_(bias)
            residual_error = target - own[f"{linear}:in"] @ weight.T - bias
            fit.append(round(float(residual_error.norm() / target.norm()), 4))
    tokens = sum(int(mask.sum()) for _, mask in calibration)
    return {"ridge": REFIT_RIDGE, "tokens": tokens, "relative_error": fit}
