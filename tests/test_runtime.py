"""Runtime: one Predictor over torch and ONNX Runtime agrees; artifacts are read per the contract.

Artifacts come from the real exporter (`make_artifact`: `minilm_deploy.export.build.export_model` of a
tiny random BERT); `make_contract_artifact` lays one out by hand, exactly as the export contract
says, to check the runtime reads the contract and not the exporter's extras.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from minilm_deploy.errors import InputError, MinilmError
from minilm_deploy.export.build import export_model
from minilm_deploy.export.profile import ExportProfile, load_profile
from minilm_deploy.hardware import cpu_has_fast_bf16
from minilm_deploy.runtime import Predictor, inspect_model
from minilm_deploy.runtime.backends import BACKENDS, runner_class
from minilm_deploy.runtime.backends.ort_runner import check_providers, session_options
from minilm_deploy.runtime.backends.trt_runner import engine_mismatch

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
TEXTS = ["the movie is good", "a bad plot and a very bad story", "hello", "i love this film, it is great fun"]


ROOT = Path(__file__).resolve().parents[1]


def make_artifact(model_dir: Path, out: Path, max_length: int = 32, int8: bool = False) -> Path:
    """`minilm export` of `model_dir` into `out` (the fp32 default profile, or exporters/onnx-cpu-int8.yaml)."""
    from dataclasses import replace

    profile = load_profile(ROOT / "exporters" / "onnx-cpu-int8.yaml") if int8 else ExportProfile()
    export_model(model_dir, replace(profile, max_length=max_length), output=out)
    return out


def make_contract_artifact(model_dir: Path, out: Path, max_length: int = 32, int8: bool = False) -> Path:
    """An export artifact of the Hugging Face folder `model_dir`, laid out by hand as the export contract says."""
    import torch
    import transformers

    config = json.loads((model_dir / "config.json").read_text())
    is_task = any(a.endswith("ForSequenceClassification") for a in config.get("architectures", []))
    auto = transformers.AutoModelForSequenceClassification if is_task else transformers.AutoModel
    model = auto.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    outputs = ["logits"] if is_task else ["last_hidden_state", "sentence_embedding"]

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):  # (B, T) each
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            if is_task:
                return out.logits
            m = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)  # (B, T, 1)
            return out.last_hidden_state, (out.last_hidden_state * m).sum(1) / m.sum(1).clamp(min=1e-9)

    out.mkdir(parents=True)
    ids = torch.ones(2, 8, dtype=torch.long)
    axes = {k: {0: "batch", 1: "sequence"} for k in INPUTS} | {"last_hidden_state": {0: "batch", 1: "sequence"}}
    axes |= {"logits": {0: "batch"}, "sentence_embedding": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Wrapped(), (ids, ids, torch.zeros_like(ids)), str(out / "model.onnx"), input_names=INPUTS,
                          output_names=outputs, dynamic_axes={k: v for k, v in axes.items() if k in INPUTS + outputs},
                          opset_version=17, dynamo=False)
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        fp32 = out / "model.fp32.onnx"
        (out / "model.onnx").rename(fp32)
        quantize_dynamic(str(fp32), str(out / "model.onnx"), weight_type=QuantType.QInt8, per_channel=True)
        fp32.unlink()
    tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    tok.save_pretrained(str(out / "tokenizer"))
    shutil.copy(model_dir / "config.json", out / "config.json")
    labels = [config["id2label"][k] for k in sorted(config.get("id2label", {}), key=int)] if is_task else []
    task = ("regression" if len(labels) == 1 else "classification") if is_task else "embedding"
    name = model_dir.name
    (out / "triton" / name / "1").mkdir(parents=True)
    shutil.copy(out / "model.onnx", out / "triton" / name / "1" / "model.onnx")
    (out / "triton" / name / "config.pbtxt").write_text(f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 64\n')
    files = {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*")) if p.is_file()}
    manifest = {
        "format_version": 1, "task": task, "model_file": "model.onnx", "inputs": INPUTS, "outputs": outputs,
        "label_names": labels if task == "classification" else [], "max_length": max_length,
        "precision": "int8" if int8 else "fp32", "opset": 17,
        "source": {"path": str(model_dir), "sha256": hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()},
        "files": files, "validation": {}, "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "tensorrt": None,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> tuple[Path, Path]:
    from conftest import make_tiny_bert

    root = tmp_path_factory.mktemp("rt-cls")
    hf = make_tiny_bert(root / "tiny-cls", architecture="BertForSequenceClassification", num_labels=3,
                        id2label={0: "neg", 1: "neu", 2: "pos"}, label2id={"neg": 0, "neu": 1, "pos": 2})
    return hf, make_artifact(hf, root / "artifact")


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> tuple[Path, Path]:
    from conftest import make_tiny_bert

    root = tmp_path_factory.mktemp("rt-enc")
    hf = make_tiny_bert(root / "tiny-enc")
    return hf, make_artifact(hf, root / "artifact", max_length=16)


def test_torch_and_onnxruntime_agree_on_a_classifier(classifier):
    hf, artifact = classifier
    with Predictor.load(hf, backend="torch", threads=1) as ref, Predictor.load(artifact, threads=1) as ort:
        assert ort.info["backend"] == "onnxruntime" and ort.info["providers"] == ["CPUExecutionProvider"]
        a, b = ref.predict(TEXTS), ort.predict(TEXTS)
        assert a.labels == b.labels and set(a.labels) <= {"neg", "neu", "pos"}
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
        np.testing.assert_allclose(b.scores.sum(axis=1), 1.0, atol=1e-6)
        one = ort.predict(TEXTS[1:2])  # padding must not change an answer
        np.testing.assert_allclose(one.scores[0], b.scores[1], atol=1e-5)


def test_torch_backend_of_an_artifact_runs_its_source_checkpoint(classifier):
    hf, artifact = classifier
    with Predictor.load(artifact, backend="torch") as p, Predictor.load(artifact) as q:
        assert p.info["backend"] == "torch"
        np.testing.assert_allclose(p.predict(TEXTS).scores, q.predict(TEXTS).scores, atol=1e-5)


def test_text_pairs_and_records(classifier):
    hf, artifact = classifier
    with Predictor.load(hf) as ref, Predictor.load(artifact) as ort:
        pairs = [("what is it", "a movie"), ("who is she", "my story")]
        a = ref.predict(pairs)
        b = ort.predict([p[0] for p in pairs], text_pairs=[p[1] for p in pairs])
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
        # a pair is not the same input as its first text alone
        assert not np.allclose(ort.predict([p[0] for p in pairs]).scores, b.scores, atol=1e-6)
        rec = b.to_records(ort.label_names)
        assert set(rec[0]) == {"label", "score", "scores"} and set(rec[0]["scores"]) == {"neg", "neu", "pos"}


def test_embeddings_agree_and_truncate_at_max_length(encoder):
    hf, artifact = encoder
    long = " ".join(["word"] * 200)
    with Predictor.load(hf, backend="torch", max_length=16) as ref, Predictor.load(artifact) as ort:
        assert ort.task == "embedding" and ort.max_length == 16
        feeds = ort.tokenize([long, "hello"])
        assert feeds["input_ids"].shape == (2, 16) and feeds["input_ids"].dtype == np.int64
        assert ort.tokenize(["hello", "hi"])["input_ids"].shape[1] < 16  # dynamic padding
        a, b = ref.predict([long, *TEXTS]), ort.predict([long, *TEXTS])
        assert b.embeddings.shape == (5, 32)
        np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-5)
        assert "embedding" in b.to_records()[0]


def test_length_sorted_chunks_give_the_same_answers_in_order(classifier, encoder):
    texts = [TEXTS[i % 4] + " very" * (i % 7) for i in range(11)]
    with Predictor.load(classifier[1]) as p:
        whole, chunked = p.predict(texts), p.predict(texts, chunk_size=3)
        assert chunked.labels == whole.labels
        np.testing.assert_allclose(chunked.scores, whole.scores, atol=1e-5)
        pairs = p.predict(texts, text_pairs=texts[::-1], chunk_size=4)
        np.testing.assert_allclose(pairs.scores, p.predict(texts, text_pairs=texts[::-1]).scores, atol=1e-5)
    with Predictor.load(encoder[1]) as p:
        np.testing.assert_allclose(p.predict(texts, chunk_size=2).embeddings, p.predict(texts).embeddings, atol=1e-5)


def test_int8_artifact_is_close_to_fp32(tmp_path, classifier):
    hf, _ = classifier
    q = make_artifact(hf, tmp_path / "int8", int8=True)
    with Predictor.load(hf) as ref, Predictor.load(q) as p:
        assert p.info["precision"] == "int8"
        np.testing.assert_allclose(ref.predict(TEXTS).scores, p.predict(TEXTS).scores, atol=0.05)


def test_synthetic_feeds_have_the_exact_shape(encoder):
    _, artifact = encoder
    with Predictor.load(artifact) as p:
        feeds = p.synthetic_feeds(3, 12)
        assert list(feeds) == INPUTS and all(v.shape == (3, 12) for v in feeds.values())
        assert p.infer(feeds)["sentence_embedding"].shape == (3, 32)
        with pytest.raises(InputError, match="max_length"):
            p.synthetic_feeds(1, 17)


def test_ort_session_options_turn_spinning_off():
    so = session_options(threads=2)
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert so.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert so.intra_op_num_threads == 2


def test_a_cpu_fallback_is_refused_when_cuda_was_asked_for(classifier):
    with pytest.raises(MinilmError, match="got only CPUExecutionProvider"):
        check_providers("cuda", ["CPUExecutionProvider"])
    check_providers("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    check_providers("cpu", ["CPUExecutionProvider"])
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(MinilmError, match="cuda"):
            Predictor.load(classifier[1], backend="onnxruntime", device="cuda")


def test_an_engine_from_another_gpu_or_version_is_refused():
    built = {"version": "10.3.0", "gpu_name": "NVIDIA A100-SXM4-40GB", "compute_capability": [8, 0], "profiles": []}
    assert engine_mismatch(built, {"version": "10.3.0", "gpu_name": "NVIDIA A100-SXM4-40GB", "compute_capability": "8.0"}) is None
    why = engine_mismatch(built, {"version": "10.7.0", "gpu_name": "NVIDIA A100-SXM4-40GB", "compute_capability": "8.0"})
    assert "TensorRT 10.3.0, this machine has 10.7.0" in why
    why = engine_mismatch(built, {"version": "10.3.0", "gpu_name": "NVIDIA H100", "compute_capability": "9.0"})
    assert "(sm 8.0), this machine has NVIDIA H100 (sm 9.0)" in why
    assert "does not say" in engine_mismatch(None, {})


def test_tensorrt_needs_an_engine_and_a_gpu(classifier):
    _, artifact = classifier
    with pytest.raises(InputError, match="no model.plan"):
        Predictor.load(artifact, backend="tensorrt", device="cuda")
    assert runner_class("tensorrt").unsupported(inspect_model(artifact), "cpu")


def test_bad_inputs_are_one_line_errors(tmp_path, classifier):
    hf, artifact = classifier
    with pytest.raises(InputError, match="unknown"):
        Predictor.load(artifact, backend="tflite")
    with pytest.raises(InputError, match="device"):
        Predictor.load(artifact, device="tpu")
    with pytest.raises(InputError, match="no such folder"):
        Predictor.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="neither manifest.json"):
        Predictor.load(tmp_path / "empty")
    with Predictor.load(artifact) as p:
        with pytest.raises(InputError, match="at least one"):
            p.predict([])
        with pytest.raises(InputError, match="one pair per text"):
            p.predict(["a", "b"], text_pairs=["c"])
        with pytest.raises(InputError, match="strings"):
            p.predict([1, 2])


def test_a_hand_made_artifact_that_follows_the_contract_runs(tmp_path, classifier):
    hf, exported = classifier
    art = make_contract_artifact(hf, tmp_path / "by-hand", int8=True)
    with Predictor.load(art) as p, Predictor.load(exported) as q:
        assert p.info["precision"] == "int8" and p.label_names == ("neg", "neu", "pos")
        np.testing.assert_allclose(p.predict(TEXTS).scores, q.predict(TEXTS).scores, atol=0.05)


def test_an_edited_model_file_is_refused(tmp_path, classifier):
    _, exported = classifier
    copy = tmp_path / "edited"
    shutil.copytree(exported, copy)
    with open(copy / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(InputError, match="sha256"):
        Predictor.load(copy)


def test_openvino_runs_the_artifacts_onnx_like_onnxruntime(classifier, encoder):
    pytest.importorskip("openvino")  # the openvino extra; `make test` installs it
    for _, artifact in (classifier, encoder):
        with Predictor.load(artifact, threads=1) as ort, Predictor.load(artifact, backend="openvino", threads=1) as ov:
            assert ov.info["backend"] == "openvino" and ov.info["threads"] == 1
            assert ov.info["inference_precision"] == ("bf16" if cpu_has_fast_bf16() else "f32")
            a, b = ort.predict(TEXTS), ov.predict(TEXTS)
            if ort.task == "classification":
                assert a.labels == b.labels
                np.testing.assert_allclose(a.scores, b.scores, atol=1e-2 if cpu_has_fast_bf16() else 1e-4)
            else:
                cosine = (a.embeddings * b.embeddings).sum(1) / np.linalg.norm(a.embeddings, axis=1) / np.linalg.norm(b.embeddings, axis=1)
                assert cosine.min() > 0.999
    hf, _ = classifier
    with pytest.raises(InputError, match="no ONNX model here"):
        Predictor.load(hf, backend="openvino")
    with pytest.raises(InputError, match="runs on the CPU"):
        Predictor.load(classifier[1], backend="openvino", device="cuda")


def test_openvino_refuses_onnx_runtimes_fused_ops_in_one_line(tmp_path, classifier):
    pytest.importorskip("openvino")
    hf, _ = classifier
    int8 = make_artifact(hf, tmp_path / "int8", int8=True)  # ORT-fused INT8: com.microsoft.QAttention
    with Predictor.load(int8, threads=1) as ort:
        assert ort.predict(TEXTS).labels
    with pytest.raises(InputError, match=r"OpenVINO cannot read com\.microsoft\.QAttention") as caught:
        Predictor.load(int8, backend="openvino", threads=1)
    assert "\n" not in str(caught.value) and "--backend onnxruntime" in str(caught.value)


def test_torch_and_onnx_rows_truncate_a_long_text_at_the_same_length(tmp_path):
    """One source for the length limit: the export's default max_length and the torch runtime's agree
    (sentence-transformers' max_seq_length, here 24, below the 64 positions)."""
    from conftest import WORDS, make_tiny_bert

    from minilm_deploy.models.adapters import sequence_limit

    hf = make_tiny_bert(tmp_path / "st")
    (hf / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 24, "do_lower_case": False}))
    assert sequence_limit(hf, json.loads((hf / "config.json").read_text())) == 24
    artifact = make_artifact(hf, tmp_path / "artifact", max_length=0)  # 0: the model's own limit
    long_text = " ".join(WORDS[i % len(WORDS)] for i in range(400))
    with Predictor.load(hf, backend="torch", threads=1) as torch_row, Predictor.load(artifact, threads=1) as onnx_row:
        assert torch_row.max_length == onnx_row.max_length == 24
        a, b = torch_row.tokenize([long_text]), onnx_row.tokenize([long_text])
        assert a["input_ids"].shape == b["input_ids"].shape == (1, 24)
        np.testing.assert_array_equal(a["input_ids"], b["input_ids"])
        np.testing.assert_allclose(torch_row.predict([long_text]).embeddings, onnx_row.predict([long_text]).embeddings,
                                   atol=1e-4)


