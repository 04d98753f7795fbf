"""Our export vs optimum's (export + optimisation + quantisation) vs PyTorch eager, in one process.

Run in the `optimum` extra's environment (optimum's exporter pins transformers < 4.58), on
artifacts made by `minilm export` (fp32 and int8) of the same model:

    OMP_NUM_THREADS=1 /tmp/venv-optimum/bin/python -m bench.export_vs_optimum MODEL_DIR \
        --ours-fp32 ART_FP32 --ours-int8 ART_INT8 --out bench/results/export_vs_optimum.json

optimum's path: `main_export` (feature-extraction), `ORTOptimizer` level 2, `ORTQuantizer` dynamic
per-channel INT8 with the config for this CPU (avx512_vnni if the CPU has VNNI, else avx2).
Latency: 1 intra-op thread, interleaved runs (median), batch 1 and 32 at sequence 128, real tokens.
Also the cosine of each path's mean-pooled sentence embedding to PyTorch's on real sentences.

With `--task zoo:rotten-tomatoes` also, per path: latency at the task's real length distribution
(seeded sentences of the test split, batch 1 and 32, each batch padded to its longest sentence,
mean ms per call over the same batches, interleaved), and the task accuracy of a nearest-centroid
probe on the mean-pooled embeddings (centroids from `--probe-train` training sentences, scored on
`--probe-test` test sentences): the accuracy change of each export against PyTorch.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from bench import harness
from minilm_deploy.bench.timing import wall_clock  # the clock `minilm bench` uses

TEXT = ("The history of the printing press begins long before Gutenberg, with woodblock printing in East Asia and "
        "movable type made of fired clay, later of wood and bronze. ") * 12
NOTES: list[str] = []
SENTENCES = ["The soundtrack alone is worth the price of admission.", "I waited forty minutes and the bus never came.",
             "Quarterly revenue fell short of analyst expectations.", "Can you recommend a good vegetarian restaurant?",
             "a gorgeous, witty, seductive movie.", "The referee's decision sparked outrage among the home fans."]


def optimum_paths(model_dir: Path, work: Path) -> dict[str, Path]:
    from optimum.exporters.onnx import main_export
    from optimum.onnxruntime import ORTModelForFeatureExtraction, ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig, OptimizationConfig

    main_export(str(model_dir), output=work / "export", task="feature-extraction", opset=17)
    model = ORTModelForFeatureExtraction.from_pretrained(work / "export")
    ORTOptimizer.from_pretrained(model).optimize(save_dir=work / "opt", optimization_config=OptimizationConfig(optimization_level=2))
    vnni = "avx512_vnni" in Path("/proc/cpuinfo").read_text()
    config = (AutoQuantizationConfig.avx512_vnni if vnni else AutoQuantizationConfig.avx2)(is_static=False, per_channel=True)
    try:
        ORTQuantizer.from_pretrained(work / "opt", file_name="model_optimized.onnx").quantize(save_dir=work / "q", quantization_config=config)
        NOTES.append("optimum-int8: quantised from the level-2 optimised graph")
    except RuntimeError as exc:  # ORT 1.32's quantizer cannot type fused contrib ops; optimum does not pass DefaultTensorType
        NOTES.append(f"optimum-int8: quantising the optimised graph failed ({str(exc)[:120]}...); quantised the plain export instead")
        ORTQuantizer.from_pretrained(work / "export").quantize(save_dir=work / "q", quantization_config=config)
    return {"optimum-fp32": work / "export" / "model.onnx", "optimum-fp32-optimized": work / "opt" / "model_optimized.onnx",
            "optimum-int8": next((work / "q").glob("*quantized*.onnx"))}


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def feeds_for(sess: ort.InferenceSession, enc: dict) -> dict:
    return {i.name: enc[i.name].astype(np.int64) for i in sess.get_inputs()}


def pooled(sess: ort.InferenceSession, enc: dict) -> np.ndarray:
    hidden = sess.run(["last_hidden_state"], feeds_for(sess, enc))[0]
    mask = enc["attention_mask"][..., None].astype(np.float32)
    return (hidden * mask).sum(1) / mask.sum(1)


def _batches(texts: list[str], size: int) -> list[list[str]]:
    return [texts[i : i + size] for i in range(0, len(texts) - size + 1, size)]


def real_length(tok, sessions: dict, eager, texts: list[str], batch: int, rounds: int) -> dict:
    """Mean ms per call over the same dynamically padded batches of real sentences, paths interleaved."""
    encs = [tok(b, truncation=True, max_length=128, padding=True, return_tensors="np") for b in _batches(texts, batch)]
    times: dict[str, list[float]] = {name: [] for name in [*sessions, "pytorch-eager"]}
    with torch.no_grad():
        for _ in range(rounds):
            for enc in encs:
                pt = {k: torch.from_numpy(v) for k, v in enc.items()}
                for name in times:
                    call = (lambda p=pt: eager(**p)) if name == "pytorch-eager" else \
                        (lambda s=sessions[name], e=enc: s.run(None, feeds_for(s, e)))
                    times[name].append(wall_clock(call) * 1e3)
    tokens = float(np.mean([e["attention_mask"].sum(1).mean() for e in encs]))
    return {"batches": len(encs), "mean_tokens_per_sentence": tokens,
            "ms_per_call": {name: float(np.mean(t)) for name, t in times.items()}}


def probe_accuracy(tok, embed, train: list, test: list) -> float:
    """Nearest-centroid probe on normalised mean-pooled embeddings (`minilm bench`'s own probe function)."""
    from minilm_deploy.bench.accuracy import nearest_centroid, unit_rows

    def embeddings(texts: list[str]) -> np.ndarray:
        chunks = [texts[i : i + 32] for i in range(0, len(texts), 32)]
        return unit_rows(np.concatenate([embed(tok(c, truncation=True, max_length=128, padding=True, return_tensors="np"))
                                         for c in chunks]))

    labels = sorted({y for _, y in train})
    ids = np.array([labels.index(y) for _, y in train])
    predicted = nearest_centroid(embeddings([t for t, _ in train]), ids, len(labels), embeddings([t for t, _ in test]))
    return float(np.mean(predicted == np.array([labels.index(y) for _, y in test])))


def task_figures(tok, sessions: dict, eager, spec: str, n_train: int, n_test: int, seed: int = 0) -> dict:
    from minilm_deploy.sources import load_task

    task = load_task(spec)
    rng = np.random.default_rng(seed)
    pick = lambda split, n: [task.splits[split][i] for i in sorted(rng.permutation(len(task.splits[split]))[:n])]  # noqa: E731
    train = [(e.text, str(e.label)) for e in pick("train", n_train)]
    test = [(e.text, str(e.label)) for e in pick("test", n_test)]
    texts = [t for t, _ in test]
    out: dict = {"task": spec, "probe_train": len(train), "probe_test": len(test), "real_length": {}}
    out["real_length"]["b1"] = real_length(tok, sessions, eager, texts[:128], 1, 2)
    out["real_length"]["b32"] = real_length(tok, sessions, eager, texts[:256], 32, 2)

    def eager_embed(enc: dict) -> np.ndarray:
        with torch.no_grad():
            h = eager(**{k: torch.from_numpy(v) for k, v in enc.items()}).last_hidden_state.numpy()
        m = enc["attention_mask"][..., None]
        return (h * m).sum(1) / m.sum(1)

    embedders = {"pytorch-eager": eager_embed, **{name: (lambda enc, s=s: pooled(s, enc)) for name, s in sessions.items()}}
    out["probe_accuracy"] = {name: probe_accuracy(tok, fn, train, test) for name, fn in embedders.items()}
    return out


def main() -> None:
    from transformers import AutoModel, AutoTokenizer

    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("--ours-fp32", type=Path, required=True)
    parser.add_argument("--ours-int8", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--task", help="e.g. zoo:rotten-tomatoes: real-length latency and probe accuracy per path")
    parser.add_argument("--probe-train", type=int, default=1000)
    parser.add_argument("--conditions", default="2 CPU cores; medians of interleaved runs", help="how the machine was (recorded)")
    parser.add_argument("--probe-test", type=int, default=1066)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(args.model)
    eager = AutoModel.from_pretrained(args.model, attn_implementation="eager").eval()
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"ours-fp32": args.ours_fp32 / "model.onnx", "ours-int8": args.ours_int8 / "model.onnx",
                 **optimum_paths(args.model, Path(tmp))}
        sessions = {name: session(p) for name, p in paths.items()}
        sizes = {name: p.stat().st_size for name, p in paths.items()}
        enc = tok(SENTENCES, padding=True, return_tensors="np")
        with torch.no_grad():
            h = eager(**{k: torch.from_numpy(v) for k, v in enc.items()}).last_hidden_state.numpy()
        m = enc["attention_mask"][..., None]
        ref = (h * m).sum(1) / m.sum(1)
        cos = {}
        for name, s in sessions.items():
            e = pooled(s, enc)
            c = np.sum(e * ref, 1) / (np.linalg.norm(e, axis=1) * np.linalg.norm(ref, axis=1))
            cos[name] = {"min": float(c.min()), "mean": float(c.mean())}
        latency = {}
        for batch, rounds in ((1, 30), (32, 5)):
            enc = tok([TEXT] * batch, truncation=True, max_length=128, padding="max_length", return_tensors="np")
            runs = {name: (lambda s=s, e=enc: s.run(None, feeds_for(s, e))) for name, s in sessions.items()}
            pt = {k: torch.from_numpy(v) for k, v in enc.items()}
            runs["pytorch-eager"] = lambda p=pt: eager(**p)
            times = {name: [] for name in runs}
            with torch.no_grad():
                for fn in runs.values():
                    fn()
                for _ in range(rounds):
                    for name, fn in runs.items():
                        times[name].append(wall_clock(fn) * 1e3)
            latency[f"b{batch}-s128"] = {name: float(np.median(t)) for name, t in times.items()}
        task = task_figures(tok, sessions, eager, args.task, args.probe_train, args.probe_test) if args.task else None
    versions = {p: md.version(p) for p in ("optimum", "optimum-onnx", "transformers", "onnxruntime", "torch")}
    result = {"model": str(args.model), "threads": 1, "versions": versions, "sizes_bytes": sizes,
              "cosine_vs_pytorch": cos, "latency_ms": latency, "task": task,
              "notes": [args.conditions, *NOTES]}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        harness.write_report(args.out, result, indent=2)


if __name__ == "__main__":
    main()
