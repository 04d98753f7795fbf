"""Which NNCF INT8 settings keep a fine-tuned classifier's predictions, and at what speed (OpenVINO, this CPU).

    .venv/bin/python -m bench.openvino_int8 --model runs/students/mpnet-6x768-c1-0/rotten-tomatoes-s1
    .venv/bin/python -m bench.openvino_int8 --model M --task zoo:trec --variants bf16,int8,int8-ffn-out-float

Exports the model once with `openvino-cpu-fp32` (validated as every export is; its unfused fp32 `model.onnx` is
what every IR here is converted from), then builds each variant's IR with the export backend's own `build_ir`:
the fp32 IR (computed in bf16 where the CPU has AMX or AVX512-BF16, else f32) and NNCF INT8 IRs that differ in
one setting each: every MatMul quantised, SmoothQuant on, full bias correction, and MatMul roles
(`quantize.matmul_roles`) left in float. For each: the share of the task's dev and test predictions equal to
PyTorch's (what the export's `min_agreement` gate reads on dev), the accuracy on both, and the b1×128 p50 at one
thread, every variant timed in each of `--rounds` interleaved rounds (the median of the rounds' p50s).
NNCF and the CPU's INT8 saturation rule are applied as the export applies them (`quantization.reduce_range: auto`).

Writes bench/results/openvino_int8/<cpu class>-<model folder name>.json and .md. Not a test: nothing asserts a
time. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import harness

RESULTS = harness.RESULTS / "openvino_int8"
WORK = harness.WORK / "openvino_int8"


@dataclass(frozen=True)
class Variant:
    description: str
    int8: bool = True
    smooth_quant: bool = False
    fast_bias_correction: bool = True
    float_matmuls: tuple[str, ...] = field(default=())


VARIANTS: dict[str, Variant] = {
    "bf16": Variant("the fp32 IR (openvino-cpu-fp32), computed in bf16 where the CPU has it", int8=False),
    "int8": Variant("NNCF INT8, every MatMul (openvino-cpu-int8)"),
    "int8-smoothquant": Variant("NNCF INT8 with SmoothQuant (openvino-cpu-int8-smoothquant)", smooth_quant=True),
    "int8-full-bias": Variant("NNCF INT8 with full bias correction", fast_bias_correction=False),
    "int8-ffn-out-float": Variant("NNCF INT8, the FFN output MatMuls in float",
                                  float_matmuls=("ffn-out",)),
    "int8-ffn-float": Variant("NNCF INT8, both FFN MatMuls in float", float_matmuls=("ffn-up", "ffn-out")),
    "int8-smoothquant-ffn-out-float": Variant("NNCF INT8 with SmoothQuant, the FFN output MatMuls in float",
                                              smooth_quant=True, float_matmuls=("ffn-out",)),
    "int8-attention-float": Variant("NNCF INT8, the attention products (scores, weighted values) in float",
                                    float_matmuls=("attention-product",)),
}


def build_variants(model: str, task_spec: str, names: list[str], work: Path, samples: int) -> tuple[Any, Any, dict[str, Path]]:
    """The reference model, the task and each variant's IR (built once; reused when present)."""
    from minilm_deploy.export.backends.openvino import build_ir
    from minilm_deploy.export.build import export_model
    from minilm_deploy.export.profile import load_profile
    from minilm_deploy.export.quantize import token_batches
    from minilm_deploy.export.reference import load_reference
    from minilm_deploy.hardware import int8_saturates
    from minilm_deploy.sources import load_task, resolve_model

    fp32 = work / "openvino-cpu-fp32"
    if not (fp32 / "manifest.json").is_file():
        print("openvino_int8: exporting openvino-cpu-fp32", file=sys.stderr)
        export_model(model, load_profile("openvino-cpu-fp32"), output=fp32, task=task_spec, overwrite=True)
    source = load_reference(resolve_model(model))
    task = load_task(task_spec)
    calibration = list(token_batches(source, [ex.text for ex in task.splits["train"][:samples]], 16))
    irs: dict[str, Path] = {}
    for name in names:
        variant = VARIANTS[name]
        if not variant.int8:
            irs[name] = fp32 / "openvino" / "model.xml"
            continue
        irs[name] = work / name / "model.xml"
        if not irs[name].is_file():
            print(f"openvino_int8: quantising {name}", file=sys.stderr)
            build_ir(fp32 / "model.onnx", irs[name], "int8", calibration, smooth_quant=variant.smooth_quant,
                     fast_bias_correction=variant.fast_bias_correction, seven_bit_weights=int8_saturates(),
                     float_matmuls=variant.float_matmuls)
    return source, task, irs


