"""The OpenVINO export backend: an fp32 or NNCF-INT8 IR beside the fp32 model.onnx, validated through
OpenVINO before it is kept, loaded by the runtime's openvino backend."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_export_onnx import build_with_task, make_tiny_bert, tiny_task

from minilm_deploy.artifact import load_manifest, verify_files
from minilm_deploy.errors import InputError, ValidationFailed
from minilm_deploy.export import build
from minilm_deploy.export.profile import Tolerance, Validation, load_profile
from minilm_deploy.export.samples import SENTENCES
from minilm_deploy.runtime import Predictor
from minilm_deploy.runtime.backends.openvino_runner import compile_file
from tests.test_openvino_signal_stack import signal_stack_is_usable  # skips this module too without openvino

pytest.importorskip("openvino")
pytest.importorskip("nncf")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ov-models")
    return {"bert": make_tiny_bert(root / "bert"), "cls": make_tiny_bert(root / "cls", labels=("negative", "positive"))}


def _profile(name: str, **changes):
    return replace(load_profile(name), max_length=32, **changes)


def test_fp32_ir_matches_onnx_runtime_and_is_what_the_openvino_backend_loads(models, tmp_path):
    out = tmp_path / "fp32"
    summary = build.export_model(str(models["bert"]), _profile("openvino-cpu-fp32"), output=out)
    manifest = load_manifest(out)
    verify_files(out, manifest)  # the IR is hashed like every other file
    assert {"openvino/model.xml", "openvino/model.bin", "model.onnx"} <= set(manifest.files)
    entry = manifest.backends["openvino"]  # each backend's files under one key, beside its runner
    assert list(manifest.backends) == ["openvino"] and entry["runner"] == "openvino" and entry["precision"] == "fp32"
    assert entry["files"] == ["model.onnx", "openvino/model.bin", "openvino/model.xml"]
    assert manifest.precision == "fp32" and manifest.openvino["precision"] == "fp32"
    assert manifest.openvino["model_file"] == "openvino/model.xml" and manifest.optimization["kept"] == "unfused"
    assert summary["validation"]["openvino"]["runner"] == "openvino"
    hidden = summary["validation"]["openvino"]["outputs"]["last_hidden_state"]
    if manifest.openvino["inference_precision_at_export"] == "f32":
        assert hidden["max_abs_diff"] < 1e-4
    else:  # AMX / AVX512-BF16: `auto` computes the fp32 IR in bf16, held to the bf16 gates (no absolute one)
        assert manifest.openvino["inference_precision_at_export"] == "bf16" and hidden["min_cosine"] >= 0.999
    with Predictor.load(out, threads=1) as ov, Predictor.load(out, backend="onnxruntime", threads=1) as ort:
        assert ov.info["backend"] == "openvino"  # auto: an openvino export runs its IR
        assert ov.info["model_file"] == "openvino/model.xml" and ov.info["precision"] == "fp32"
        assert ort.info["backend"] == "onnxruntime"  # model.onnx is the plain fp32 graph, for ORT and Triton
        np.testing.assert_allclose(ov.predict(list(SENTENCES)).embeddings, ort.predict(list(SENTENCES)).embeddings,
                                   atol=1e-3)
    compiled = compile_file(out / "openvino" / "model.xml", "f32", threads=1)  # what the runner and the gates run
    assert compiled.get_property("CPU_DENORMALS_OPTIMIZATION") is False  # in f32 it broke inference on an AVX2 EPYC
    assert compile_file(out / "openvino" / "model.xml", "bf16", threads=1).get_property("CPU_DENORMALS_OPTIMIZATION") is True


def test_an_fp32_ir_computed_in_bf16_is_held_to_the_bf16_gates_not_the_fp32_atol(models, tmp_path):
    from minilm_deploy.export.profile import OpenVinoOptions

    bf16 = _profile("openvino-cpu-fp32", openvino=OpenVinoOptions(inference_precision="bf16"))
    out = tmp_path / "bf16"
    summary = build_with_task(models["cls"], bf16, out)  # on a CPU without bf16 OpenVINO computes it in f32
    manifest = load_manifest(out)
    assert manifest.openvino["inference_precision_at_export"] == "bf16" and manifest.openvino["precision"] == "fp32"
    assert set(summary["validation"]["task_check"]["variants"]) == {"fp32"}
    strict = replace(bf16, validation=Validation(bf16=Tolerance(min_cosine=1.01)))  # no cosine reaches it
    with pytest.raises(ValidationFailed, match="fp32 OpenVINO \\(bf16\\) model does not match PyTorch: .*min cosine"):
        build.export_model(str(models["bert"]), strict, output=tmp_path / "strict-bf16")
    assert not (tmp_path / "strict-bf16").exists()


@pytest.mark.parametrize(("saturates", "overflow_fix"), [(True, "enable"), (False, "first_layer_only")])
def test_int8_ir_is_calibrated_on_the_task_and_task_checked(models, tmp_path, monkeypatch, saturates, overflow_fix):
    from minilm_deploy import hardware

    monkeypatch.setattr(hardware, "int8_saturates", lambda: saturates)
    out = tmp_path / "int8"
    profile = _profile("openvino-cpu-int8", validation=Validation(int8=Tolerance(min_cosine=0.9, min_agreement=0.5)))
    summary = build_with_task(models["cls"], build.decided_here(profile), out)
    manifest = load_manifest(out)
    assert manifest.openvino["precision"] == "int8" and manifest.openvino["nncf"]["model_type"] == "transformer"
    # where INT8 products saturate, NNCF's overflow fix halves every MatMul's weight range (7-bit weights)
    assert manifest.openvino["nncf"]["overflow_fix"] == overflow_fix
    assert manifest.profile["quantization"]["reduce_range"] is saturates
    assert manifest.openvino["nncf"]["calibration_batches"] >= 1
    assert set(summary["validation"]["task_check"]["variants"]) == {"fp32", "int8"}
    xml = (out / "openvino" / "model.xml").read_text()
    assert "FakeQuantize" in xml or "FakeConvert" in xml  # NNCF's quantisation nodes
    with Predictor.load(out, backend="openvino", threads=1) as ov:
        assert ov.info["precision"] == "int8"
        assert set(ov.predict(list(SENTENCES)).labels) <= {"negative", "positive"}
    assert json.loads((out / "manifest.json").read_text())["variants"]["int8"]["bytes"] > 0


def _int8_weight_matmuls(xml: Path) -> set[str]:
    """The names of an IR's MatMuls whose weight is stored in INT8 (a constant of type i8 behind its dequantisation)."""
    import openvino as ov

    def int8_source(node, depth: int = 0) -> bool:
        if node.get_type_name() == "Constant":
            return node.get_element_type() == ov.Type.i8
        return depth < 4 and any(int8_source(node.input_value(i).get_node(), depth + 1) for i in range(node.get_input_size()))

    model = ov.Core().read_model(str(xml))
    return {op.get_friendly_name() for op in model.get_ops()
            if op.get_type_name() == "MatMul" and int8_source(op.input_value(1).get_node())}


