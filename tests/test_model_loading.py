"""Issue 18, root cause 1: one loading path for model folders. Every command that takes a model (distill,
finetune, eval, export) turns a truncated safetensors file, a pickle-only folder and a tokenizer of another
vocabulary into one line and exit code 1/2, writes nothing, and never unpickles anything."""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import pytest
import yaml
from conftest import TINY_BERT, make_tiny_bert, save_tiny_tokenizer

from minilm_deploy.cli.main import main
from minilm_deploy.errors import InputError
from minilm_deploy.models import loading


class _Payload:
    """Unpickling this creates `marker`: what a hostile pytorch_model.bin could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def pickle_only(folder: Path, marker: Path) -> Path:
    make_tiny_bert(folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"weights": _Payload(marker)}))
    return folder


def truncated(folder: Path) -> Path:
    make_tiny_bert(folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) * 2 // 3])  # an interrupted copy
    return folder


def other_vocabulary(folder: Path) -> Path:
    """A model whose tokenizer has more tokens than its embedding table (the tokenizer of another model)."""
    import transformers

    save_tiny_tokenizer(folder)
    transformers.BertModel(transformers.BertConfig(vocab_size=10, **TINY_BERT)).save_pretrained(str(folder))
    return folder


def test_the_checks_without_transformers(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(InputError, match=r"only pickle weights \(pytorch_model.bin\).*safe_serialization=True"):
        loading.weight_files(pickle_only(tmp_path / "p", marker))
    assert not marker.exists()
    with pytest.raises(InputError, match=r"truncated \([\d,]+ of [\d,]+ bytes\)"):
        loading.weight_files(truncated(tmp_path / "t"))
    empty = tmp_path / "e"
    empty.mkdir()
    (empty / "model.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(InputError, match="not a complete safetensors file"):
        loading.check_safetensors(empty / "model.safetensors")
    (empty / "model.safetensors").write_bytes((10**9).to_bytes(8, "little") + b"{}")
    with pytest.raises(InputError, match="header of 1,000,000,000 bytes"):
        loading.check_safetensors(empty / "model.safetensors")
    good = make_tiny_bert(tmp_path / "g")
    assert loading.weight_files(good) == [good / "model.safetensors"]
    (good / "config.json").write_text("{not json")
    with pytest.raises(InputError, match="config.json: not valid JSON"):
        loading.read_config(good)


def _distill_recipe(tmp_path: Path, teacher: Path) -> list[str]:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"the film number {i} was good and long" for i in range(50)) + "\n")
    recipe = {"name": "t", "teacher": str(teacher), "output_dir": str(tmp_path / "run"), "seed": 1,
              "distill": {"corpus": str(corpus), "student": {"layers": 1, "hidden": 16},
                          "train": {"steps": 2, "batch_size": 2, "max_length": 16}}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return ["distill", str(path)]


def _task(tmp_path: Path) -> Path:
    folder = tmp_path / "task"
    folder.mkdir(exist_ok=True)
    for split in ("train", "dev", "test"):
        rows = "".join(f"the film was {'good' if i % 2 else 'bad'},{i % 2}\n" for i in range(20))
        (folder / f"{split}.csv").write_text("text,label\n" + rows)
    return folder


COMMANDS = {
    "finetune": lambda tmp, model: ["finetune", str(model), "--task", str(_task(tmp)), "--output", str(tmp / "out")],
    "eval": lambda tmp, model: ["eval", str(model), "--task", str(_task(tmp))],
    "export": lambda tmp, model: ["export", str(model), "--output", str(tmp / "out")],
    "distill": lambda tmp, model: _distill_recipe(tmp, model),
}
DAMAGE = {
    "truncated": (truncated, r"truncated \("),
    "pickle-only": (None, "only pickle weights"),
    "other-vocabulary": (other_vocabulary, "does not belong to this model"),
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_every_command_gives_one_line_and_writes_nothing(tmp_path, capsys, command, damage) -> None:
    marker = tmp_path / "pwned"
    make, expected = DAMAGE[damage]
    model = pickle_only(tmp_path / "model", marker) if make is None else make(tmp_path / "model")
    if command == "eval":  # eval takes a fine-tuned task model
        config = json.loads((model / "config.json").read_text())
        config["architectures"] = ["BertForSequenceClassification"]
        (model / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    code = main(COMMANDS[command](tmp_path, model))
    err = capsys.readouterr().err.strip().splitlines()
    assert code in (1, 2) and len(err) == 1, err
    assert err[0].startswith("minilm: error:") and re.search(expected, err[0]), err
    assert not marker.exists()  # nothing was unpickled
    assert not (tmp_path / "out").exists() and not (tmp_path / "run" / "student").exists()