def agreement(source: Any, task: Any, irs: dict[str, Path], hint: str) -> dict[str, dict[str, float]]:
    """Per variant and split (dev, test): agreement with PyTorch's predictions and accuracy, in %."""
    from minilm_deploy.export.taskcheck import label_index, predictions
    from minilm_deploy.export.validate import Graph

    mapping = label_index(source, task)
    figures: dict[str, dict[str, float]] = {name: {} for name in irs}
    for split in ("dev", "test"):
        examples = task.splits.get(split) or task.splits.get("validation" if split == "dev" else split) or ()
        if not examples:
            continue
        labels = np.array([mapping.get(str(ex.label), -1) for ex in examples])
        preds = predictions(source, examples, {name: Graph(ir, "openvino", hint) for name, ir in irs.items()})
        figures.setdefault("pytorch", {})[f"{split}_accuracy"] = round(100 * float(np.mean(preds["torch"] == labels)), 2)
        for name in irs:
            figures[name][f"{split}_agreement"] = round(100 * float(np.mean(preds[name] == preds["torch"])), 2)
            figures[name][f"{split}_accuracy"] = round(100 * float(np.mean(preds[name] == labels)), 2)
    return figures


def latencies(source: Any, irs: dict[str, Path], hint: str, rounds: int, length: int = 128) -> dict[str, list[float]]:
    """Per variant, the b1×`length` p50 (ms) of each interleaved round, at one thread."""
    from minilm_deploy.bench.suite import Timing
    from minilm_deploy.bench.timing import measure
    from minilm_deploy.export.quantize import token_batches
    from minilm_deploy.runtime.backends.openvino_runner import OpenVinoInfer

    feeds = next(token_batches(source, ["word " * (2 * length)], 1, pad_to=length))
    runners = {name: OpenVinoInfer(ir, hint, threads=1) for name, ir in irs.items()}
    timing = Timing(warmup=5, min_iterations=30, min_duration_s=2.0)
    out: dict[str, list[float]] = {name: [] for name in irs}
    for _ in range(rounds):
        for name, run in runners.items():
            out[name].append(round(1000 * float(np.median(measure(lambda _i, run=run: run(feeds), timing))), 2))
    return out


def table(record: dict[str, Any]) -> str:
    rows = record["variants"]
    lines = [f"CPU: {record['cpu']} ({record['cpu_class']}), OpenVINO {record['openvino']}, NNCF {record['nncf']}, "
             f"compute {record['inference_precision']}, 1 thread, b1×128 p50 per round ({record['rounds']} interleaved "
             f"rounds). Model `{record['model']}`, task `{record['task']}` (PyTorch: dev "
             f"{record['pytorch'].get('dev_accuracy')}, test {record['pytorch'].get('test_accuracy')}). "
             f"Command: `{record['command']}`", "",
             "| variant | dev agreement % | test agreement % | dev acc. % | test acc. % | b1×128 ms | speed-up vs bf16 |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    base = rows.get("bf16", {}).get("ms")
    for name, row in rows.items():
        speed = f"{base / row['ms']:.2f}x" if base and row.get("ms") else "–"
        lines.append(f"| {name}: {VARIANTS[name].description} | {row.get('dev_agreement', '–')} | "
                     f"{row.get('test_agreement', '–')} | {row.get('dev_accuracy', '–')} | {row.get('test_accuracy', '–')} | "
                     f"{row.get('ms', '–')} ({', '.join(str(x) for x in row.get('rounds_ms', []))}) | {speed} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--model", required=True, help="a fine-tuned classifier (folder, zoo:NAME or hub id)")
    parser.add_argument("--task", default="zoo:rotten-tomatoes")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calibration-samples", type=int, default=256, help="training texts NNCF calibrates on")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    if unknown := [n for n in names if n not in VARIANTS]:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    import nncf
    import openvino as ov

    from minilm_deploy.hardware import cpu_class, cpu_name
    from minilm_deploy.runtime.backends.openvino_runner import inference_precision

    folder = Path(args.model.rstrip("/"))  # a run's folder (…/mpnet-6x768-c1-0/rotten-tomatoes-s1) by its last two parts
    label = "-".join(folder.parts[-2:] if folder.is_dir() and len(folder.parts) > 1 else [folder.name]).replace(":", "-")
    source, task, irs = build_variants(args.model, args.task, names, WORK / label, args.calibration_samples)
    hint = inference_precision("auto")
    figures = agreement(source, task, irs, hint)
    timed = latencies(source, irs, hint, args.rounds)
    record = {"model": args.model, "task": args.task, "cpu": cpu_name(), "cpu_class": cpu_class(),
              "openvino": ov.__version__, "nncf": nncf.__version__, "inference_precision": hint, "rounds": args.rounds,
              "command": "python -m bench.openvino_int8 " + " ".join(sys.argv[1:] if argv is None else argv),
              "pytorch": figures.get("pytorch", {}),
              "variants": {name: {**figures[name], "ms": float(np.median(timed[name])), "rounds_ms": timed[name]}
                           for name in irs}}
    out = RESULTS / f"{cpu_class()}-{label}"
    harness.write_report(out, record, table(record))
    print(table(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
