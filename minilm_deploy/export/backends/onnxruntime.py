"""The ONNX Runtime export backend: `model.onnx` at the profile's precision.

fp32 as exported or fused by ONNX Runtime's transformer optimizer; int8 dynamic or static (QDQ,
calibrated on the task's training texts); fp16 with LayerNorm and Softmax kept in fp32. The
precision is made from each candidate graph (unfused, fused); the faster is kept (the fused one
only if it is faster) and validated against PyTorch.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from minilm_deploy.export import optimize, quantize
from minilm_deploy.export.backends import files_of
from minilm_deploy.export.validate import Graph
from minilm_deploy.export.work import Work, calibration_texts, check

RUNNER = "onnxruntime"
FUSES_WITH_ORT = True  # ONNX Runtime's transformer fusions may make the fp32 graph faster
MODEL_FILE = "model.onnx"


def missing() -> str | None:
    return None  # onnxruntime is a core dependency


def build(work: Work, graphs: dict[str, Path]) -> dict[str, Path | Graph]:
    """The profile's precision from each candidate graph; the fastest is kept and validated."""
    prec = work.profile.precision
    if prec == "fp16" or (prec == "int8" and work.profile.quantization.mode == "static"):
        # fp16 conversion and QDQ calibration work on standard ops only (not ORT's fused contrib ops);
        # from the unfused graph, LayerNorm and Softmax nodes stay fp32, and ORT fuses at session load
        graphs = {"unfused": work.raw_graph}
    made = {name: convert(work, path, prec, work.scratch / f"{name}.{prec}.onnx") for name, path in graphs.items()}
    feeds = optimize.timing_feeds(work.source, 1, work.profile.shapes.sequence.opt)
    kept, work.record["optimization"] = optimize.pick(made, work.record["optimization"], feeds)
    if prec != "fp32":
        work.record[prec] = check(work, made[kept], prec)
    work.variants = {"fp32": graphs[kept], prec: made[kept]}
    return dict(work.variants)


def convert(work: Work, fp32: Path, precision: str, target: Path) -> Path:
    prof = work.profile
    if precision == "fp32":
        return fp32
    if precision == "fp16":
        return quantize.to_fp16(fp32, target)
    if prof.quantization.mode == "dynamic":
        return quantize.quantize_dynamic(fp32, target, prof.quantization)
    return quantize.quantize_static(work.source, fp32, target, prof.quantization, prof.calibration, calibration_texts(work),
                                    prof.shapes.sequence.opt)


def publish(work: Work, options: dict[str, Any]) -> dict[str, Any]:
    """model.onnx: the kept graph at the profile's precision."""
    target = work.root / MODEL_FILE
    kept = work.variants[work.profile.precision]
    assert isinstance(kept, Path), "ONNX Runtime's variants are ONNX files"
    shutil.copyfile(kept, target)
    return {"runner": RUNNER, "precision": work.profile.precision, "files": files_of(work.root, [target])}
