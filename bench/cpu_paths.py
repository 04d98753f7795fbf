"""Every CPU path for one model on this machine, side by side in one run (issue 15's benchmark).

    .venv/bin/python -m bench.cpu_paths                                  # all-MiniLM-L6-v2, rotten-tomatoes
    .venv/bin/python -m bench.cpu_paths --model runs/quickstart/student --threads 1,2

PyTorch runs as fp32 eager (the reference) and under bf16 autocast (`--backend torch-bf16`). Exports the
model with each of `--profile auto`'s candidate profiles (onnx-cpu-fp32, onnx-cpu-int8, onnx-cpu-int8-attention,
openvino-cpu-fp32, openvino-cpu-int8, openvino-cpu-int8-smoothquant: each validated as every export is) and with
`--profile auto`, then runs `minilm
bench`'s harness over all of them against PyTorch fp32 eager: p50 at batch 1 and 32 × 128 tokens,
the task's real texts at batch 1 and 32 (tokenisation included), task accuracy (an embedding model:
the nearest-centroid probe) and each export's worst cosine to PyTorch, for each thread count. Run
it on an otherwise idle machine: every figure is timed in its own fresh process.

With `--peers FOLDER` (made by `bench.cpu_paths_peers` in optimum's own environment: optimum's ONNX
Runtime INT8, optimum-intel's OpenVINO IR), those run in the same harness, side by side. Every row's
worst sentence-embedding cosine to PyTorch on 256 of the task's test sentences is measured here too
("real cosine"), next to our exports' validation figure.

Writes bench/results/cpu_paths/<cpu class>.json and a table in <cpu class>.md (another model than the default:
<cpu class>-<model folder name>.json/.md), and README.md: every table recorded there, one section per CPU
class and model, with what `auto` chose. Not a test: nothing asserts a time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench import harness
from minilm_deploy.export.auto import CANDIDATES

RESULTS = harness.RESULTS / "cpu_paths"
DEFAULT_MODEL = "zoo:all-minilm-l6-v2"
WORK = harness.WORK / "cpu_paths"
# row name → (export profile, runtime backend): `--profile auto`'s candidates (the rows' names as the committed
# tables spell them: ort- for onnxruntime-), and "auto", its pick
PATHS = {name.replace("onnxruntime-", "ort-"): spec for name, spec in CANDIDATES.items()} | {"auto": ("auto", None)}


def export_all(model: str, task: str, folder: Path) -> dict[str, dict[str, Any]]:
    """Each path's artifact (reused when present): {row: {"path", "backend", "min_cosine" | "error"}}."""
    from minilm_deploy.artifact import load_manifest
    from minilm_deploy.errors import MinilmError
    from minilm_deploy.export.auto import export_auto
    from minilm_deploy.export.build import export_model
    from minilm_deploy.export.profile import load_profile

    out: dict[str, dict[str, Any]] = {}
    for row, (profile, backend) in PATHS.items():
        target = folder / row
        if not (target / "manifest.json").is_file():
            print(f"cpu_paths: exporting {row}", file=sys.stderr)
            try:
                if profile == "auto":
                    export_auto(model, output=target, task=task)
                else:
                    export_model(model, load_profile(profile), output=target, task=task)
            except MinilmError as exc:  # a path that does not validate is a result too
                out[row] = {"error": str(exc)}
                continue
        manifest = load_manifest(target)
        checks = [v for k, v in manifest.validation.items() if k in ("int8", "openvino", "raw", "fused") and "outputs" in v]
        cosines = [f["min_cosine"] for check in checks[-1:] for f in check["outputs"].values() if f["min_cosine"] is not None]
        out[row] = {"path": str(target), "backend": backend or (manifest.auto or {}).get("backend"),
                    "min_cosine": min(cosines) if cosines else None, "auto": manifest.auto and manifest.auto["reason"]}
    return out


