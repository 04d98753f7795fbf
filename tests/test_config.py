"""Strict recipe loading: unknown keys, wrong types, missing fields, overrides, round trip."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from minilm_deploy.config import from_dict, load_yaml, parse_overrides, to_dict
from minilm_deploy.errors import InputError
from minilm_deploy.recipe import RECIPE_FILE, load_recipe, recipe_from_dict, save_recipe


@dataclass(frozen=True)
class Student:
    layers: int
    hidden: int = 384
    init: Literal["random", "teacher-layers"] = "random"


@dataclass(frozen=True)
class Section:
    student: Student
    lr: float = 1e-4
    sizes: tuple[int, ...] = (1, 2)
    tags: dict[str, str] = field(default_factory=dict)
    note: str | None = None


def test_nested_types_are_converted() -> None:
    got = from_dict(Section, {"student": {"layers": 3}, "lr": "3e-4", "sizes": [4, 8]}, source="r.yaml")
    assert got == Section(student=Student(layers=3), lr=3e-4, sizes=(4, 8))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"student": {"layers": "six"}}, "r.yaml: student.layers: expected int, got 'six'"),
        ({"student": {"layers": 3, "depth": 2}}, "r.yaml: student.depth: unknown key"),
        ({"student": {}}, "r.yaml: student.layers: required field is missing"),
        ({"student": {"layers": True}}, "r.yaml: student.layers: expected int"),
        ({"student": {"layers": 3, "init": "zeros"}}, "student.init: expected one of 'random', 'teacher-layers'"),
        ({"student": {"layers": 3}, "sizes": [1, "x"]}, "r.yaml: sizes[1]: expected int"),
        ({"student": {"layers": 3}, "lr": "fast"}, "r.yaml: lr: expected float"),
        ({"student": 3}, "r.yaml: student: expected a mapping"),
    ],
)
def test_bad_values_name_the_file_and_dotted_path(data: dict, message: str) -> None:
    with pytest.raises(InputError) as info:
        from_dict(Section, data, source="r.yaml")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_overrides_parse_yaml_scalars() -> None:
    assert parse_overrides(["a.b=3", "a.c=3e-4", "d=true", "e=hello"]) == {
        "a": {"b": 3, "c": "3e-4"},  # YAML 1.1 reads 3e-4 as text; float fields accept it
        "d": True,
        "e": "hello",
    }


def test_override_without_equals_is_an_error() -> None:
    with pytest.raises(InputError, match="expected KEY.PATH=VALUE"):
        parse_overrides(["distill.steps"])


def _write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_recipe_overrides_are_type_checked(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: demo\nteacher: zoo:all-minilm-l6-v2\n")
    assert load_recipe(path, ["seed=7"]).seed == 7
    with pytest.raises(InputError, match="r.yaml: seed: expected int, got 'x'"):
        load_recipe(path, ["seed=x"])
    with pytest.raises(InputError, match="r.yaml: sed: unknown key"):
        load_recipe(path, ["sed=1"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: [unclosed\n", "malformed YAML (line"),
        ("", "the file is empty"),
        ("- a\n- b\n", "expected a mapping at the top level"),
        ("teacher: zoo:x\n", "name: required field is missing"),
        ("name: a/b\nteacher: x\n", "name must be a non-empty folder name"),
    ],
)
def test_malformed_recipes(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_recipe(_write(tmp_path, text))


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        load_yaml(bad)


def test_saved_recipe_round_trips(tmp_path: Path) -> None:
    recipe = recipe_from_dict({"name": "demo", "teacher": "zoo:all-minilm-l6-v2", "seed": 3})
    path = save_recipe(recipe, tmp_path)
    assert path.name == RECIPE_FILE
    assert load_recipe(path) == recipe
    assert to_dict(recipe)["seed"] == 3


def test_shipped_recipes_load() -> None:
    recipes = sorted(Path(__file__).resolve().parents[1].joinpath("recipes").glob("*.yaml"))
    for path in recipes:
        load_recipe(path)


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path) -> None:
    from minilm_deploy.config import load_yaml
    from minilm_deploy.errors import InputError

    path = tmp_path / "dup.yaml"
    path.write_text("name: a\ndistill:\n  train:\n    lr: 1.0e-4\n    lr: 1.0e-3\n")
    with pytest.raises(InputError, match=r"key 'lr' is given twice \(lines 4 and 5\)"):
        load_yaml(path)
    path.write_text("name: a\ndistill:\n  train: {lr: 1.0e-4}\n  student: {lr: 1.0e-3}\n")  # same key, other mappings
    assert load_yaml(path)["distill"]["train"]["lr"] == 1e-4


# ---------------------------------------------------------------- one training vocabulary (issue 17 item 3)


def test_both_trainers_name_the_same_knobs_the_same_way() -> None:
    import dataclasses

    from minilm_deploy.distill.recipe import TrainSpec
    from minilm_deploy.finetune.recipe import FinetuneRecipe

    shared = {"lr", "weight_decay", "warmup", "batch_size", "max_length", "max_grad_norm", "bf16", "steps"}
    for cls in (TrainSpec, FinetuneRecipe):
        assert shared <= {f.name for f in dataclasses.fields(cls)}, cls.__name__


def test_old_names_still_work_for_one_release_with_one_warning_line(capsys) -> None:
    old = recipe_from_dict({"name": "old", "teacher": "t", "distill": {"train": {"steps": 5, "batch": 8, "seq_len": 32, "clip": 0.5}},
                            "finetune": {"warmup_ratio": 0.2}}, source="old.yaml")
    assert (old.distill.train.batch_size, old.distill.train.max_length, old.distill.train.max_grad_norm) == (8, 32, 0.5)
    assert old.finetune.warmup == 0.2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("minilm: warning: old.yaml: ") for line in lines)
    assert "distill.train.batch is now distill.train.batch_size" in lines[0]
    assert "finetune.warmup_ratio is now finetune.warmup" in lines[3]


def test_an_old_and_a_new_name_together_are_refused() -> None:
    with pytest.raises(InputError, match=r"distill.train.batch and distill.train.batch_size are one setting"):
        recipe_from_dict({"name": "r", "teacher": "t", "distill": {"train": {"steps": 5, "batch": 8, "batch_size": 8}}}, source="r.yaml")


def test_one_schedule_and_one_optimizer_for_both_trainers() -> None:
    """Fine-tuning's and distillation's learning rates follow the same curve; both AdamWs are fused and split decay the
    same way."""
    import torch

    from minilm_deploy.distill.recipe import TrainSpec
    from minilm_deploy.distill.trainer import lr_at, make_optimizer
    from minilm_deploy.finetune.recipe import FinetuneRecipe
    from minilm_deploy.finetune.trainer import make_optimizer as finetune_optimizer

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    spec = TrainSpec(steps=20, lr=1e-3, warmup=4, weight_decay=0.1)
    optimizer, tuned_lr = finetune_optimizer(model, FinetuneRecipe(lr=1e-3, warmup=4, weight_decay=0.1), total=20)
    tuned = [tuned_lr(step) for step in range(20)]
    assert tuned == pytest.approx([lr_at(step, spec) for step in range(20)])
    assert tuned[:6] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3 * 15 / 16])  # warm-up, then linear decay
    for opt in (optimizer, make_optimizer(model, spec)):
        decay, rest = opt.param_groups
        assert (decay["weight_decay"], rest["weight_decay"]) == (0.1, 0.0)
        assert [p.ndim for p in decay["params"]] == [2] and [p.ndim for p in rest["params"]] == [1, 1, 1]
        assert decay["fused"] and rest["fused"]  # torch's default loops over the tensors on a CPU (slow on the embedding)
