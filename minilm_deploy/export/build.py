"""`export_model`: a model folder → a validated artifact directory, written atomically.

Order of work, all inside a temporary directory that is renamed into place only at the end:
export fp32 → validate against PyTorch → fuse with ONNX Runtime's optimizer → validate → the
profile's precision (int8 / fp16) from the unfused and the fused graph → keep the faster (the
fused one only if it is faster) → validate → task check → tokenizer, config, Triton repository
(parsed with Triton's schema) → TensorRT engine when asked and possible → manifest with the
sha256 of every file.
If `--trt` was asked where TensorRT cannot run, the ONNX artifact is completed first and the
error comes after, in one line.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from minilm_deploy.config import to_dict
from minilm_deploy.errors import InputError, MinilmError
from minilm_deploy.export import manifest as mf
from minilm_deploy.export import openvino, optimize, quantize, tensorrt, triton
from minilm_deploy.export.onnx_export import export_onnx, graph_opset
from minilm_deploy.export.profile import DimRange, ExportProfile, ShapeProfile
from minilm_deploy.export.source import SourceModel, load_source
from minilm_deploy.export.taskcheck import task_check
from minilm_deploy.export.validate import Graph, reference_batches, torch_outputs, validate_outputs
from minilm_deploy.paths import atomic_directory


@dataclass
class Work:
    """What one export carries between its steps."""

    source: SourceModel
    profile: ExportProfile
    root: Path  # the temporary artifact directory
    name: str  # the artifact's final folder name (names the Triton model)
    task: Any = None  # TaskData or None
    raw: Path | None = None  # the exporter's unfused fp32 graph (TensorRT builds from it)
    batches: list = field(default_factory=list)
    references: list = field(default_factory=list)
    variants: dict[str, Path] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def scratch(self) -> Path:
        return self.root / ".work"


def default_output(model_path: Path, profile: ExportProfile) -> Path:
    return Path("artifacts") / f"{model_path.name}-{profile.name}"


def export_model(model: str | Path, profile: ExportProfile, *, output: Path | None = None, task: str | None = None,
                 overwrite: bool = False) -> dict[str, Any]:
    """Export `model` (folder, hub id or zoo:NAME) per `profile`; returns a summary (also in manifest.json)."""
    from minilm_deploy.sources import load_task, resolve_model

    path = resolve_model(model)
    output = Path(output) if output else default_output(path, profile)
    if output.exists() and not overwrite:
        raise InputError(f"{output} already exists; choose another --output or pass --overwrite")
    source = load_source(path, max_length=profile.max_length)
    profile = fit_trt_profiles(profile, source.max_length)
    task_spec = task or profile.calibration.task
    task_data = load_task(task_spec) if task_spec else None
    if profile.backend == "openvino" and (why := openvino.missing()):
        raise InputError(why)
    trt_reason = tensorrt.unavailable_reason() if profile.tensorrt else None
    with atomic_directory(output, overwrite=overwrite) as root:
        work = Work(source, profile, root, output.name, task_data)
        summary = build_artifact(work, build_engine=profile.tensorrt is not None and trt_reason is None)
    summary["output"] = str(output)
    if trt_reason:
        raise MinilmError(f"--trt: {trt_reason}; the ONNX artifact at {output} is complete and valid, "
                          "build the engine on a GPU machine with `minilm export MODEL --trt`")
    return summary


def fit_trt_profiles(profile: ExportProfile, max_length: int) -> ExportProfile:
    """Check the TensorRT profiles before any work: explicit ones must fit max_length; ones derived from `shapes` are clamped."""
    if profile.tensorrt is None:
        return profile
    if not profile.tensorrt.profiles:
        seq = profile.shapes.sequence
        top = min(seq.max, max_length)
        fitted = ShapeProfile(profile.shapes.batch, DimRange(min(seq.min, top), min(seq.opt, top), top))
        profile = replace(profile, tensorrt=replace(profile.tensorrt, profiles=(fitted,)))
    for shape in profile.trt_profiles:
        tensorrt.profile_shapes(shape, ("input_ids",), max_length)
    return profile


def build_artifact(work: Work, *, build_engine: bool) -> dict[str, Any]:
    work.scratch.mkdir()
    final = make_variant(work, export_and_check(work))
    graph = trt_graph(work) if work.profile.tensorrt is not None else None
    checked = dict(work.variants)
    if graph is not None and graph != work.raw:
        checked[f"tensorrt-{work.profile.tensorrt.precision}"] = graph  # the engine's graph: task-checked like the rest
    if work.task is None and work.source.task != "embedding" and len(checked) > 1:
        work.record["task_check"] = {"skipped": "no task given: the lower-precision logits' accuracy change "
                                     "is unchecked; export with --task T to check it"}
    if work.task is not None:
        tolerances = {name: work.profile.validation.for_precision(name.removeprefix("tensorrt-")) for name in checked}
        work.record["task_check"] = task_check(work.source, work.task, checked, tolerances,
                                               limit=work.profile.validation.task_samples)
    shutil.copyfile(final, work.root / "model.onnx")
    if graph is not None:
        (work.root / TRT_GRAPH).parent.mkdir()
        shutil.copyfile(graph, work.root / TRT_GRAPH)
    if "openvino" in work.record:
        shutil.copytree(work.scratch / openvino.IR_DIR, work.root / openvino.IR_DIR)
    write_model_files(work)
    engine = build_trt(work, graph) if build_engine and graph is not None else None
    write_triton(work, engine)
    work.record["sizes"] = {name: _size(variant) for name, variant in work.variants.items()}
    shutil.rmtree(work.scratch)
    manifest = make_manifest(work, engine)
    mf.write_manifest(work.root, manifest)
    publish_permissions(work.root)
    return {"task": manifest.task, "precision": manifest.precision, "validation": manifest.validation,
            "openvino": manifest.openvino,
            "optimization": manifest.optimization, "variants": manifest.variants, "triton_model": manifest.triton_model,
            "tensorrt": to_dict(manifest.tensorrt)}


def _size(variant: Path | Graph) -> int:
    """Bytes on disk: the ONNX file, or an OpenVINO IR's .xml and .bin."""
    if isinstance(variant, Graph):
        return sum(p.stat().st_size for p in variant.path.parent.glob(f"{variant.path.stem}.*"))
    return variant.stat().st_size