def test_int8_ir_keeps_the_profiles_float_matmul_roles_unquantised(models, tmp_path):
    from minilm_deploy.export.quantize import matmul_roles

    out = tmp_path / "ffn-out-float"
    base = _profile("openvino-cpu-int8", validation=Validation(int8=Tolerance(min_cosine=0.9, min_agreement=0.5)))
    profile = replace(base, quantization=replace(base.quantization, float_matmuls=("ffn-out",)))
    build_with_task(models["cls"], profile, out)
    manifest = load_manifest(out)
    roles = matmul_roles(out / "model.onnx")  # the fp32 graph the IR was converted from: the same node names
    ffn_out = {name for name, role in roles.items() if role == "ffn-out"}
    assert len(ffn_out) == 2  # the tiny BERT's two layers
    assert manifest.openvino["nncf"]["float_matmuls"] == {"roles": ["ffn-out"], "count": 2}
    weighted = {name for name, role in roles.items() if role != "attention-product"}  # the MatMuls with weights
    # of the encoder's weight MatMuls, all but the FFN output projections keep INT8 weights
    assert _int8_weight_matmuls(out / "openvino" / "model.xml") & weighted == weighted - ffn_out
    full = tmp_path / "full"
    build_with_task(models["cls"], replace(profile, quantization=replace(profile.quantization, float_matmuls=())), full)
    assert _int8_weight_matmuls(full / "openvino" / "model.xml") >= weighted
    assert load_manifest(full).openvino["nncf"]["float_matmuls"] == {"roles": [], "count": 0}


