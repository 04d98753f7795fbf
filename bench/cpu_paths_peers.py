"""The peer paths of `bench.cpu_paths`, made the way their own tools make them, in their own environment.

    # optimum and optimum-intel do not resolve in one environment: one venv each (torch==2.13.0 first in each)
    python3.11 -m venv /tmp/venv-optimum && /tmp/venv-optimum/bin/pip install torch==2.13.0 && /tmp/venv-optimum/bin/pip install "optimum[onnxruntime]"
    python3.11 -m venv /tmp/venv-ov && /tmp/venv-ov/bin/pip install torch==2.13.0 && /tmp/venv-ov/bin/pip install "optimum-intel[openvino]"
    /tmp/venv-optimum/bin/python -m bench.cpu_paths_peers MODEL_DIR --tool optimum --out runs/cpu_paths/<model>/peers
    /tmp/venv-ov/bin/python -m bench.cpu_paths_peers MODEL_DIR --tool optimum-intel --out runs/cpu_paths/<model>/peers

Writes one Hugging Face folder per peer path (config, tokenizer, and the peer's model file in the layout its
tool writes it), which `minilm bench` and `python -m bench.cpu_paths --peers FOLDER` then time in our own
environment, side by side with our exports, in the same run:

  optimum-ort-fp32       optimum's ONNX export (`main_export`, feature-extraction), no optimisation
  optimum-ort-int8       optimum's dynamic INT8 (`ORTQuantizer`, AutoQuantizationConfig.avx2 or .avx512_vnni
                         by this CPU, per-channel) of its level-2 optimised graph, as optimum's guide does it
  optimum-intel-ov-fp32  optimum-intel's OpenVINO IR (`OVModelForFeatureExtraction(export=True)`), the path
                         sentence-transformers' `backend="openvino"` takes

Nothing is validated here: `bench.cpu_paths` measures each peer's worst cosine to PyTorch itself.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import shutil
import tempfile
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                   "sentence_bert_config.json", "modules.json")


def _folder(model_dir: Path, out: Path, files: dict[str, Path], made_by: str) -> None:
    """`out`: config + tokenizer of `model_dir`, the peer's `files` (name in the folder → source)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in ("config.json", *TOKENIZER_FILES):
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, out / name)
    for name, source in files.items():
        shutil.copyfile(source, out / name)
    (out / "peer.json").write_text(json.dumps({"made_by": made_by}, indent=1) + "\n")


def optimum_ort(model_dir: Path, out: Path) -> None:
    from bench.export_vs_optimum import NOTES, optimum_paths

    with tempfile.TemporaryDirectory() as tmp:
        paths = optimum_paths(model_dir, Path(tmp))
        versions = {p: md.version(p) for p in ("optimum", "optimum-onnx", "onnxruntime")}
        _folder(model_dir, out / "optimum-ort-fp32", {"model.onnx": paths["optimum-fp32"]}, f"optimum main_export {versions}")
        _folder(model_dir, out / "optimum-ort-int8", {"model.onnx": paths["optimum-int8"]},
                f"optimum ORTQuantizer {versions}; {'; '.join(NOTES)}")


def optimum_intel(model_dir: Path, out: Path) -> None:
    from optimum.intel import OVModelForFeatureExtraction

    with tempfile.TemporaryDirectory() as tmp:
        OVModelForFeatureExtraction.from_pretrained(str(model_dir), export=True).save_pretrained(tmp)
        versions = {p: md.version(p) for p in ("optimum-intel", "openvino")}
        _folder(model_dir, out / "optimum-intel-ov-fp32",
                {"openvino_model.xml": Path(tmp) / "openvino_model.xml", "openvino_model.bin": Path(tmp) / "openvino_model.bin"},
                f"optimum-intel OVModelForFeatureExtraction(export=True) {versions}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a local Hugging Face model folder (e.g. `minilm zoo path all-minilm-l6-v2`)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tool", choices=("optimum", "optimum-intel"), required=True, help="the peers this venv makes")
    args = parser.parse_args()
    (optimum_ort if args.tool == "optimum" else optimum_intel)(args.model, args.out)
    print("\n".join(str(p) for p in sorted(args.out.iterdir())))


if __name__ == "__main__":
    main()