def publish_permissions(root: Path) -> None:
    """The temporary directory and files are private (0700/0600); an artifact is read by servers: a+rX, per umask."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [root, *root.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def export_and_check(work: Work) -> dict[str, Path]:
    """Export fp32, validate it, fuse (per `optimize`) and validate the fused graph; returns the candidate graphs."""
    src, prof, scratch = work.source, work.profile, work.scratch
    work.raw = export_onnx(src, scratch / "raw.onnx", opset=prof.opset, exporter=prof.exporter)
    work.batches = reference_batches(src)
    work.references = [torch_outputs(src, b) for b in work.batches]
    work.record["opset"] = graph_opset(work.raw)
    work.record["raw"] = check(work, work.raw, "fp32")
    mode = "never" if prof.backend == "openvino" else prof.optimize  # OpenVINO reads standard ops and fuses itself
    graphs, work.record["optimization"] = optimize.candidates(src, work.raw, scratch / "fused.onnx", mode)
    if "fused" in graphs:
        work.record["fused"] = check(work, graphs["fused"], "fp32")
    return graphs


def check(work: Work, path: Path | Graph, precision: str) -> dict[str, Any]:
    tolerance = work.profile.validation.for_precision(precision)
    return validate_outputs(work.source, path, tolerance, precision=precision, batches=work.batches, references=work.references)


def make_variant(work: Work, graphs: dict[str, Path]) -> Path:
    """The profile's precision from each candidate graph; the fastest is kept (fused only if faster) and validated."""
    if work.profile.backend == "openvino":
        return make_openvino(work)
    prec = work.profile.precision
    if prec == "fp16" or (prec == "int8" and work.profile.quantization.mode == "static"):
        # fp16 conversion and QDQ calibration work on standard ops only (not ORT's fused contrib ops);
        # from the unfused graph, LayerNorm and Softmax nodes stay fp32, and ORT fuses at session load
        graphs = {"unfused": work.raw}
    made = {name: convert(work, path, prec, work.scratch / f"{name}.{prec}.onnx") for name, path in graphs.items()}
    feeds = optimize.timing_feeds(work.source, 1, work.profile.shapes.sequence.opt)
    kept, work.record["optimization"] = optimize.pick(made, work.record["optimization"], feeds)
    if prec != "fp32":
        work.record[prec] = check(work, made[kept], prec)
    work.variants = {"fp32": graphs[kept], prec: made[kept]}
    return made[kept]