def test_float_matmul_roles_that_match_no_matmul_stop_the_ir_before_it_is_written(tmp_path):
    from test_export_onnx import relu_ffn_graph

    from minilm_deploy.export.backends.openvino import build_ir

    target = tmp_path / "ir" / "model.xml"
    feeds = [{"x": np.ones((1, 8), dtype=np.float32)}]
    with pytest.raises(InputError, match=r"float_matmuls \['ffn-up'\]: no MatMul of relu.onnx"):
        build_ir(relu_ffn_graph(tmp_path / "relu.onnx"), target, "int8", feeds, float_matmuls=("ffn-up",))
    assert not target.parent.exists()


def test_the_smoothquant_profile_smooths_before_quantising_and_records_it(models, tmp_path):
    out = tmp_path / "smoothquant"
    profile = _profile("openvino-cpu-int8-smoothquant",
                       validation=Validation(int8=Tolerance(min_cosine=0.9, min_agreement=0.5)))
    build_with_task(models["cls"], profile, out)
    record = load_manifest(out).openvino["nncf"]
    assert record["smooth_quant"] is True and record["float_matmuls"] == {"roles": [], "count": 0}
    assert "nncf_smooth_quant" in (out / "openvino" / "model.xml").read_text()  # NNCF's per-channel scales
    plain = tmp_path / "plain"  # openvino-cpu-int8: SmoothQuant off
    build_with_task(models["cls"], replace(profile, openvino=replace(profile.openvino, smooth_quant=False)), plain)
    assert "nncf_smooth_quant" not in (plain / "openvino" / "model.xml").read_text()


def test_an_int8_ir_that_misses_its_tolerance_is_refused_and_nothing_is_written(models, tmp_path):
    out = tmp_path / "strict"
    profile = _profile("openvino-cpu-int8", validation=Validation(int8=Tolerance(min_cosine=0.9999999)))
    with pytest.raises(ValidationFailed) as info:
        build.export_model(str(models["bert"]), profile, output=out, task=str(_task_folder(tmp_path)))
    message = str(info.value)
    assert "int8 OpenVINO" in message and "min cosine" in message and "nothing was written" in message
    assert "\n" not in message and not out.exists()


def test_int8_needs_calibration_texts_and_fp16_is_not_an_openvino_precision(models, tmp_path):
    with pytest.raises(InputError, match="calibrated on the task's training texts"):
        build.export_model(str(models["bert"]), _profile("openvino-cpu-int8"), output=tmp_path / "no-task")
    assert not (tmp_path / "no-task").exists()
    with pytest.raises(ValueError, match="backend openvino: precision fp32 or int8"):
        _profile("openvino-cpu-fp32", precision="fp16")


