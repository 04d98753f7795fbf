"""Where dynamic INT8 loses its accuracy on all-MiniLM-L6-v2, on this CPU: the worst and mean sentence-embedding
cosine to PyTorch on rotten-tomatoes test sentences with every MatMul quantised, with one (layer, role) group of
MatMuls left in fp32 at a time, with whole roles left in fp32 (what `onnx-cpu-int8-attention` does), and with 7-bit
weights (`reduce_range`, meant for CPUs without VNNI). It says whether a mixed-precision INT8 between
`onnx-cpu-int8` and `onnx-cpu-int8-attention` could pass `--profile auto`'s 0.99 gate.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.int8_sensitivity

Writes bench/results/int8_sensitivity/<cpu class>.json and .md. Not a test.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from dataclasses import replace
from pathlib import Path

from bench import export_variants, harness
from minilm_deploy.export import quantize
from minilm_deploy.export.onnx_export import export_onnx
from minilm_deploy.export.profile import Quantization
from minilm_deploy.export.reference import load_reference
from minilm_deploy.sources import load_task, resolve_model

RESULTS = harness.RESULTS / "int8_sensitivity"
WHOLE_ROLES = {"ffn-out": ("ffn-out",), "ffn-up": ("ffn-up",), "ffn (= onnx-cpu-int8-attention)": ("ffn-up", "ffn-out"),
               "projection": ("projection",)}


def layer_groups(graph: Path) -> dict[str, list[str]]:
    """The quantisable MatMuls by (layer, role): 'layer 3 ffn-up' → node names."""
    groups: dict[str, list[str]] = {}
    for node, role in quantize.matmul_roles(graph).items():
        if role != "attention-product":  # activation x activation: dynamic INT8 leaves it float anyway
            layer = re.search(r"layer\.(\d+)", node)
            groups.setdefault(f"layer {layer.group(1) if layer else '?'} {role}", []).append(node)
    return dict(sorted(groups.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="zoo:all-minilm-l6-v2")
    parser.add_argument("--task", default="zoo:rotten-tomatoes")
    parser.add_argument("--texts", type=int, default=256)
    args = parser.parse_args()
    from minilm_deploy.hardware import cpu_class, cpu_name

    source = load_reference(resolve_model(args.model))
    texts = [ex.text for ex in load_task(args.task).splits["test"][: args.texts]]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        fp32 = export_onnx(source, folder / "fp32.onnx", opset=17, exporter="legacy")
        eight = Quantization(reduce_range=False)  # every row but one with 8-bit weights, whatever this CPU is
        variants: dict[str, tuple[Quantization, list[str]]] = {
            "nothing": (eight, []), "nothing, 7-bit weights": (Quantization(reduce_range=True), [])}
        variants |= {f"{name} in fp32": (replace(eight, float_matmuls=roles), []) for name, roles in WHOLE_ROLES.items()}
        variants |= {f"{group} in fp32": (eight, nodes) for group, nodes in layer_groups(fp32).items()}
        rows = {}
        for name, (options, nodes) in variants.items():
            graph = quantize.quantize_dynamic(fp32, folder / "int8.onnx", options, float_nodes=nodes)
            rows[name] = export_variants.cosines(source, {"int8": graph}, texts)["int8"]
            print(f"int8_sensitivity: {name}: worst cosine {rows[name]['min']:.4f}", flush=True)
    lines = [f"# Dynamic INT8 sensitivity on {cpu_name()} ({cpu_class()})\n",
             f"`python -m bench.int8_sensitivity --model {args.model} --task {args.task} --texts {args.texts}`: "
             f"{args.model} exported to ONNX (legacy exporter, opset 17), dynamic INT8 per channel (QInt8 weights); "
             f"sentence-embedding cosine to PyTorch on {args.task}'s first {args.texts} test sentences.\n",
             "| kept in fp32 | worst cosine | mean cosine |", "|---|---:|---:|"]
    lines += [f"| {name} | {r['min']:.4f} | {r['mean']:.5f} |" for name, r in rows.items()]
    record = {"cpu": cpu_name(), "cpu_class": cpu_class(), "model": args.model, "task": args.task, "texts": args.texts,
              "rows": rows}
    harness.write_report(RESULTS / cpu_class(), record, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
