"""The TensorRT export backend (`--trt`): `tensorrt/model.onnx`, the graph whose own types are the
engine's precision, made and validated on the CPU (ONNX Runtime) before any engine is built, and
`model.plan` built from it where a GPU with TensorRT is present (`export/trt_engine.py`).

fp32 as exported; FP16 with LayerNorm and Softmax kept in fp32; INT8 as symmetric Q/DQ on the
weight MatMuls (attention products and the FFN output projection stay float), calibrated on the
task's training texts. TensorRT parses standard ops only: always from the unfused graph.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from minilm_deploy.errors import MinilmError
from minilm_deploy.export import quantize, trt_engine
from minilm_deploy.export.backends import files_of
from minilm_deploy.export.triton import TORCH_TO_TRITON
from minilm_deploy.export.validate import Graph, compare_tolerance, onnx_outputs, open_session
from minilm_deploy.export.work import Work, calibration_texts, check

RUNNER = "tensorrt"
FUSES_WITH_ORT = False  # TensorRT parses standard ops only
GRAPH_FILE = "tensorrt/model.onnx"  # in the artifact
PLAN_FILE = "model.plan"


def missing() -> str | None:
    """Why an engine cannot be built here; the TensorRT-ready graph is made and checked anyway."""
    return trt_engine.unavailable_reason()


def graph_path(work: Work) -> Path:
    options = work.profile.tensorrt
    assert options is not None
    return work.raw_graph if options.precision == "fp32" else work.scratch / f"trt.{options.precision}.onnx"


def build(work: Work, graphs: dict[str, Path]) -> dict[str, Path | Graph]:
    """The TensorRT-ready graph at the engine's precision, validated; {tensorrt-PREC: graph} for the task check
    (an fp32 engine's graph is the fp32 graph, already checked)."""
    options, prof = work.profile.tensorrt, work.profile
    assert options is not None
    target = graph_path(work)
    if options.precision == "fp32":
        return {}
    if options.precision == "fp16":
        quantize.to_fp16(work.raw_graph, target)
    else:
        quantize.quantize_static(work.source, work.raw_graph, target, replace(prof.quantization, mode="static"),
                                 prof.calibration, calibration_texts(work), prof.shapes.sequence.opt, symmetric=True)
    work.record["tensorrt_graph"] = check(work, target, options.precision)
    return {f"tensorrt-{options.precision}": target}


def publish(work: Work, options: dict[str, Any]) -> dict[str, Any]:
    """tensorrt/model.onnx, and model.plan when `options["build_engine"]`; the engine's record goes to
    work.record["engine"] (the manifest's `tensorrt`)."""
    graph = work.root / GRAPH_FILE
    graph.parent.mkdir()
    shutil.copyfile(graph_path(work), graph)
    files = [graph]
    if options.get("build_engine"):
        work.record["engine"] = build_engine(work, graph_path(work))
        files.append(work.root / PLAN_FILE)
    return {"runner": RUNNER, "precision": work.profile.tensorrt.precision, "graph": GRAPH_FILE,  # type: ignore[union-attr]
            "engine": PLAN_FILE if options.get("build_engine") else None, "files": files_of(work.root, files)}


def build_engine(work: Work, graph: Path) -> dict[str, Any]:
    """A strongly typed engine from the TensorRT-ready graph, checked against ONNX Runtime's fp32 graph."""
    prof, src = work.profile, work.source
    assert prof.tensorrt is not None
    plan = work.root / PLAN_FILE
    record = trt_engine.build_engine(graph, plan, prof.tensorrt, prof.trt_shape_ranges, src.inputs, src.max_length)
    record["validation"], record["io"] = engine_check(work, plan)
    return record


def engine_check(work: Work, plan: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Engine vs ONNX Runtime (the fp32 graph) on the reference batches inside the first profile, per output
    with atol/rtol, Polygraphy's way (`polygraphy run model.onnx --trt --onnxrt --atol A --rtol R`); returns the
    figures and the engine's I/O (name → Triton data type) for the Triton config check."""
    from minilm_deploy.runtime.backends.trt_runner import EngineSession  # the runtime's own engine path

    engine = EngineSession(plan.read_bytes(), plan.name)
    session, val = open_session(work.raw_graph), work.profile.validation
    prof = work.profile.trt_shape_ranges[0]
    figures = []
    for feeds in work.batches:
        b, s = feeds["input_ids"].shape
        if prof.batch.min <= b <= prof.batch.max and prof.sequence.min <= s <= prof.sequence.max:
            ours = engine.run(feeds)
            reference = onnx_outputs(session, feeds, work.source.outputs)
            figures.append(compare_tolerance(reference, ours, val.tensorrt_atol, val.tensorrt_rtol))
    worst = [f"{name} max abs diff {f['max_abs_diff']:.3g}" for fig in figures for name, f in fig.items() if not f["passed"]]
    if worst:
        raise MinilmError(f"TensorRT engine does not match ONNX Runtime within atol {val.tensorrt_atol}/rtol "
                          f"{val.tensorrt_rtol}: {'; '.join(worst[:3])}; nothing was written")
    io = {name: TORCH_TO_TRITON[str(dtype).removeprefix("torch.")] for name, dtype in engine.dtypes.items()}
    return {"batches": len(figures), "outputs": figures, "atol": val.tensorrt_atol, "rtol": val.tensorrt_rtol}, io
