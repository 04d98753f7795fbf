"""torchrun with 2 CPU processes (gloo): the same losses and weights as one process with the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_distill_train import corpus, teacher_dir, write_recipe  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_two_gloo_processes_match_one_process(tmp_path, teacher_dir, corpus) -> None:  # noqa: F811
    recipe = write_recipe(tmp_path, teacher_dir, corpus, student={"layers": 2, "hidden": 16, "dropout": 0.0},
                          train={"steps": 6, "batch_size": 8, "grad_accum": 2, "log_every": 1, "checkpoint_every": 3,
                                 "bf16": False})  # fp32: equality is the point (bf16 auto would engage on AMX)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    single, multi = tmp_path / "single", tmp_path / "multi"
    one = subprocess.run([sys.executable, "-m", "minilm_deploy.distill", str(recipe), "--output", str(single)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
              "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
              "-m", "minilm_deploy.distill", str(recipe), "--output", str(multi)]
    two = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    run = json.loads((multi / "run.json").read_text())
    assert run["world_size"] == 2 and run["samples"] == 48
    a, b = _metrics(single), _metrics(multi)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    for key in ("loss", "attention", "value"):
        assert [r[key] for r in b] == pytest.approx([r[key] for r in a], rel=1e-4), key
    wa, wb = load_file(str(single / "model.safetensors")), load_file(str(multi / "model.safetensors"))
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=1e-4, atol=1e-5, msg=name)
    # Only rank 0 wrote: one metrics line per step, no leftovers.
    assert not (tmp_path / "multi.partial").exists()


def test_batch_that_does_not_split_over_processes_is_refused(tmp_path, teacher_dir, corpus) -> None:  # noqa: F811
    recipe = write_recipe(tmp_path, teacher_dir, corpus, train={"steps": 2, "batch_size": 3})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
              "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
              "-m", "minilm_deploy.distill", str(recipe), "--output", str(tmp_path / "x")]
    done = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "must be divisible by the 2 processes" in done.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()