def _task_folder(tmp_path: Path) -> Path:
    import csv

    folder = tmp_path / "task"
    folder.mkdir()
    task = tiny_task()
    for split, examples in (("train", task.splits["train"]), ("test", task.splits["dev"])):
        with open(folder / f"{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows((ex.text, ex.label) for ex in examples)
    return folder


def test_profile_auto_builds_validates_and_times_every_candidate_and_keeps_the_fastest(models, tmp_path, monkeypatch):
    from minilm_deploy.export import auto

    real_load = auto.load_profile

    def strict_int8(name):  # make ONNX Runtime's INT8 miss its tolerance: it must be rejected, not chosen
        profile = real_load(name)
        if name == "onnx-cpu-int8":
            profile = replace(profile, validation=replace(profile.validation, int8=Tolerance(min_cosine=0.9999999)))
        return profile

    monkeypatch.setattr(auto, "load_profile", strict_int8)
    out = tmp_path / "auto"
    result = auto.export_auto(str(models["bert"]), output=out, max_length=32, rounds=1)
    record = load_manifest(out).auto
    candidates = record["candidates"]
    assert set(candidates) == set(auto.CANDIDATES)
    assert candidates["onnxruntime-int8"]["status"] == "rejected" and "min cosine" in candidates["onnxruntime-int8"]["reason"]
    for nncf_int8 in ("openvino-int8", "openvino-int8-smoothquant"):
        assert candidates[nncf_int8] == {"status": "skipped", "reason": "needs --task (calibration texts)"}
    passed = {n: c for n, c in candidates.items() if c["status"] == "passed"}
    assert {"onnxruntime-fp32", "openvino-fp32"} <= set(passed) <= {"onnxruntime-fp32", "openvino-fp32",
                                                                    "onnxruntime-int8-attention"}
    attention = candidates["onnxruntime-int8-attention"]  # passes, or is out by a gate that names its figure
    assert attention["status"] == "passed" or "min cosine" in attention["reason"] or "auto's gate" in attention["reason"]
    assert record["chosen"] == min(passed, key=lambda n: passed[n]["score_ms"])
    assert record["points"] == ["b1x32", "b32x32"] and record["cpu_class"] and "chose " in record["reason"]
    assert result["auto"]["chosen"] == record["chosen"] and not (out / ".candidates").exists()
    verify_files(out, load_manifest(out))
    with Predictor.load(out, threads=1) as predictor:  # backend auto: the one that was picked
        assert predictor.info["backend"] == auto.CANDIDATES[record["chosen"]][1]


def test_profile_auto_with_a_task_times_real_texts_and_includes_openvino_int8(models, tmp_path):
    from minilm_deploy.export import auto

    out = tmp_path / "auto-task"
    auto.export_auto(str(models["cls"]), output=out, max_length=32, rounds=1, task=str(_task_folder(tmp_path)))
    record = load_manifest(out).auto
    assert record["points"] == ["b1 real (test)", "b12 real (test)"]  # a 12-text split: batches of 1 and of 12
    assert record["candidates"]["openvino-int8"]["status"] in ("passed", "rejected")
    assert all(c["status"] != "skipped" for c in record["candidates"].values())
    assert signal_stack_is_usable()  # every candidate compiled and freed: a Ctrl-C now is no SIGSEGV


def test_an_artifact_picked_on_another_cpu_class_warns_with_the_command(models, tmp_path):
    from minilm_deploy.export import auto

    out = tmp_path / "auto"
    auto.export_auto(str(models["bert"]), output=out, max_length=32, rounds=1)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["auto"]["cpu_class"] = "some-other-class"
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match=r"picked on a some-other-class CPU .* --profile auto"):
        Predictor.load(out, threads=1).close()


def test_cli_profile_auto(models, tmp_path, capsys):
    from minilm_deploy.cli.main import main

    out = tmp_path / "cli-auto"
    assert main(["export", str(models["bert"]), "--profile", "auto", "-o", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["auto"]["chosen"] in {"onnxruntime-fp32", "onnxruntime-int8", "onnxruntime-int8-attention", "openvino-fp32"}
    assert main(["export", str(models["bert"]), "--profile", "auto", "--int8", "-o", str(tmp_path / "x")]) == 2
    assert "picks the precision itself" in capsys.readouterr().err


def test_autos_gate_reads_the_sentence_embedding_where_the_model_pools_one_else_the_token_states():
    from minilm_deploy.export.auto import worst_cosine

    def check(**cosines):
        return {"outputs": {name: {"min_cosine": c, "max_abs_diff": 0.1} for name, c in cosines.items()}}

    embedding_model = {"raw": check(last_hidden_state=1.0, sentence_embedding=1.0),
                       "int8": check(last_hidden_state=0.9859, sentence_embedding=0.9909), "task": {"agreement": 1.0}}
    assert worst_cosine(embedding_model) == 0.9909  # the student's full INT8 on AVX2: passes the 0.99 gate
    assert worst_cosine({"int8": check(last_hidden_state=0.97, sentence_embedding=0.985),
                         "raw": check(sentence_embedding=0.999)}) == 0.985  # the worst over every check
    assert worst_cosine({"int8": check(last_hidden_state=0.97)}) == 0.97  # no pooling: the token states
    assert worst_cosine({"int8": check(logits=0.5)}) is None  # a classifier: the task check decides