def peer_paths(folder: Path | None) -> dict[str, dict[str, Any]]:
    """The peers `bench.cpu_paths_peers` made: {row: {"path", "backend", "made_by"}}."""
    if folder is None:
        return {}
    out = {}
    for peer in sorted(p for p in folder.iterdir() if (p / "config.json").is_file()):
        backend = "openvino" if (peer / "openvino_model.xml").is_file() else "onnxruntime"
        made_by = json.loads((peer / "peer.json").read_text())["made_by"] if (peer / "peer.json").is_file() else "?"
        out[peer.name] = {"path": str(peer), "backend": backend, "made_by": made_by, "min_cosine": None}
    return out


def real_cosines(model: str, task: str, paths: dict[str, dict[str, Any]], n: int = 256) -> dict[str, float]:
    """Each row's worst sentence-embedding cosine to PyTorch fp32 on `n` test sentences of `task`."""
    import numpy as np

    from minilm_deploy.runtime import Predictor
    from minilm_deploy.sources import load_task

    texts = [ex.text for ex in load_task(task).splits["test"][:n]]

    def embed(path: str, backend: str) -> np.ndarray:
        with Predictor.load(path, backend=backend, threads=1) as predictor:
            e = np.concatenate([predictor.predict(texts[i : i + 32]).embedding_array for i in range(0, n, 32)])
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    from minilm_deploy.sources import resolve_model

    reference = embed(str(resolve_model(model)), "torch")
    return {row: float((embed(info["path"], info["backend"]) * reference).sum(1).min())
            for row, info in paths.items() if "path" in info}


def bench_all(model: str, task: str, paths: dict[str, dict[str, Any]], threads: int, real_batch: int,
              grid: bool, out: Path) -> dict[str, Any]:
    from minilm_deploy.bench.run import ModelSpec, run_bench
    from minilm_deploy.bench.suite import BenchSuite, Grid

    specs = [ModelSpec("pytorch-fp32", model, "teacher", "torch")]
    specs += [ModelSpec(row, info["path"], "candidate", info["backend"]) for row, info in paths.items() if "path" in info]
    suite = BenchSuite(name=f"cpu-paths-t{threads}-b{real_batch}", task=task, eval_limit=600, probe_train_limit=1000,
                       grid=Grid(batch_sizes=(1, 32), seq_lens=(128,)) if grid else Grid(batch_sizes=(1,), seq_lens=(16,)),
                       real_batch_size=real_batch, real_samples=128, threads=threads, isolate=True)
    return run_bench(specs, suite, out)


