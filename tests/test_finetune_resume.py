"""Resumable fine-tuning on a tiny random BERT: a run stopped at a safe point (SIGTERM) and resumed ends
exactly where the uninterrupted run ends; finished seeds are kept; a resume must ask for the same run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from minilm_deploy.checkpoint import list_checkpoints
from minilm_deploy.errors import InputError
from minilm_deploy.finetune import api, interrupt
from minilm_deploy.finetune.model import load_tokenizer
from minilm_deploy.finetune.prepare import prepare
from minilm_deploy.finetune.trainer import train_seed
from tests.test_finetune_train import FAST, synthetic_task

# 4 batches an epoch, 3 epochs: 12 steps, a checkpoint every 3; dropout on, so the RNG state matters
RESUMABLE = replace(FAST, epochs=3, train_limit=64, dev_limit=40, checkpoint_every=3)


def stop_after(monkeypatch: pytest.MonkeyPatch, checks: int) -> None:
    """A SIGTERM arriving after `checks` safe points (training or evaluation batches)."""
    real, calls = interrupt.check, []

    def check() -> None:
        calls.append(1)
        if len(calls) == checks:
            interrupt._stop.set()
        real()

    monkeypatch.setattr(interrupt, "check", check)


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_a_stopped_seed_resumes_exactly(folder: Path, prep, ft, work: Path, monkeypatch: pytest.MonkeyPatch,
                                          checks: int) -> set[str]:
    """Train seed 5 whole, then stopped after `checks` safe points and resumed from `work`: the same history,
    scores and weights. Returns the names of the files in the stop's checkpoint."""
    whole_model, whole = train_seed(folder, prep, ft, 5)
    with monkeypatch.context() as patch:
        stop_after(patch, checks)
        with pytest.raises(interrupt.SafeStop):
            train_seed(folder, prep, ft, 5, work=work)
    interrupt._stop.clear()
    [saved] = list_checkpoints(work)  # the stop's own checkpoint, older ones dropped
    files = {path.name for path in saved.iterdir()}
    resumed_model, resumed = train_seed(folder, prep, ft, 5, work=work)
    assert resumed.history == whole.history and resumed.splits == whole.splits
    assert resumed.best_epoch == whole.best_epoch
    for name, tensor in weights(whole_model).items():
        assert torch.equal(tensor, weights(resumed_model)[name]), name
    assert saved.name.startswith("step-")
    return files


@pytest.mark.parametrize("checks", [2, 5, 9])  # mid-epoch between checkpoints, on one, in the 3rd epoch
def test_a_stopped_seed_resumes_exactly(tmp_path: Path, tiny_bert_session_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                         checks: int) -> None:
    prep = prepare(synthetic_task(), load_tokenizer(tiny_bert_session_dir), RESUMABLE)
    assert_a_stopped_seed_resumes_exactly(tiny_bert_session_dir, prep, RESUMABLE, tmp_path / "seed-5", monkeypatch, checks)


def test_finetune_model_resumes_after_the_finished_seeds(tmp_path: Path, tiny_bert_session_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    task = synthetic_task()
    whole = api.finetune_model(str(tiny_bert_session_dir), RESUMABLE, tmp_path / "whole", [1, 2], task=task)
    out = tmp_path / "out"
    per_seed = 12 + 3 * 1  # 12 training batches and 3 dev batches (40 examples, eval batches of 128)
    with monkeypatch.context() as patch:
        stop_after(patch, per_seed + 4)  # seed 1 finishes (plus its test batches), seed 2 stops early
        with pytest.raises(KeyboardInterrupt):
            api.finetune_model(str(tiny_bert_session_dir), RESUMABLE, out, [1, 2], task=task)
    interrupt._stop.clear()
    partial = tmp_path / "out.partial"
    assert not out.exists() and (partial / "seed-1.json").is_file() and (partial / "best" / "model.safetensors").is_file()
    assert list_checkpoints(partial / "seed-2")
    with pytest.raises(InputError, match="holds an interrupted fine-tuning run; continue it with --resume"):
        api.finetune_model(str(tiny_bert_session_dir), RESUMABLE, out, [1, 2], task=task)
    with pytest.raises(InputError, match=r"finetune\.lr changed"):
        api.finetune_model(str(tiny_bert_session_dir), replace(RESUMABLE, lr=1e-3), out, [1, 2], task=task, resume=True)
    with pytest.raises(InputError, match="seeds was"):
        api.finetune_model(str(tiny_bert_session_dir), RESUMABLE, out, [1, 3], task=task, resume=True)
    resumed = api.finetune_model(str(tiny_bert_session_dir), replace(RESUMABLE, checkpoint_every=5), out, [1, 2],
                                 task=task, resume=True)
    assert [r["history"] for r in resumed["runs"]] == [r["history"] for r in whole["runs"]]
    assert resumed["summary"] == whole["summary"] and resumed["best_seed"] == whole["best_seed"]
    assert not partial.exists()
    from safetensors.torch import load_file

    mine, theirs = load_file(str(out / "model.safetensors")), load_file(str(tmp_path / "whole" / "model.safetensors"))
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_sigterm_checkpoints_and_the_cli_resumes(tmp_path: Path, tiny_bert_session_dir: Path) -> None:
    """A real SIGTERM to `minilm finetune` in its second epoch: exit 130, a checkpoint in <output>.partial;
    the same command refuses to start over it, a changed one refuses to resume it, --resume finishes it."""
    data = tmp_path / "task"
    data.mkdir()
    task = synthetic_task(n_train=1600)
    for split in ("train", "dev", "test"):
        rows = [{"text": ex.text, "label": ex.label} for ex in task.splits[split]]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "tuned"
    command = [sys.executable, "-m", "minilm_deploy", "finetune", str(tiny_bert_session_dir), "--task", str(data),
               "--output", str(out), "--set", "epochs=4", "--set", "checkpoint_every=0", "--set", "batch_size=8",
               "--set", "max_length=32", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:  # no terminal: one line per finished epoch
        lines.append(line)
        if "epoch 1/4" in line:
            proc.send_signal(signal.SIGTERM)
            break
    rest, err = proc.communicate(timeout=120)
    err = "".join(lines) + err
    assert proc.returncode == 130, err
    partial = tmp_path / "tuned.partial"
    assert list_checkpoints(partial / "seed-0") and "stopped at step" in err and not out.exists(), err
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode != 0 and "continue it with --resume" in again.stderr, again.stderr
    changed = subprocess.run([*command, "--set", "lr=1e-3", "--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert changed.returncode != 0 and "finetune.lr changed" in changed.stderr, changed.stderr
    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr and "epoch 1/4" not in resumed.stderr  # epoch 1 is not trained again
    metrics = json.loads(resumed.stdout)
    assert [h["epoch"] for h in metrics["runs"][0]["history"]] == [1, 2, 3, 4] and not partial.exists()
    assert (out / "model.safetensors").is_file()
