"""The real all-MiniLM-L6-v2 from the zoo through `minilm export --int8` (slow: about 20 s of CPU)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from minilm_deploy.artifact import load_manifest, verify_files
from minilm_deploy.export import build
from minilm_deploy.export.profile import load_profile

# Real sentences the validation set does not contain; int8 must stay close to fp32 on them.
REAL = [
    "The soundtrack alone is worth the price of admission.",
    "I waited forty minutes and the bus never came.",
    "Quarterly revenue fell short of analyst expectations for the third time this year.",
    "Can you recommend a good vegetarian restaurant near the museum?",
    "The new vaccine showed strong protection in elderly patients.",
    "a gorgeous, witty, seductive movie.",
    "Please remember to water the plants while I'm away.",
    "The referee's decision sparked outrage among the home fans.",
]
INT8_MIN_COSINE = 0.95  # the stated tolerance: worst sentence, int8 vs fp32 PyTorch (measured ≈0.96-0.99)
INT8_MEAN_COSINE = 0.98


@pytest.mark.slow
def test_all_minilm_l6_v2_int8_round_trip(tmp_path):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from minilm_deploy.sources import resolve_model

    path = resolve_model("zoo:all-minilm-l6-v2")
    out = tmp_path / "minilm-int8"
    summary = build.export_model("zoo:all-minilm-l6-v2", load_profile("onnx-cpu-int8"), output=out)
    manifest = load_manifest(out)
    verify_files(out, manifest)
    assert manifest.max_length == 256  # sentence-transformers' limit, below the 512 positions
    assert manifest.inputs == ["input_ids", "attention_mask", "token_type_ids"]
    assert summary["validation"]["raw"]["outputs"]["sentence_embedding"]["max_abs_diff"] < 1e-4
    assert manifest.optimization["fusions"]["Attention"] == 6
    assert manifest.variants["int8"]["bytes"] < 0.7 * manifest.variants["fp32"]["bytes"]

    tok = AutoTokenizer.from_pretrained(out / "tokenizer")
    enc = tok(REAL, padding=True, truncation=True, max_length=manifest.max_length, return_tensors="np")
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (emb,) = session.run(["sentence_embedding"], {k: enc[k].astype(np.int64) for k in manifest.inputs})
    model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    with torch.no_grad():
        hidden = model(**{k: torch.from_numpy(enc[k]) for k in manifest.inputs}).last_hidden_state
    mask = torch.from_numpy(enc["attention_mask"]).unsqueeze(-1).float()
    ref = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    cos = np.sum(emb * ref, 1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() >= INT8_MIN_COSINE and cos.mean() >= INT8_MEAN_COSINE, cos
    # the embedding space keeps its neighbours: the most similar pair is the same in int8 and fp32
    sims = lambda e: (e / np.linalg.norm(e, axis=1, keepdims=True)) @ (e / np.linalg.norm(e, axis=1, keepdims=True)).T - 2 * np.eye(len(e))  # noqa: E731
    assert np.argmax(sims(emb)) == np.argmax(sims(ref))


@pytest.mark.slow
def test_all_minilm_l6_v2_openvino_int8_is_calibrated_validated_and_close_to_pytorch(tmp_path):
    """NNCF INT8 of the real model, calibrated on rotten-tomatoes' training texts (about 40 s of CPU)."""
    pytest.importorskip("nncf")
    import torch
    from transformers import AutoModel, AutoTokenizer

    from minilm_deploy.runtime import Predictor
    from minilm_deploy.sources import resolve_model

    out = tmp_path / "minilm-ov-int8"
    summary = build.export_model("zoo:all-minilm-l6-v2", load_profile("openvino-cpu-int8"), output=out,
                                 task="zoo:rotten-tomatoes")
    manifest = load_manifest(out)
    verify_files(out, manifest)
    assert manifest.openvino["precision"] == "int8" and manifest.openvino["nncf"]["smooth_quant"] is False
    assert summary["validation"]["openvino"]["outputs"]["sentence_embedding"]["min_cosine"] >= INT8_MIN_COSINE
    path = resolve_model("zoo:all-minilm-l6-v2")
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    enc = tok(REAL, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    reference = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    with Predictor.load(out, threads=1) as predictor:
        assert predictor.info["backend"] == "openvino" and predictor.info["precision"] == "int8"
        ours = predictor.predict(REAL).embeddings
    cosine = (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() >= INT8_MIN_COSINE and cosine.mean() >= INT8_MEAN_COSINE


def _trt_profile(name: str):
    from dataclasses import replace

    profile = load_profile(name)
    return replace(profile, calibration=replace(profile.calibration, samples=256))  # half the shipped sample: time


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["trt-fp16", "trt-int8"])
def test_all_minilm_l6_v2_tensorrt_graphs_pass_validation_on_the_cpu(tmp_path, profile):
    """The graphs TensorRT 11 builds strongly typed engines from, made and validated here (no GPU needed)."""
    import onnx

    from minilm_deploy.errors import MinilmError

    out = tmp_path / profile
    with pytest.raises(MinilmError, match=f"no TensorRT engine \\(profile {profile} asks for one\\): .*complete and valid"):  # no engine here; the artifact is complete
        build.export_model("zoo:all-minilm-l6-v2", _trt_profile(profile), output=out, task="zoo:rotten-tomatoes")
    manifest = load_manifest(out)
    verify_files(out, manifest)
    check = manifest.validation["tensorrt_graph"]
    worst = min(f["min_cosine"] for f in check["outputs"].values())
    assert worst >= (0.999 if profile == "trt-fp16" else 0.95), check
    ops = {n.op_type for n in onnx.load(str(out / "tensorrt" / "model.onnx")).graph.node}
    assert ({"QuantizeLinear", "DequantizeLinear"} <= ops) == (profile == "trt-int8")
    assert manifest.backends["tensorrt"]["engine"] is None and not (out / "model.plan").exists()


@pytest.mark.slow
def test_a_badly_placed_qdq_graph_of_the_real_model_is_refused_and_nothing_is_written(tmp_path, monkeypatch):
    """Q/DQ on every MatMul (attention products and FFN projections included): the worst token cosine falls to
    about 0.5, the gate refuses it with its figures, and no artifact is left."""
    from minilm_deploy.errors import ValidationFailed
    from minilm_deploy.export import quantize

    monkeypatch.setattr(quantize, "tensorrt_exclusions", lambda path: [])
    out = tmp_path / "bad"
    with pytest.raises(ValidationFailed, match=r"int8 ONNX does not match PyTorch: .*min cosine 0\.[0-8]"):
        build.export_model("zoo:all-minilm-l6-v2", _trt_profile("trt-int8"), output=out, task="zoo:rotten-tomatoes")
    assert not out.exists()
