"""Distil the real zoo:all-minilm-l6-v2 into a 3x384 student for a few dozen small steps: the loss falls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from transformers import AutoModel

from minilm_deploy.cli.main import main

pytestmark = pytest.mark.slow


def test_real_teacher_distils_and_the_loss_falls(tmp_path: Path, capsys) -> None:
    recipe = {
        "name": "real", "teacher": "zoo:all-minilm-l6-v2", "seed": 0, "output_dir": str(tmp_path / "run"),
        "distill": {
            "corpus": "zoo:corpus-en", "student": {"layers": 3, "hidden": 384},
            "train": {"steps": 30, "batch_size": 8, "max_length": 32, "lr": 1e-3, "warmup": 3, "log_every": 3,
                      "checkpoint_every": 30},
        },
    }
    path = tmp_path / "real.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["distill", str(path), "--json"]) == 0
    out = tmp_path / "run" / "student"
    assert json.loads(capsys.readouterr().out)["student"] == str(out)
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 10
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.85 * first, losses
    model = AutoModel.from_pretrained(out)
    assert (model.config.num_hidden_layers, model.config.hidden_size, model.config.num_attention_heads) == (3, 384, 12)
