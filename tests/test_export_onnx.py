"""Round trips of tiny random BERT / MPNet models through `minilm export`, the variants, and bad inputs."""

from __future__ import annotations

import inspect
import json
import typing
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from minilm_deploy.artifact import load_manifest, verify_files
from minilm_deploy.cli.main import main
from minilm_deploy.config import from_dict
from minilm_deploy.data.types import Example, TaskData
from minilm_deploy.errors import InputError, MinilmError, ValidationFailed
from minilm_deploy.export import build, optimize, triton
from minilm_deploy.export.profile import ExportProfile, Quantization, Tolerance, Validation, with_overrides
from minilm_deploy.export.samples import PAIRS, SENTENCES
from minilm_deploy.export.work import Work
from minilm_deploy.runtime import Predictor

WORDS = sorted({w.strip(".,!?:'%") for w in " ".join(SENTENCES + tuple(a + " " + b for a, b in PAIRS)).lower().split()} - {""})
CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?%:'-")


def make_tokenizer(cls, folder: Path, specials: list[str], **kwargs):
    """A WordPiece tokenizer over the sample sentences' words (transformers 5 takes `vocab`, 4.x a vocab file)."""
    tokens = list(dict.fromkeys([*specials, *WORDS, *CHARS, *("##" + c for c in CHARS)]))
    (folder / "vocab.txt").write_text("\n".join(tokens), encoding="utf-8")
    if "vocab" in inspect.signature(cls.__init__).parameters:
        return cls(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True, **kwargs)
    return cls(vocab_file=str(folder / "vocab.txt"), do_lower_case=True, **kwargs)


def make_tiny_bert(folder: Path, *, labels: tuple[str, ...] = (), max_positions: int = 64) -> Path:
    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(BertTokenizerFast, folder, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=max_positions)
    if labels:
        cfg.id2label = dict(enumerate(labels))
        cfg.label2id = {name: i for i, name in enumerate(labels)}
        model = BertForSequenceClassification(cfg)
    else:
        model = BertModel(cfg)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def make_tiny_mpnet(folder: Path) -> Path:
    from transformers import MPNetConfig, MPNetModel, MPNetTokenizerFast

    torch.manual_seed(1)
    folder.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(MPNetTokenizerFast, folder, ["<s>", "<pad>", "</s>", "[UNK]", "<mask>"])
    cfg = MPNetConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=66, pad_token_id=tok.pad_token_id)
    MPNetModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {"bert": make_tiny_bert(root / "bert"), "mpnet": make_tiny_mpnet(root / "mpnet"),
            "cls": make_tiny_bert(root / "cls", labels=("negative", "positive"))}


def tiny_task() -> TaskData:
    dev = tuple(Example(text, label="positive" if i % 2 else "negative") for i, text in enumerate(SENTENCES))
    train = tuple(Example(text, label="negative") for text in SENTENCES[:6]) + tuple(Example(t, label="positive") for t in SENTENCES[6:])
    return TaskData("tiny", "classification", {"train": train, "dev": dev}, label_names=("negative", "positive"))