def make_openvino(work: Work) -> Path:
    """backend openvino: the IR at the profile's precision from the fp32 graph, validated through OpenVINO;
    model.onnx stays the fp32 graph (what ONNX Runtime and Triton load)."""
    from minilm_deploy.runtime.backends.openvino_runner import inference_precision

    prec, setting = work.profile.precision, work.profile.openvino.inference_precision
    work.record["optimization"] = {**work.record["optimization"], "kept": "unfused",
                                   "reason": "backend openvino: OpenVINO compiles the standard-ops graph and fuses it itself"}
    target = work.scratch / openvino.IR_DIR / openvino.IR_FILE
    options = work.profile.openvino
    built = openvino.build_ir(work.raw, target, prec, calibration_feeds(work) if prec == "int8" else [],
                              smooth_quant=options.smooth_quant, fast_bias_correction=options.fast_bias_correction)
    graph = Graph(target, "openvino", inference_precision(setting))
    figures = check(work, graph, prec)
    work.record["openvino"] = {**built, "model_file": f"{openvino.IR_DIR}/{openvino.IR_FILE}",
                               "inference_precision": setting, "inference_precision_at_export": graph.inference_precision,
                               "validation": figures}
    work.variants = {"fp32": work.raw, prec: graph} if prec != "fp32" else {"fp32": graph}
    return work.raw


def calibration_feeds(work: Work) -> list[dict]:
    """The calibration texts as model feeds, `calibration.batch_size` at a time, padded to the longest."""
    return list(quantize.token_batches(work.source, calibration_texts(work), work.profile.calibration.batch_size))


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


def calibration_texts(work: Work) -> list[str]:
    if work.task is None:
        return []
    cal = work.profile.calibration
    split = work.task.splits.get(cal.split) or next(iter(work.task.splits.values()))
    return [ex.text for ex in split[: cal.samples]]


def write_model_files(work: Work) -> None:
    work.source.tokenizer.save_pretrained(str(work.root / "tokenizer"))
    shutil.copyfile(work.source.path / "config.json", work.root / "config.json")


TRT_GRAPH = "tensorrt/model.onnx"  # in the artifact: the graph whose own types are the engine's precision


def trt_graph(work: Work) -> Path:
    """The TensorRT-ready graph, made and validated on the CPU (ONNX Runtime) before any engine is built:
    fp32 as exported; FP16 with LayerNorm and Softmax kept in fp32; INT8 as symmetric Q/DQ on the MatMuls,
    calibrated on the task's training texts. TensorRT parses standard ops only: always from the unfused graph."""
    options, prof = work.profile.tensorrt, work.profile
    assert options is not None
    target = work.scratch / f"trt.{options.precision}.onnx"
    if options.precision == "fp32":
        return work.raw
    if options.precision == "fp16":
        quantize.to_fp16(work.raw, target)
    else:
        quantize.quantize_static(work.source, work.raw, target, replace(prof.quantization, mode="static"),
                                 prof.calibration, calibration_texts(work), prof.shapes.sequence.opt, symmetric=True)
    work.record["tensorrt_graph"] = check(work, target, options.precision)
    return target


def build_trt(work: Work, graph: Path) -> dict[str, Any]:
    """A strongly typed engine from the TensorRT-ready graph (its precision is the graph's own)."""
    prof, src = work.profile, work.source
    plan = work.root / "model.plan"
    record = tensorrt.build_engine(graph, plan, prof.tensorrt, prof.trt_profiles, src.inputs, src.max_length)
    record["validation"] = engine_check(work, plan)
    return record