def table(runs: list[dict[str, Any]], paths: dict[str, dict[str, Any]], real: dict[str, float]) -> str:
    lines = ["| path | threads | b1×128 ms | b32×128 ms | b1 real ms | b32 real ms | accuracy | validation cosine | real cosine |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    by: dict[tuple[str, int], dict[str, Any]] = {}
    for run in runs:
        threads = run["suite"]["threads"]
        for row in run["rows"]:
            cell = by.setdefault((row["model"], threads), {})
            if row["kind"] == "accuracy":
                cell["accuracy"] = row["value"]
            elif row["mode"] == "grid" and row["seq_len"] == 128:
                cell[f"b{row['batch_size']}x128"] = row["latency_ms"]["p50"]
            elif row["mode"] == "real":
                cell[f"b{row['batch_size']}real"] = row["latency_ms"]["p50"]
    for (name, threads), cell in by.items():
        cos = (paths.get(name) or {}).get("min_cosine")
        values = [cell.get(k) for k in ("b1x128", "b32x128", "b1real", "b32real")]
        reference = name == "pytorch-fp32"
        lines.append(f"| {name} | {threads} | " + " | ".join(f"{v:.2f}" if v is not None else "–" for v in values)
                     + f" | {cell.get('accuracy', float('nan')):.4f} | "
                     + ("1 (reference)" if reference else f"{cos:.4f}" if cos is not None else "–") + " | "
                     + ("1 (reference)" if reference else f"{real[name]:.4f}" if name in real else "–") + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--task", default="zoo:rotten-tomatoes")
    parser.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts")
    parser.add_argument("--peers", type=Path, help="peer exports made by `python -m bench.cpu_paths_peers` (optimum's venv)")
    args = parser.parse_args()
    from minilm_deploy.hardware import cpu_class

    folder = WORK / model_name(args.model)
    from minilm_deploy.sources import resolve_model

    pytorch_bf16 = {"pytorch-bf16": {"path": str(resolve_model(args.model)), "backend": "torch-bf16", "min_cosine": None}}
    paths = pytorch_bf16 | export_all(args.model, args.task, folder) | peer_paths(args.peers)
    real = real_cosines(args.model, args.task, paths)
    runs: list[dict[str, Any]] = []
    for threads in (int(t) for t in args.threads.split(",")):
        for real_batch, grid in ((32, True), (1, False)):
            runs.append(bench_all(args.model, args.task, paths, threads, real_batch, grid,
                                  folder / f"bench-t{threads}-b{real_batch}"))
        write(args, paths, real, runs)  # after each thread count: a run stopped later keeps what it measured
    print(result_path(args.model, cpu_class()).with_suffix(".md").read_text())


def model_name(model: str) -> str:
    return model.removeprefix("zoo:").rstrip("/").split("/")[-1]


def result_path(model: str, klass: str) -> Path:
    """Where one model's figures on one CPU class go: <class> for the default model, else <class>-<model>."""
    return RESULTS / (klass if model == DEFAULT_MODEL else f"{klass}-{model_name(model)}")


def write(args: argparse.Namespace, paths: dict[str, dict[str, Any]], real: dict[str, float],
          runs: list[dict[str, Any]]) -> None:
    from minilm_deploy.hardware import cpu_class, cpu_name

    klass = cpu_class()
    record = {"cpu": cpu_name(), "cpu_class": klass, "model": args.model, "task": args.task, "paths": paths,
              "real_cosine": real,
              "runs": [{"suite": r["suite"], "rows": r["rows"], "models": r["models"]} for r in runs]}
    done = ",".join(str(t) for t in dict.fromkeys(r["suite"]["threads"] for r in runs))
    header = (f"# CPU paths on {cpu_name()} ({klass})\n\n`python -m bench.cpu_paths --model {args.model} --task {args.task} "
              f"--threads {done}" + (f" --peers {args.peers}" if args.peers else "") + "`; p50 latency, each model "
              "in its own process; accuracy on 600 test sentences (an embedding model: the nearest-centroid probe); "
              "validation cosine: the export's worst to PyTorch in its own validation (token and sentence outputs); "
              "real cosine: the worst sentence-embedding cosine to PyTorch on 256 test sentences, every row alike.\n\n"
              + "".join(f"- {row}: {info['made_by']}\n" for row, info in paths.items() if "made_by" in info)
              + ("\n" if args.peers else ""))
    auto = paths.get("auto", {}).get("auto")
    markdown_table = header + table(runs, paths, real) + (f"\n`--profile auto`: {auto}\n" if auto else "")
    harness.write_report(result_path(args.model, klass), record, markdown_table)
    write_index()


def write_index() -> None:
    """README.md: every recorded table (one per CPU class and model), each with what `auto` chose."""
    sections = []
    for path in sorted(RESULTS.glob("*.json")):
        record = json.loads(path.read_text())
        if "runs" not in record or "cpu_class" not in record:
            continue
        auto = (record["paths"].get("auto") or {}).get("auto")
        threads = ", ".join(str(t) for t in dict.fromkeys(r["suite"]["threads"] for r in record["runs"]))
        sections.append(f"## {record['model']} on {record['cpu_class']} ({record['cpu']}), threads {threads}\n\n"
                        f"Table: [{path.with_suffix('.md').name}]({path.with_suffix('.md').name}); record: "
                        f"[{path.name}]({path.name}).\n\n" + (f"`--profile auto` chose: {auto}\n\n" if auto else "")
                        + table(record["runs"], record["paths"], record.get("real_cosine", {})))
    text = ("# CPU paths, by CPU class and model\n\nWritten by `python -m bench.cpu_paths` (see its `--help`); figures "
            "from different CPU classes are never compared with each other. p50 ms, each model in its own process.\n\n"
            + "\n".join(sections))
    harness.write_report(RESULTS / "README", markdown=text)

if __name__ == "__main__":
    main()
