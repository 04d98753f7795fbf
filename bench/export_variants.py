"""Fused vs unfused graphs and fp32 vs int8 variants of all-MiniLM-L6-v2, measured on this CPU.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.export_variants --out bench/results/export_variants.json

1. Encoder (zoo:all-minilm-l6-v2): export (legacy, eager attention), fuse with ONNX Runtime's
   transformer optimizer, dynamic INT8 per channel from each; latency (interleaved medians,
   1 intra-op thread) at batch 1 and 32 × sequence 128; sentence-embedding cosine of each graph
   vs PyTorch on rotten-tomatoes dev sentences; file sizes.
2. Classifier: the same encoder with a logistic-regression head fitted on frozen pooled features
   of 2,000 rotten-tomatoes training sentences (a quick stand-in for a fine-tuned task model);
   accuracy of PyTorch and of each graph on the dev split, and agreement with PyTorch.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench import harness
from minilm_deploy.artifact import library_versions
from minilm_deploy.export import optimize, quantize
from minilm_deploy.export.onnx_export import export_onnx
from minilm_deploy.export.profile import Quantization
from minilm_deploy.export.reference import load_reference
from minilm_deploy.export.taskcheck import predictions
from minilm_deploy.export.validate import onnx_outputs, open_session, torch_outputs
from minilm_deploy.sources import load_task, resolve_model


def graphs(source, folder: Path) -> dict[str, Path]:
    raw = export_onnx(source, folder / "raw.onnx", opset=17, exporter="legacy")
    fused = folder / "fused.onnx"
    optimize.fuse(source, raw, fused)
    out = {"fp32-unfused": raw, "fp32-fused": fused}
    for name in ("unfused", "fused"):
        out[f"int8-{name}"] = quantize.quantize_dynamic(out[f"fp32-{name}"], folder / f"int8-{name}.onnx", Quantization())
    return out


def cosines(source, paths: dict[str, Path], texts: list[str]) -> dict[str, dict[str, float]]:
    result: dict[str, list[np.ndarray]] = {name: [] for name in paths}
    sessions = {name: open_session(p, 1) for name, p in paths.items()}
    for start in range(0, len(texts), 32):
        enc = source.tokenizer(texts[start : start + 32], padding=True, truncation=True, max_length=source.max_length, return_tensors="np")
        feeds = {k: enc[k].astype(np.int64) for k in source.inputs}
        ref = torch_outputs(source, feeds)["sentence_embedding"]
        for name, session in sessions.items():
            got = onnx_outputs(session, feeds, ["sentence_embedding"])["sentence_embedding"]
            result[name].append(np.sum(got * ref, 1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1)))
    return {name: {"min": float(np.concatenate(c).min()), "mean": float(np.concatenate(c).mean())} for name, c in result.items()}


def latency_grid(source, paths: dict[str, Path]) -> dict[str, dict[str, float]]:
    grid = {}
    for batch, rounds in ((1, 30), (32, 5)):
        feeds = optimize.timing_feeds(source, batch, 128)
        grid[f"b{batch}-s128"] = optimize.latencies_ms(paths, feeds, rounds=rounds, warmup=2, threads=1)
    return grid


def make_classifier(model_path: Path, task, folder: Path, n_train: int = 2000) -> Path:
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    labels = list(task.label_names)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
        attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(model_path)
    rng = np.random.default_rng(0)
    train = [task.splits["train"][i] for i in rng.choice(len(task.splits["train"]), n_train, replace=False)]
    feats = []
    with torch.no_grad():
        for start in range(0, n_train, 64):
            enc = tok([ex.text for ex in train[start : start + 64]], padding=True, truncation=True, max_length=128, return_tensors="pt")
            feats.append(model.bert(**enc).pooler_output.numpy())  # what the classification head reads
    clf = LogisticRegression(max_iter=2000, C=1.0).fit(np.concatenate(feats), [labels.index(ex.label) for ex in train])
    with torch.no_grad():
        if len(labels) == 2:
            w = np.stack([-clf.coef_[0] / 2, clf.coef_[0] / 2])
            b = np.array([-clf.intercept_[0] / 2, clf.intercept_[0] / 2])
        else:
            w, b = clf.coef_, clf.intercept_
        model.classifier.weight.copy_(torch.from_numpy(w).float())
        model.classifier.bias.copy_(torch.from_numpy(b).float())
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("bench/results/export_variants.json"))
    parser.add_argument("--dev", type=int, default=1022, help="dev examples for the accuracy check (all: 1022)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    model_path = resolve_model("zoo:all-minilm-l6-v2")
    task = load_task("zoo:rotten-tomatoes")
    dev = task.splits["dev"][: args.dev]
    result: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": 1,
                                "note": "2 shared cores, other jobs running: latencies are medians of interleaved runs"},
                    "versions": library_versions()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "enc").mkdir()
        source = load_reference(model_path)
        paths = graphs(source, tmp / "enc")
        result["encoder"] = {
            "sizes_bytes": {n: p.stat().st_size for n, p in paths.items()},
            "fusions": optimize.fused_ops(paths["fp32-fused"]),
            "cosine_vs_pytorch": cosines(source, paths, [ex.text for ex in dev[:512]]),
            "latency_ms": latency_grid(source, paths),
        }
        cls_source = load_reference(make_classifier(model_path, task, tmp / "cls"))
        (tmp / "clsg").mkdir()
        cls_paths = graphs(cls_source, tmp / "clsg")
        preds = predictions(cls_source, dev, cls_paths)
        labels = np.array([list(task.label_names).index(ex.label) for ex in dev])
        result["classifier"] = {
            "task": "rotten-tomatoes", "split": "dev", "examples": len(dev),
            "accuracy": {n: float(np.mean(p == labels)) for n, p in preds.items()},
            "agreement_with_pytorch": {n: float(np.mean(p == preds["torch"])) for n, p in preds.items() if n != "torch"},
        }
    result["seconds"] = round(time.time() - started, 1)
    harness.write_report(args.out, result, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