def test_position_offsets_live_in_the_adapter_table():
    from minilm_deploy.models.adapters import position_offset

    assert position_offset("bert") == 0 and position_offset("xlm-roberta") == 2 and position_offset("mpnet") == 2
    assert position_offset("not-a-model") == 0


def test_the_registry_is_the_only_list_of_backends():
    assert set(BACKENDS) == {"torch", "torch-bf16", "onnxruntime", "openvino", "tensorrt"}
    for name in BACKENDS:
        assert runner_class(name).name == name


def test_an_export_laid_out_as_optimum_and_optimum_intel_write_it_runs(tmp_path, encoder):
    """A Hugging Face folder with `model.onnx` (optimum's layout) runs on ONNX Runtime, with
    `openvino_model.xml` (optimum-intel's) on OpenVINO: `minilm bench` times such peer exports beside ours."""
    import shutil

    hf, artifact = encoder
    peer = tmp_path / "optimum-layout"
    shutil.copytree(hf, peer)
    shutil.copyfile(artifact / "model.onnx", peer / "model.onnx")
    with Predictor.load(hf, backend="torch", max_length=16) as ref, Predictor.load(peer, max_length=16) as ort:
        assert ort.info["backend"] == "onnxruntime"  # auto: the ONNX model before the PyTorch weights
        np.testing.assert_allclose(ref.predict(TEXTS).embeddings, ort.predict(TEXTS).embeddings, atol=1e-5)
        feeds = ort.synthetic_feeds(2, 8)  # the latency grid's input carries every input the graph takes
        assert {i.name for i in ort.runner.session.get_inputs()} <= set(feeds) and ort.infer(feeds)
    ov = pytest.importorskip("openvino")
    ov.save_model(ov.convert_model(str(artifact / "model.onnx")), str(peer / "openvino_model.xml"))
    (peer / "model.onnx").unlink()
    with Predictor.load(hf, backend="torch", max_length=16) as ref, Predictor.load(peer, backend="openvino") as vino:
        a, b = ref.predict(TEXTS).embeddings, vino.predict(TEXTS).embeddings
        assert vino.info["model_file"] == "openvino_model.xml"
        assert ((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min() > 0.999


def test_torch_bf16_autocast_is_a_backend_close_to_fp32(classifier, encoder):
    """`--backends torch,torch-bf16`: the PyTorch bf16 rows of the CPU-paths benchmark (float32 outputs)."""
    for hf, _ in (classifier, encoder):
        with Predictor.load(hf, backend="torch") as fp32, Predictor.load(hf, backend="torch-bf16") as bf16:
            assert bf16.info["precision"] == "bf16 autocast" and fp32.info["precision"] == "fp32"
            feeds = fp32.tokenize(TEXTS)
            a, b = fp32.runner.infer(feeds), bf16.runner.infer(feeds)
            assert all(v.dtype == np.float32 for v in b.values()) and a.keys() == b.keys()
            for name in a:
                x, y = a[name].reshape(len(TEXTS), -1), b[name].reshape(len(TEXTS), -1)
                assert ((x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)).min() > 0.99
                assert not np.array_equal(x, y)  # bf16 really ran


def test_the_cli_help_names_every_backend():
    """The help strings are written out (the registry's package is too heavy to import at CLI start): kept
    true to the registry here."""
    for command in ("bench", "serve"):
        text = (ROOT / "minilm_deploy" / "cli" / f"{command}.py").read_text()
        line = next(line for line in text.splitlines() if "backend:" in line and "auto, torch" in line)
        assert all(name in line for name in BACKENDS), (command, line)