def engine_check(work: Work, plan: Path) -> dict[str, Any]:
    """Engine vs ONNX Runtime on the reference batches inside the first profile, per output (atol/rtol)."""
    import tensorrt as trt

    from minilm_deploy.export.validate import onnx_outputs, open_session

    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan.read_bytes())
    session, val = open_session(work.raw), work.profile.validation
    prof = work.profile.trt_profiles[0]
    figures = []
    for feeds in work.batches:
        b, s = feeds["input_ids"].shape
        if prof.batch.min <= b <= prof.batch.max and prof.sequence.min <= s <= prof.sequence.max:
            ours = tensorrt.run_engine(engine, feeds)
            figures.append(tensorrt.compare_outputs(ours, onnx_outputs(session, feeds, work.source.outputs), val.tensorrt_atol, val.tensorrt_rtol))
    if not all(f["passed"] for fig in figures for f in fig.values()):
        raise MinilmError(f"TensorRT engine does not match ONNX Runtime within atol {val.tensorrt_atol}/rtol {val.tensorrt_rtol}: {figures}")
    return {"batches": len(figures), "outputs": figures, "atol": val.tensorrt_atol, "rtol": val.tensorrt_rtol}


def write_triton(work: Work, engine: dict[str, Any] | None) -> None:
    prof = work.profile
    name = triton.model_name(prof.triton.model_name or work.name)
    kind = "plan" if engine else "onnx"
    model_file = work.root / ("model.plan" if engine else "model.onnx")
    max_batch = min(p.batch.max for p in prof.trt_profiles) if engine else prof.shapes.batch.max
    folder = triton.write_repository(work.root / "triton", name, kind, model_file, work.root / "model.onnx",
                                     max_batch_size=max_batch, max_queue_delay_us=prof.triton.max_queue_delay_us,
                                     instance_count=prof.triton.instance_count)
    try:
        work.record["triton"] = {**triton.check_repository(folder, work.root / "model.onnx"), "checked": True}
    except MinilmError as exc:
        if "tritonclient" not in str(exc):
            raise
        work.record["triton"] = {"name": name, "checked": False, "reason": str(exc)}


def make_manifest(work: Work, engine: dict[str, Any] | None) -> mf.ArtifactManifest:
    src, prof, rec = work.source, work.profile, work.record
    validation = {k: rec[k] for k in ("raw", "fused", "fp16", "int8", "task_check", "triton", "tensorrt_graph") if k in rec}
    if "openvino" in rec:
        validation["openvino"] = rec["openvino"]["validation"]
    kept_fp32 = rec["fused"] if rec["optimization"]["kept"] == "fused" else rec["raw"]
    def outputs(name: str) -> dict[str, Any]:
        if "openvino" in rec and name == prof.precision:  # the IR: its own check through OpenVINO
            return rec["openvino"]["validation"]["outputs"]
        return (rec[name] if name != "fp32" else kept_fp32)["outputs"]

    variants = {name: {"bytes": rec["sizes"][name], "outputs": outputs(name)} for name in work.variants}
    trt_info = mf.TensorRTInfo(**engine) if engine else None
    return mf.ArtifactManifest(
        task=src.task, model_file="model.onnx", inputs=list(src.inputs), outputs=list(src.outputs),
        max_length=src.max_length, precision="fp32" if prof.backend == "openvino" else prof.precision, opset=rec["opset"],
        source=mf.SourceInfo(path=str(src.path.resolve()), sha256=src.weights_sha256),
        files=mf.hash_tree(work.root), label_names=list(src.label_names), hidden_size=src.hidden_size,
        profile=to_dict(prof), validation=validation, optimization=rec["optimization"], variants=variants,
        versions=mf.library_versions(), triton_model=rec["triton"]["name"], tensorrt=trt_info,
        openvino={k: v for k, v in rec["openvino"].items() if k != "validation"} if "openvino" in rec else None,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
