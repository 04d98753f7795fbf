"""Training checkpoints of both trainers (distillation, fine-tuning): safetensors for tensors, JSON for
the rest; nothing is unpickled.

```
WORK/checkpoints/step-0000100/
  model.safetensors       the trained model's state dict
  projection.safetensors  (distillation, where the loss has one) a module trained beside the model and
                          kept in the checkpoint, never in the model: the learned projection to the
                          teacher's width
  best.safetensors        (fine-tuning) other named tensor groups: the best epoch's weights, the data
                          order's generator state
  optimizer.safetensors   AdamW state tensors, keyed "<param index>.<name>"
  rng.safetensors         torch CPU (and CUDA) generator states
  state.json              step, samples seen, optimizer param groups and scalar state, metrics, and the
                          trainer's own JSON state ("extra")
  files.json              written last: every other file's size and sha256
```
Each checkpoint directory is written to a temporary sibling and renamed (`atomic_directory`), so a
kill at any moment leaves the previous checkpoints intact. The rename does not cover a full disk, a
partial copy of the run folder or bit rot: `--resume` checks the newest checkpoint against its
`files.json` (sizes, then sha256) and falls back to the newest intact one with a one-line warning, or
stops with one line naming the damaged file when none is intact.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from minilm_deploy.artifact import sha256_file
from minilm_deploy.errors import InputError
from minilm_deploy.paths import atomic_directory, remove_tree

FILES = "files.json"

_STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class TrainProgress:
    step: int = 0  # optimizer steps done
    samples: int = 0  # sequences consumed (global)
    tokens: int = 0  # real tokens consumed (global)
    last: dict[str, float] = field(default_factory=dict)  # the last logged metrics


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, entry in meta["scalars"].items():
        state.setdefault(int(index), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    return tensors


def _restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(
    root: Path, model: nn.Module, optimizer: torch.optim.Optimizer, progress: TrainProgress, keep: int,
    extras: Mapping[str, nn.Module] | None = None, tensors: dict[str, dict[str, torch.Tensor]] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write `root/step-NNNNNNN` atomically, then drop all but the newest `keep` checkpoints.
    `extras`: modules trained beside the model, each saved as `<name>.safetensors`; `tensors`: other named
    tensor groups, saved the same way (read back with `read_tensors`); `extra`: JSON-able trainer state
    (read back with `read_extra`)."""
    final = Path(root) / f"step-{progress.step:07d}"
    optimizer_tensors, meta = _optimizer_tensors(optimizer)
    groups = {name: module.state_dict() for name, module in {"model": model, **(extras or {})}.items()}
    if taken := set(tensors or {}) & {*groups, "optimizer", "rng"}:
        raise ValueError(f"checkpoint tensor groups may not be named {sorted(taken)}")
    groups |= tensors or {}
    with atomic_directory(final, overwrite=True) as tmp:
        for name, group in groups.items():
            save_file({k: v.detach().cpu().contiguous() for k, v in group.items()}, str(tmp / f"{name}.safetensors"))
        save_file(optimizer_tensors, str(tmp / "optimizer.safetensors"))
        save_file(_rng_tensors(), str(tmp / "rng.safetensors"))
        record = {"progress": progress.__dict__, "optimizer": meta, "extra": extra or {}}
        (tmp / "state.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
        listing = {f.name: {"bytes": f.stat().st_size, "sha256": sha256_file(f)} for f in sorted(tmp.iterdir())}
        (tmp / FILES).write_text(json.dumps(listing, indent=1), encoding="utf-8")  # last: it vouches for the rest
    for old in list_checkpoints(root)[:-keep]:
        remove_tree(old)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint directories, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def damage(path: Path) -> str | None:
    """What is wrong with the checkpoint at `path` (None when every file matches its files.json)."""
    listing_file = path / FILES
    if not listing_file.is_file():
        return _structural_damage(path)  # written before files.json existed: check what can be checked
    try:
        listing = json.loads(listing_file.read_text(encoding="utf-8"))
        assert isinstance(listing, dict) and "state.json" in listing and "model.safetensors" in listing
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AssertionError):
        return f"{FILES} is unreadable"
    for name, want in listing.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != want["bytes"]:
            return f"{name} has {file.stat().st_size:,} bytes, {want['bytes']:,} written"
    for name, want in listing.items():  # sizes first (cheap), then contents
        if sha256_file(path / name) != want["sha256"]:
            return f"{name} does not match its sha256 (corrupted)"
    return None


def _structural_damage(path: Path) -> str | None:
    """For a checkpoint without files.json: the files are there, state.json parses, each safetensors file is as
    long as its header says."""
    from minilm_deploy.models.loading import check_safetensors

    for name in ("model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"):
        if not (path / name).is_file():
            return f"{name} is missing"
    try:
        json.loads((path / "state.json").read_text(encoding="utf-8"))["progress"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        return "state.json is unreadable"
    for file in sorted(path.glob("*.safetensors")):
        try:
            check_safetensors(file)
        except InputError:
            return f"{file.name} is truncated or corrupt"
    return None


def resume_point(root: Path) -> Path | None:
    """The newest intact checkpoint under `root` (None when there is none at all); a damaged newer one is
    skipped with a one-line warning; every one damaged is a one-line error naming the newest's damage."""
    found = list_checkpoints(root)
    problems: list[tuple[str, str]] = []
    for path in reversed(found):
        why = damage(path)
        if why is None:
            for skipped, reason in problems:
                sys.stderr.write(f"minilm: warning: checkpoint {skipped} is damaged ({reason}); resuming from {path.name}\n")
            return path
        problems.append((path.name, why))
    if problems:
        name, why = problems[0]
        raise InputError(f"--resume: no intact checkpoint under {root} (newest, {name}: {why}); "
                         f"remove {root.parent} to start again")
    return None


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None, device: torch.device,
    extras: Mapping[str, nn.Module] | None = None,
) -> TrainProgress:
    """Restore model (and `extras`), optimizer and RNG states from `path`; returns where training stood."""
    path = Path(path)
    for name, module in {"model": model, **(extras or {})}.items():
        module.load_state_dict(load_file(str(path / f"{name}.safetensors"), device=str(device)))
    record = json.loads((path / "state.json").read_text(encoding="utf-8"))
    if optimizer is not None:
        tensors = load_file(str(path / "optimizer.safetensors"), device=str(device))
        optimizer.load_state_dict(_optimizer_state(tensors, record["optimizer"]))
    _restore_rng(load_file(str(path / "rng.safetensors")))
    return TrainProgress(**record["progress"])


def read_tensors(path: Path, name: str) -> dict[str, torch.Tensor]:
    """A tensor group `save_checkpoint(..., tensors={name: ...})` wrote, on the CPU."""
    return load_file(str(Path(path) / f"{name}.safetensors"))


def read_extra(path: Path) -> dict[str, Any]:
    """The trainer's own JSON state `save_checkpoint(..., extra=...)` wrote ({} for older checkpoints)."""
    return json.loads((Path(path) / "state.json").read_text(encoding="utf-8")).get("extra") or {}