@pytest.fixture(scope="module")
def bert_artifact(models, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("art") / "bert-fp32"
    build.export_model(str(models["bert"]), ExportProfile(), output=out)
    return out


def run_artifact(artifact: Path, texts: list[str]) -> dict[str, np.ndarray]:
    """Load an artifact the way a user would: tokenizer + manifest + onnxruntime, nothing of ours."""
    from transformers import AutoTokenizer

    manifest = json.loads((artifact / "manifest.json").read_text())
    tok = AutoTokenizer.from_pretrained(artifact / "tokenizer")
    enc = tok(texts, padding=True, truncation=True, max_length=manifest["max_length"], return_tensors="np")
    session = ort.InferenceSession(str(artifact / manifest["model_file"]), providers=["CPUExecutionProvider"])
    values = session.run(manifest["outputs"], {k: enc[k].astype(np.int64) for k in manifest["inputs"]})
    return dict(zip(manifest["outputs"], values, strict=True))


def test_bert_round_trip_matches_pytorch(bert_artifact, models):
    from transformers import AutoModel, AutoTokenizer

    manifest = load_manifest(bert_artifact)
    verify_files(bert_artifact, manifest)
    assert manifest.task == "embedding" and manifest.precision == "fp32" and manifest.max_length == 64
    assert manifest.inputs == ["input_ids", "attention_mask", "token_type_ids"]
    assert manifest.outputs == ["last_hidden_state", "sentence_embedding"]
    assert manifest.validation["raw"]["outputs"]["sentence_embedding"]["max_abs_diff"] < 1e-4
    assert {"config.json", "model.onnx", "tokenizer/tokenizer.json"} <= set(manifest.files)
    texts = ["where is the train station?", "the film is a quiet triumph that never finds its footing"]
    got = run_artifact(bert_artifact, texts)
    tok = AutoTokenizer.from_pretrained(models["bert"])
    model = AutoModel.from_pretrained(models["bert"], attn_implementation="eager").eval()
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    np.testing.assert_allclose(got["sentence_embedding"], pooled.numpy(), atol=1e-4)
    valid = enc["attention_mask"].bool().numpy()
    np.testing.assert_allclose(got["last_hidden_state"][valid], hidden.numpy()[valid], atol=1e-4)


def test_graph_has_int64_inputs_and_dynamic_axes(bert_artifact):
    graph = onnx.load(str(bert_artifact / "model.onnx")).graph
    for value in graph.input:
        assert value.type.tensor_type.elem_type == onnx.TensorProto.INT64
        dims = value.type.tensor_type.shape.dim
        assert not dims[0].HasField("dim_value") and not dims[1].HasField("dim_value")
    got = run_artifact(bert_artifact, ["ok"] * 7)  # another batch size and length than any traced
    assert got["sentence_embedding"].shape == (7, 32)


def test_fusions_are_recorded_and_real(bert_artifact):
    opt = load_manifest(bert_artifact).optimization
    assert opt["fusions"].get("Attention") == 2 and opt["fusions"].get("EmbedLayerNormalization") == 1
    assert opt["kept"] in ("fused", "unfused") and {"fused_ms", "unfused_ms"} <= set(opt)
    ops = {n.op_type for n in onnx.load(str(bert_artifact / "model.onnx")).graph.node}
    assert ("Attention" in ops) == (opt["kept"] == "fused")


def test_triton_config_parses_with_tritons_schema(bert_artifact):
    manifest = load_manifest(bert_artifact)
    folder = bert_artifact / "triton" / manifest.triton_model
    config = triton.parse_config(folder / "config.pbtxt")
    pb2 = triton.model_config_pb2()
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 32
    assert config.HasField("dynamic_batching")
    assert [(t.name, pb2.DataType.Name(t.data_type), list(t.dims)) for t in config.input] == [
        (name, "TYPE_INT64", [-1]) for name in manifest.inputs]
    assert [(t.name, list(t.dims)) for t in config.output] == [("last_hidden_state", [-1, 32]), ("sentence_embedding", [32])]
    assert (folder / "1" / "model.onnx").read_bytes() == (bert_artifact / "model.onnx").read_bytes()
    assert manifest.validation["triton"]["checked"] is True


def test_triton_check_rejects_a_broken_config(bert_artifact, tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(bert_artifact / "triton" / load_manifest(bert_artifact).triton_model, folder)
    text = (folder / "config.pbtxt").read_text()
    (folder / "config.pbtxt").write_text(text.replace("TYPE_INT64", "TYPE_INT32", 1))
    with pytest.raises(MinilmError, match="tensors"):
        triton.check_repository(folder, bert_artifact / "model.onnx")
    (folder / "config.pbtxt").write_text(text)
    inputs, outputs = triton.tensor_specs(bert_artifact / "model.onnx")
    engine_io = {s["name"]: s["data_type"] for s in inputs + outputs}  # what a built engine reports, by name
    triton.check_repository(folder, bert_artifact / "model.onnx", engine_io)
    with pytest.raises(MinilmError, match="engine's I/O"):  # a plan whose inputs are int32: the config must say so
        triton.check_repository(folder, bert_artifact / "model.onnx", engine_io | {"input_ids": "TYPE_INT32"})
    (folder / "config.pbtxt").write_text(text.replace("max_batch_size", "max_batch"))
    with pytest.raises(MinilmError, match="not a valid Triton model config"):
        triton.parse_config(folder / "config.pbtxt")


def test_mpnet_round_trip_has_no_token_type_ids(models, tmp_path):
    out = tmp_path / "mpnet"
    summary = build.export_model(str(models["mpnet"]), ExportProfile(), output=out)
    manifest = load_manifest(out)
    assert manifest.inputs == ["input_ids", "attention_mask"]
    assert manifest.max_length == 64  # 66 positions minus the padding offset of 2
    assert summary["validation"]["raw"]["outputs"]["last_hidden_state"]["max_abs_diff"] < 1e-4
    assert run_artifact(out, ["a man is playing a guitar."])["sentence_embedding"].shape == (1, 32)


def test_int8_dynamic_within_tolerance_and_smaller(models, tmp_path):
    out = tmp_path / "int8"
    build.export_model(str(models["bert"]), with_overrides(ExportProfile(), precision="int8"), output=out)
    manifest = load_manifest(out)
    assert manifest.precision == "int8"
    ops = {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "QAttention", "DynamicQuantizeLinear"}
    cos = manifest.validation["int8"]["outputs"]["sentence_embedding"]["min_cosine"]
    assert cos >= 0.95
    assert manifest.variants["int8"]["bytes"] < manifest.variants["fp32"]["bytes"]


def _int8_weight_bound(path: Path) -> int:
    """The largest |w| among the graph's INT8 weight initialisers (127: all 8 bits; 64: 7-bit weights)."""
    weights = [onnx.numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer
               if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 2]
    assert weights
    return max(int(np.abs(w.astype(np.int32)).max()) for w in weights)


@pytest.mark.parametrize(("saturates", "bound"), [(True, 64), (False, 127)])
def test_int8_takes_7_bit_weights_where_the_cpu_saturates_and_records_it(models, tmp_path, monkeypatch, saturates,
                                                                        bound):
    from minilm_deploy import hardware

    monkeypatch.setattr(hardware, "int8_saturates", lambda: saturates)
    out = tmp_path / "int8"
    profile = with_overrides(ExportProfile(), precision="int8")
    assert profile.quantization.reduce_range == "auto"
    build.export_model(str(models["bert"]), profile, output=out)
    assert load_manifest(out).profile["quantization"]["reduce_range"] is saturates  # decided, not "auto"
    assert _int8_weight_bound(out / "model.onnx") == bound
    with pytest.raises(InputError, match="reduce_range"):
        from_dict(ExportProfile, {"quantization": {"reduce_range": "sometimes"}}, source="p.yaml")


@pytest.mark.parametrize("saturates", [True, False])
def test_the_recorded_reduce_range_is_what_the_export_applied(monkeypatch, saturates):
    from minilm_deploy import hardware
    from minilm_deploy.export.profile import decided_here, load_profile

    monkeypatch.setattr(hardware, "int8_saturates", lambda: saturates)
    for name in ("onnx-cpu-int8", "onnx-cpu-int8-attention", "openvino-cpu-int8", "openvino-cpu-int8-smoothquant"):
        assert decided_here(load_profile(name)).quantization.reduce_range is saturates, name  # 7-bit where it saturates
    # TensorRT's INT8 graph is symmetric with 8-bit weights (GPUs do not saturate) beside an fp32 model.onnx
    for name in ("trt-int8", "onnx-cpu-fp32", "openvino-cpu-fp32"):
        assert decided_here(load_profile(name)).quantization.reduce_range is False, name


@pytest.mark.parametrize(("reduce_range", "saturates"), [(True, True), (False, True), (False, False)])
def test_an_8_bit_int8_artifact_warns_where_the_cpu_saturates(models, tmp_path, monkeypatch, reduce_range, saturates):
    from minilm_deploy import hardware

    out = tmp_path / "int8"
    profile = with_overrides(ExportProfile(), precision="int8")
    build.export_model(str(models["bert"]), replace(profile, quantization=replace(
        profile.quantization, reduce_range=reduce_range)), output=out)
    monkeypatch.setattr(hardware, "int8_saturates", lambda: saturates)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Predictor.load(out, threads=1) as predictor:
            predictor.predict(["a sentence"])
    said = [str(w.message) for w in caught if "saturate" in str(w.message)]
    if reduce_range or not saturates:
        assert not said
    else:
        assert len(said) == 1 and "--profile onnx-cpu-fp32 --int8" in said[0] and f"-o {out}" in said[0]


def test_fp16_keeps_layernorm_and_softmax_in_fp32(models, tmp_path):
    out = tmp_path / "fp16"
    build.export_model(str(models["bert"]), with_overrides(ExportProfile(), precision="fp16"), output=out)
    model = onnx.load(str(out / "model.onnx"))
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    kept = [n for n in model.graph.node if n.op_type in ("LayerNormalization", "Softmax")]
    assert kept and all(types.get(n.input[0], onnx.TensorProto.FLOAT) == onnx.TensorProto.FLOAT for n in kept)
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [onnx.TensorProto.FLOAT] * 2
    assert load_manifest(out).validation["fp16"]["outputs"]["sentence_embedding"]["min_cosine"] > 0.999


def test_classifier_with_task_check(models, tmp_path):
    out = tmp_path / "cls"
    profile = with_overrides(ExportProfile(), precision="int8")
    profile = replace(profile, validation=replace(profile.validation, int8=Tolerance(min_cosine=0.9, min_agreement=0.5)))
    summary = build_with_task(models["cls"], profile, out)
    manifest = load_manifest(out)
    assert manifest.task == "classification" and manifest.outputs == ["logits"]
    assert manifest.label_names == ["negative", "positive"]
    check = summary["validation"]["task_check"]
    assert check["split"] == "dev" and check["examples"] == len(SENTENCES)
    assert check["variants"]["fp32"]["agreement"] == 1.0
    assert set(check["variants"]) == {"fp32", "int8"}
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}


def build_with_task(model: Path, profile: ExportProfile, out: Path, task: TaskData | None = None) -> dict:
    """export_model with an in-memory TaskData (the zoo tasks are exercised in the slow test)."""
    from minilm_deploy.export.reference import load_reference
    from minilm_deploy.paths import atomic_directory

    source = load_reference(model, max_length=profile.max_length)
    with atomic_directory(out) as root:
        return build.build_artifact(Work(source, profile, root, out.name, task or tiny_task()), build_engine=False)


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_static_int8_with_calibration(models, tmp_path, capsys, method):
    from minilm_deploy.export.profile import Calibration

    out = tmp_path / "static"
    profile = replace(with_overrides(ExportProfile(), precision="int8"), quantization=Quantization(mode="static"),
                      calibration=Calibration(batch_size=4, method=method),
                      validation=Validation(int8=Tolerance(min_cosine=0.9, min_agreement=0.5)))
    build_with_task(models["cls"], profile, out)
    assert capsys.readouterr().out == ""  # ORT's calibration progress prints stay off stdout (--json)
    ops = {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert load_manifest(out).validation["int8"]["outputs"]["logits"]["min_cosine"] > 0.9


def test_failed_validation_carries_figures_and_writes_nothing(models, tmp_path):
    out = tmp_path / "strict"
    profile = replace(ExportProfile(), validation=Validation(fp32=Tolerance(atol=1e-12)))
    with pytest.raises(ValidationFailed) as info:
        build.export_model(str(models["bert"]), profile, output=out)
    assert "nothing was written" in str(info.value) and "\n" not in str(info.value)
    assert "last_hidden_state.max_abs_diff" in info.value.figures
    assert not out.exists() and not list(tmp_path.iterdir())


def test_trt_without_gpu_fails_after_the_onnx_artifact_is_complete(models, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the engine would be built")
    out = tmp_path / "trt"
    code = main(["export", str(models["bert"]), "--trt", "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("minilm: error: no TensorRT engine (--trt asks for one):")
    assert "complete and valid" in err[0]
    manifest = load_manifest(out)
    verify_files(out, manifest)
    assert manifest.tensorrt is None and not (out / "model.plan").exists()
    trt = manifest.backends["tensorrt"]  # the TensorRT-ready graph is there, checked; no engine
    assert trt["engine"] is None and trt["files"] == ["tensorrt/model.onnx"] and trt["precision"] == "fp16"
    assert list(manifest.backends) == ["onnxruntime", "tensorrt"] and "tensorrt/model.onnx" in manifest.files


def test_cli_json_and_profile(models, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["export", str(models["bert"]), "--profile", "onnx-cpu-int8", "--output", str(out), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["precision"] == "int8" and result["output"] == str(out)
    assert main(["export", str(models["bert"]), "--output", str(out)]) == 2  # exists, no --overwrite
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["missing", "corrupt-weights", "corrupt-config", "no-weights"])
def test_bad_model_is_one_line_and_writes_nothing(models, tmp_path, capsys, damage):
    import shutil

    folder = tmp_path / "model"
    out = tmp_path / "out"
    if damage != "missing":
        shutil.copytree(models["bert"], folder)
    if damage == "corrupt-weights":
        (folder / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    elif damage == "corrupt-config":
        (folder / "config.json").write_text("{ not json")
    elif damage == "no-weights":
        (folder / "model.safetensors").unlink()
    code = main(["export", str(folder), "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("minilm: error:")
    assert not out.exists()


def test_truncated_onnx_is_refused(bert_artifact, tmp_path):
    from minilm_deploy.export.validate import open_session

    broken = tmp_path / "model.onnx"
    data = (bert_artifact / "model.onnx").read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(MinilmError, match="truncated or invalid") as info:
        open_session(broken)
    assert "\n" not in str(info.value)
    copy = tmp_path / "art"
    import shutil

    shutil.copytree(bert_artifact, copy)
    (copy / "model.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="does not match its sha256"):
        verify_files(copy, load_manifest(copy))


def test_manifest_is_strict(bert_artifact, tmp_path):
    data = json.loads((bert_artifact / "manifest.json").read_text())
    data["surprise"] = 1
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="surprise: unknown key"):
        load_manifest(tmp_path)
    data.pop("surprise")
    data["format_version"] = 99
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="format 99"):
        load_manifest(tmp_path)


def test_exported_model_stays_in_eval_mode(models):
    from minilm_deploy.export.onnx_export import export_onnx
    from minilm_deploy.export.reference import load_reference

    source = load_reference(models["bert"])
    # the legacy exporter restores the *wrapper's* mode recursively afterwards; a wrapper left in
    # training mode would switch the model's dropout on for the PyTorch references that follow
    export_onnx(source, Path(models["bert"]).parent / "eval-check.onnx", opset=17, exporter="legacy")
    assert not any(m.training for m in source.model.modules())


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_the_tensorrt_graph_carries_its_precision_and_is_validated_on_the_cpu(models, tmp_path, precision):
    """TensorRT 11 is strongly typed: the precision is in the graph, made and checked here before any engine."""
    from minilm_deploy.export.profile import Calibration, TensorRTOptions

    out = tmp_path / precision
    profile = replace(ExportProfile(), tensorrt=TensorRTOptions(precision=precision), optimize="never",
                      calibration=Calibration(batch_size=4, method="minmax"),
                      validation=Validation(int8=Tolerance(min_cosine=0.9, min_agreement=0.5),
                                            fp16=Tolerance(min_cosine=0.99, min_agreement=0.9)))
    summary = build_with_task(models["cls"], profile, out)
    graph = onnx.load(str(out / "tensorrt" / "model.onnx"))
    ops = {n.op_type for n in graph.graph.node}
    assert not ops & set(optimize.FUSED_OPS) - {"LayerNormalization"}  # standard ops: what TensorRT parses
    if precision == "int8":
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        zero_points = [onnx.numpy_helper.to_array(t) for t in graph.graph.initializer if t.name.endswith("zero_point")]
        assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)  # symmetric, signed
        from minilm_deploy.export.quantize import tensorrt_exclusions

        left_float = set(tensorrt_exclusions(out / "model.onnx"))  # optimize: never: the fp32 graph it came from
        assert len(left_float) == 4 * 2  # per layer (2): the two attention products and both FFN projections
        dq_outputs = {o for n in graph.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        for node in graph.graph.node:
            if node.op_type == "MatMul":
                assert any(i in dq_outputs for i in node.input) == (node.name not in left_float), node.name
    else:
        halves = [t for t in graph.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
        assert halves and "Softmax" in ops
    assert summary["validation"]["tensorrt_graph"]["precision"] == precision
    assert set(summary["validation"]["task_check"]["variants"]) == {"fp32", f"tensorrt-{precision}"}
    assert verify_files(out, load_manifest(out)) is None and not (out / "model.plan").exists()


def test_a_tensorrt_graph_that_misses_its_tolerance_is_refused_and_nothing_is_written(models, tmp_path):
    from minilm_deploy.export.profile import Calibration, TensorRTOptions

    out = tmp_path / "strict"
    profile = replace(ExportProfile(), tensorrt=TensorRTOptions(precision="int8"), calibration=Calibration(batch_size=4),
                      validation=Validation(int8=Tolerance(atol=1e-9)))
    with pytest.raises(ValidationFailed, match="int8 ONNX does not match PyTorch: logits max abs diff"):
        build_with_task(models["cls"], profile, out)
    assert not out.exists()


def test_dynamo_exporter_validates_but_attention_is_not_fused(models, tmp_path, capsys):
    out = tmp_path / "dynamo"
    summary = build.export_model(str(models["bert"]), replace(ExportProfile(), exporter="dynamo"), output=out)
    assert capsys.readouterr().out == ""  # the dynamo exporter's progress lines do not reach stdout (--json)
    assert summary["validation"]["raw"]["outputs"]["sentence_embedding"]["max_abs_diff"] < 1e-4
    assert "Attention" not in summary["optimization"]["fusions"]  # why `legacy` is the default
    assert load_manifest(out).opset == 18  # the dynamo exporter needs opset 18 or later; the manifest says what it got


def test_cli_task_check_through_load_task(models, tmp_path, capsys):
    import csv

    task_dir = tmp_path / "task"
    task_dir.mkdir()
    for split, examples in tiny_task().splits.items():
        with open(task_dir / f"{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows([ex.text, ex.label] for ex in examples)
    out = tmp_path / "art"
    assert main(["export", str(models["cls"]), "--task", str(task_dir), "--output", str(out), "--json"]) == 0
    check = json.loads(capsys.readouterr().out)["validation"]["task_check"]
    assert check["split"] == "dev" and check["examples"] == len(SENTENCES)
    assert check["variants"]["fp32"]["agreement"] == 1.0
    assert check["variants"]["fp32"]["accuracy"] == check["accuracy_torch"]
    assert load_manifest(out).validation["task_check"] == check


def test_task_check_gates_carry_the_figures(models, tmp_path):
    from minilm_deploy.export.onnx_export import export_onnx
    from minilm_deploy.export.reference import load_reference
    from minilm_deploy.export.taskcheck import task_check

    source = load_reference(models["cls"])
    path = export_onnx(source, tmp_path / "m.onnx", opset=17, exporter="legacy")
    ok = task_check(source, tiny_task(), {"fp32": path}, {"fp32": Tolerance(min_agreement=1.0, max_accuracy_drop=0.0)})
    assert ok["variants"]["fp32"] == {"agreement": 1.0, "accuracy": ok["accuracy_torch"]}
    with pytest.raises(ValidationFailed, match="accuracy .* below PyTorch's on tiny/dev") as info:
        task_check(source, tiny_task(), {"fp32": path}, {"fp32": Tolerance(max_accuracy_drop=-0.01)})
    assert info.value.figures["fp32.agreement"] == 1.0


def test_every_export_backend_is_one_module_with_the_interface_and_names_a_runtime_runner():
    from minilm_deploy.export.backends import EXPORT_BACKENDS, MAIN_BACKENDS, export_backend
    from minilm_deploy.export.profile import ExportProfile as Profile
    from minilm_deploy.runtime.backends import BACKENDS

    assert set(MAIN_BACKENDS) <= set(EXPORT_BACKENDS)
    assert typing.get_args(typing.get_type_hints(Profile)["backend"]) == MAIN_BACKENDS  # what `backend:` accepts
    for name in EXPORT_BACKENDS:
        module = export_backend(name)
        assert module.RUNNER in BACKENDS  # the runtime backend that loads its files
        assert all(callable(getattr(module, f)) for f in ("missing", "build", "publish"))
        assert isinstance(module.FUSES_WITH_ORT, bool)
    assert export_backend("onnxruntime").missing() is None
    with pytest.raises(InputError, match="export backend 'nope' is unknown"):
        export_backend("nope")


def test_manifest_lists_the_onnxruntime_backend_files(bert_artifact):
    manifest = load_manifest(bert_artifact)
    assert manifest.backends == {"onnxruntime": {"runner": "onnxruntime", "precision": "fp32", "files": ["model.onnx"]}}
    assert all(f in manifest.files for entry in manifest.backends.values() for f in entry["files"])


def test_the_exported_tokenizer_truncates_where_the_artifact_does(models, tmp_path):
    """Issue 18, root cause 6: plain transformers / onnxruntime users get the artifact's length, not the source's."""
    from transformers import AutoTokenizer

    out = tmp_path / "short"
    build.export_model(str(models["bert"]), replace(ExportProfile(), max_length=32), output=out)
    assert AutoTokenizer.from_pretrained(str(models["bert"])).model_max_length != 32  # the source says otherwise
    tokenizer = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    assert load_manifest(out).max_length == tokenizer.model_max_length == 32
    assert len(tokenizer("word " * 100, truncation=True)["input_ids"]) == 32


def test_matmul_roles_are_read_from_the_graph_and_float_matmuls_stay_float(models, tmp_path):
    from minilm_deploy.export.quantize import matmul_roles

    out = tmp_path / "attention-int8"
    profile = replace(ExportProfile(), precision="int8", optimize="never",
                      quantization=Quantization(float_matmuls=("ffn-up", "ffn-out")))
    build.export_model(str(models["bert"]), profile, output=out)
    roles = matmul_roles(out / "model.onnx")  # the int8 graph: the MatMuls left are the float ones
    layers = 2
    assert sorted(roles.values()).count("ffn-up") == layers and sorted(roles.values()).count("ffn-out") == layers
    assert "projection" not in roles.values()  # every Q/K/V and attention-output MatMul became MatMulInteger
    ops = [n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node]
    assert ops.count("MatMulInteger") == 4 * layers
    with pytest.raises(ValueError, match="float_matmuls"):
        Quantization(float_matmuls=("ffn",))


def relu_ffn_graph(path: Path) -> Path:
    """A two-MatMul ReLU feed-forward graph: no GELU, so no MatMul has an FFN role (both are projections)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), name) for name in ("w1", "w2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="up"), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="out")]
    graph = helper.make_graph(nodes, "relu-ffn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_float_matmul_roles_that_match_no_matmul_are_refused_and_nothing_is_written(tmp_path):
    from minilm_deploy.export.quantize import matmul_roles, nodes_with_roles, quantize_dynamic

    graph = relu_ffn_graph(tmp_path / "relu.onnx")
    assert matmul_roles(graph) == {"up": "projection", "out": "projection"}
    assert nodes_with_roles(graph, ("projection",)) == ["up", "out"] and nodes_with_roles(graph, ()) == []
    with pytest.raises(InputError, match=r"float_matmuls \['ffn-out'\]: no MatMul of relu.onnx has these roles") as info:
        quantize_dynamic(graph, tmp_path / "int8.onnx", Quantization(float_matmuls=("ffn-out",)))
    assert "\n" not in str(info.value) and not (tmp_path / "int8.onnx").exists()


def test_named_float_nodes_stay_float_next_to_the_float_roles(models, tmp_path):
    from minilm_deploy.export.quantize import matmul_roles, quantize_dynamic

    fp32 = tmp_path / "fp32"
    build.export_model(str(models["bert"]), replace(ExportProfile(), optimize="never"), output=fp32)
    roles = matmul_roles(fp32 / "model.onnx")
    query = next(n for n, role in roles.items() if role == "projection")
    int8 = quantize_dynamic(fp32 / "model.onnx", tmp_path / "int8.onnx", Quantization(float_matmuls=("ffn-out",)),
                            float_nodes=[query])
    left = matmul_roles(int8)  # the MatMuls still float
    assert query in left and sorted(left.values()).count("ffn-out") == 2 and "ffn-up" not in left.values()
    assert sum(role == "projection" for role in left.values()) == 1
