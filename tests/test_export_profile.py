"""Export profiles: the shipped YAML files, strict loading, CLI flag overrides, the recipe's export section."""

from __future__ import annotations

from pathlib import Path

import pytest

from minilm_deploy.cli.main import main
from minilm_deploy.errors import InputError
from minilm_deploy.export.profile import PROFILE_DIR, ExportProfile, Validation, load_profile, with_overrides
from minilm_deploy.recipe import recipe_from_dict

SHIPPED = ("onnx-cpu-fp32", "onnx-cpu-int8", "trt-fp16", "trt-int8")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_load(name):
    profile = load_profile(PROFILE_DIR / f"{name}.yaml")
    assert profile.name == name
    assert load_profile(name) == profile  # a bare name finds exporters/NAME.yaml


def test_shipped_profiles_say_what_they_build():
    assert load_profile("onnx-cpu-int8").precision == "int8"
    assert load_profile("onnx-cpu-int8").quantization.per_channel is True
    assert load_profile("onnx-cpu-fp32").tensorrt is None
    fp16, int8 = load_profile("trt-fp16"), load_profile("trt-int8")
    assert (fp16.precision, fp16.tensorrt.precision, len(fp16.trt_shape_ranges)) == ("fp32", "fp16", 2)
    assert int8.tensorrt.precision == "int8" and int8.calibration.samples == 512
    assert fp16.trt_shape_ranges[1].batch.opt == 32


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(InputError, match=r"p.yaml: quantization.per_chanel: unknown key"):
        load_profile(write(tmp_path, "precision: int8\nquantization: {per_chanel: true}\n"))


@pytest.mark.parametrize("shape", ["{min: 1, opt: 64, max: 32}", "{min: 8, opt: 4, max: 32}", "{min: 0, opt: 1, max: 2}"])
def test_out_of_order_shapes_are_refused(tmp_path, shape):
    with pytest.raises(InputError, match=r"p.yaml: shapes.batch: min/opt/max must satisfy"):
        load_profile(write(tmp_path, f"shapes:\n  batch: {shape}\n"))


def test_out_of_order_trt_profile_names_its_index(tmp_path):
    text = "tensorrt:\n  shape_ranges:\n    - sequence: {min: 1, opt: 128, max: 64}\n"
    with pytest.raises(InputError, match=r"tensorrt.shape_ranges\[0\].sequence: min/opt/max"):
        load_profile(write(tmp_path, text))


@pytest.mark.parametrize("text,fragment", [
    ("precision: int4\n", "precision: expected one of"),
    ("tensorrt: {optimization_level: 9}\n", "optimization_level must be 0..5"),
    ("opset: 9\n", "opset must be 14..21"),
    ("- a list\n", "expected a mapping"),
])
def test_other_bad_values(tmp_path, text, fragment):
    with pytest.raises(InputError, match=fragment) as info:
        load_profile(write(tmp_path, text))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["shapes: {batch: {min: 4, opt: 2, max: 8}}\n", "surprise: 1\n"])
def test_cli_bad_profile_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, text):
    out = tmp_path / "out"
    code = main(["export", "no-such-model-needed", "--profile", str(write(tmp_path, text)), "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("minilm: error: p.yaml:")
    assert not out.exists()


def test_cli_missing_profile_file(tmp_path, capsys):
    assert main(["export", "x", "--profile", str(tmp_path / "nope.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_int8_and_fp16_flags_exclude_each_other(capsys):
    assert main(["export", "x", "--int8", "--fp16"]) == 2
    assert "exclude each other" in capsys.readouterr().err


def test_flags_choose_the_onnx_or_the_engine_precision():
    base = ExportProfile()
    assert with_overrides(base, precision="int8").precision == "int8"
    trt = with_overrides(base, precision="int8", trt=True)
    assert trt.precision == "fp32" and trt.tensorrt.precision == "int8"
    assert with_overrides(base, trt=True).tensorrt.precision == "fp16"
    assert with_overrides(load_profile("trt-fp16"), precision="int8").tensorrt.precision == "int8"


def test_recipe_export_section_is_an_export_profile():
    recipe = recipe_from_dict({"name": "r", "teacher": "zoo:all-minilm-l6-v2",
                               "export": {"precision": "int8", "shapes": {"sequence": {"min": 1, "opt": 64, "max": 128}}}})
    assert isinstance(recipe.export, ExportProfile) and recipe.export.shapes.sequence.max == 128
    with pytest.raises(InputError, match="export.shapes.sequence: min/opt/max"):
        recipe_from_dict({"name": "r", "teacher": "t", "export": {"shapes": {"sequence": {"min": 9, "opt": 1, "max": 2}}}})
    assert recipe_from_dict({"name": "r", "teacher": "t", "export": "auto"}).export == "auto"
    with pytest.raises(InputError, match="export: expected ExportProfile or 'auto' or null, got 'fastest'"):
        recipe_from_dict({"name": "r", "teacher": "t", "export": "fastest"})


def test_no_profile_means_the_shipped_fp32_profile():
    assert load_profile("onnx-cpu-fp32") == ExportProfile()


def test_an_fp32_model_computed_in_bf16_gets_the_bf16_gates():
    gates = Validation()
    assert gates.for_precision("fp32") == gates.fp32 and gates.fp32.atol == 1e-4
    assert gates.for_precision("fp32", "bf16") == gates.bf16 and gates.bf16.atol is None
    assert gates.for_precision("int8", "bf16") == gates.int8  # INT8's own gates are already the looser ones
    assert gates.for_precision("fp16") == gates.fp16
