"""Do optimum's ORTModelFor… classes load a `minilm export` artifact as it is? (run in the `optimum` extra's venv)

    /tmp/venv-optimum/bin/python -m bench.export_optimum_check ARTIFACT [ARTIFACT...] --out bench/results/export_optimum.json

For each artifact: load it with ORTModelForFeatureExtraction (embedding) or
ORTModelForSequenceClassification (classification), run real sentences through optimum and through
onnxruntime directly, and record whether loading worked and the max abs difference of the outputs.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench import harness

SENTENCES = ["The film is a quiet triumph.", "Where is the nearest train station?",
             "Prices rose 3.2% in March, the fastest pace since 2011."]


def check(artifact: Path) -> dict:
    from optimum.onnxruntime import ORTModelForFeatureExtraction, ORTModelForSequenceClassification
    from transformers import AutoTokenizer

    manifest = json.loads((artifact / "manifest.json").read_text())
    cls = ORTModelForFeatureExtraction if manifest["task"] == "embedding" else ORTModelForSequenceClassification
    record = {"artifact": str(artifact), "task": manifest["task"], "precision": manifest["precision"], "class": cls.__name__}
    tok = AutoTokenizer.from_pretrained(artifact / "tokenizer")
    enc = tok(SENTENCES, padding=True, truncation=True, max_length=manifest["max_length"], return_tensors="np")
    session = ort.InferenceSession(str(artifact / "model.onnx"), providers=["CPUExecutionProvider"])
    direct = dict(zip(manifest["outputs"], session.run(manifest["outputs"], {k: enc[k].astype(np.int64) for k in manifest["inputs"]}), strict=True))
    try:
        model = cls.from_pretrained(artifact)  # as it is: no file_name, no subfolder
    except Exception as exc:  # record whatever optimum says
        return {**record, "loaded": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
    out = model(**{k: enc[k] for k in manifest["inputs"]})
    name = "last_hidden_state" if manifest["task"] == "embedding" else "logits"
    got = np.asarray(getattr(out, name))
    valid = enc["attention_mask"].astype(bool) if name == "last_hidden_state" else slice(None)
    record.update(loaded=True, output=name, max_abs_diff_vs_onnxruntime=float(np.max(np.abs(got[valid] - direct[name][valid]))))
    return record


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("artifacts", nargs="+", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    versions = {p: md.version(p) for p in ("optimum", "optimum-onnx", "transformers", "onnxruntime", "torch")}
    result = {"versions": versions, "checks": [check(a) for a in args.artifacts]}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        harness.write_report(args.out, result, indent=2)


if __name__ == "__main__":
    main()
