"""`export_model`: a model folder → a validated artifact directory, written atomically.

Order of work, all inside a temporary directory that is renamed into place only at the end:
export fp32 → validate against PyTorch → fuse with ONNX Runtime's optimizer (ONNX Runtime backend)
→ validate → the main export backend's model files at the profile's precision, validated through
the runtime that loads them (`export/backends/`: onnxruntime or openvino) → the TensorRT-ready
graph when `--trt` asks for it, validated on the CPU → task check of every variant → tokenizer,
config, each backend's files (and the engine, where TensorRT can run), Triton repository (parsed
with Triton's schema) → manifest with the sha256 of every file.
If `--trt` was asked where TensorRT cannot run, the ONNX artifact is completed first and the
error comes after, in one line.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from minilm_deploy import artifact as mf
from minilm_deploy.config import to_dict
from minilm_deploy.errors import InputError, MinilmError
from minilm_deploy.export import optimize, triton, trt_engine
from minilm_deploy.export.backends import export_backend
from minilm_deploy.export.onnx_export import export_onnx, graph_opset
from minilm_deploy.export.profile import DimRange, ExportProfile, ShapeRanges, decided_here
from minilm_deploy.export.reference import load_reference
from minilm_deploy.export.taskcheck import task_check
from minilm_deploy.export.validate import Graph, reference_batches, torch_outputs
from minilm_deploy.export.work import Work, check, tolerance_for
from minilm_deploy.paths import atomic_directory, check_writable


def backend_names(profile: ExportProfile) -> list[str]:
    """The export backends a profile uses: its main backend, then tensorrt when it has a `tensorrt:` section."""
    return [profile.backend, *(["tensorrt"] if profile.tensorrt is not None else [])]


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
    check_writable(output)
    source = load_reference(path, max_length=profile.max_length)
    profile = decided_here(fit_trt_shape_ranges(fit_shapes(profile, source.max_length), source.max_length))
    task_spec = task or profile.calibration.task
    task_data = load_task(task_spec) if task_spec else None
    if why := export_backend(profile.backend).missing():
        raise InputError(why)
    trt_reason = export_backend("tensorrt").missing() if profile.tensorrt else None
    with atomic_directory(output, overwrite=overwrite) as root:
        work = Work(source, profile, root, output.name, task_data)
        summary = build_artifact(work, build_engine=profile.tensorrt is not None and trt_reason is None)
    summary["output"] = str(output)
    if trt_reason:
        asked = f"profile {profile.name}" if profile.name.startswith("trt-") else "--trt"
        raise MinilmError(f"no TensorRT engine ({asked} asks for one): {trt_reason}; the ONNX artifact at {output}, "
                          "with its TensorRT-ready graph, is complete and valid: build the engine on a GPU machine "
                          f"with `minilm export MODEL {'--trt' if asked == '--trt' else '--profile ' + profile.name}`")
    return summary


def fit_shapes(profile: ExportProfile, max_length: int) -> ExportProfile:
    """The profile's sequence range within the model's position limit (calibration, timing and Triton use it):
    a range past the limit is clamped to it, as the artifact truncates there."""
    seq = profile.shapes.sequence
    if seq.max <= max_length:
        return profile
    top = max_length
    clamped = DimRange(min(seq.min, top), min(seq.opt, top), top)
    return replace(profile, shapes=replace(profile.shapes, sequence=clamped))


def fit_trt_shape_ranges(profile: ExportProfile, max_length: int) -> ExportProfile:
    """Check the TensorRT shape ranges (optimisation profiles) before any work: explicit ones must fit max_length; ones derived from `shapes` are clamped."""
    if profile.tensorrt is None:
        return profile
    if not profile.tensorrt.shape_ranges:
        seq = profile.shapes.sequence
        top = min(seq.max, max_length)
        fitted = ShapeRanges(profile.shapes.batch, DimRange(min(seq.min, top), min(seq.opt, top), top))
        profile = replace(profile, tensorrt=replace(profile.tensorrt, shape_ranges=(fitted,)))
    for shape in profile.trt_shape_ranges:
        trt_engine.profile_shapes(shape, ("input_ids",), max_length)
    return profile


def build_artifact(work: Work, *, build_engine: bool) -> dict[str, Any]:
    work.scratch.mkdir()
    graphs = export_and_check(work)
    names = backend_names(work.profile)
    backends = {name: export_backend(name) for name in names}
    checked = dict(backends[names[0]].build(work, graphs))  # the main backend fills work.variants
    for name in names[1:]:
        checked |= backends[name].build(work, graphs)
    if work.task is None and work.source.task != "embedding" and len(checked) > 1:
        work.record["task_check"] = {"skipped": "no task given: the lower-precision logits' accuracy change "
                                     "is unchecked; export with --task T to check it"}
    if work.task is not None:
        tolerances = {name: tolerance_for(work, name.removeprefix("tensorrt-"), model) for name, model in checked.items()}
        work.record["task_check"] = task_check(work.source, work.task, checked, tolerances,
                                               limit=work.profile.validation.task_samples)
    write_model_files(work)
    options = {"tensorrt": {"build_engine": build_engine}}
    work.record["backends"] = {name: module.publish(work, options.get(name, {})) for name, module in backends.items()}
    engine = work.record.get("engine")
    write_triton(work, engine)
    work.record["sizes"] = {name: _size(variant) for name, variant in work.variants.items()}
    shutil.rmtree(work.scratch)
    manifest = make_manifest(work, engine)
    mf.write_manifest(work.root, manifest)
    publish_permissions(work.root)
    return {"task": manifest.task, "precision": manifest.precision, "validation": manifest.validation,
            "openvino": manifest.openvino, "backends": manifest.backends,
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
    work.record["opset"] = graph_opset(work.raw_graph)
    work.record["raw"] = check(work, work.raw_graph, "fp32")
    mode = prof.optimize if export_backend(prof.backend).FUSES_WITH_ORT else "never"  # OpenVINO fuses the standard ops itself
    graphs, work.record["optimization"] = optimize.candidates(src, work.raw_graph, scratch / "fused.onnx", mode)
    if "fused" in graphs:
        work.record["fused"] = check(work, graphs["fused"], "fp32")
    return graphs


def write_model_files(work: Work) -> None:
    """The tokenizer (its model_max_length set to the artifact's, so plain transformers or onnxruntime users
    truncate where our runtime does) and the model config."""
    tokenizer = work.source.tokenizer
    tokenizer.model_max_length = work.source.max_length
    tokenizer.init_kwargs["model_max_length"] = work.source.max_length
    tokenizer.save_pretrained(str(work.root / "tokenizer"))
    shutil.copyfile(work.source.path / "config.json", work.root / "config.json")


def write_triton(work: Work, engine: dict[str, Any] | None) -> None:
    prof = work.profile
    name = triton.model_name(prof.triton.model_name or work.name)
    kind = "plan" if engine else "onnx"
    model_file = work.root / ("model.plan" if engine else "model.onnx")
    max_batch = min(p.batch.max for p in prof.trt_shape_ranges) if engine else prof.shapes.batch.max
    spec = work.root / (export_backend("tensorrt").GRAPH_FILE if engine else "model.onnx")  # the graph the model file is
    folder = triton.write_repository(work.root / "triton", name, kind, model_file, spec,
                                     max_batch_size=max_batch, max_queue_delay_us=prof.triton.max_queue_delay_us,
                                     instance_count=prof.triton.instance_count)
    try:
        checked = triton.check_repository(folder, spec, engine["io"] if engine else None)
        work.record["triton"] = {**checked, "checked": True}
    except MinilmError as exc:
        if "tritonclient" not in str(exc):
            raise
        work.record["triton"] = {"name": name, "checked": False, "reason": str(exc)}


def make_manifest(work: Work, engine: dict[str, Any] | None) -> mf.ArtifactManifest:
    src, prof, rec = work.source, work.profile, work.record
    validation: dict[str, Any] = {k: rec[k] for k in ("raw", "fused", "fp16", "int8", "task_check", "triton", "tensorrt_graph") if k in rec}
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
        versions=mf.library_versions(), triton_model=rec["triton"]["name"], tensorrt=trt_info, backends=rec["backends"],
        openvino={k: v for k, v in rec["openvino"].items() if k != "validation"} if "openvino" in rec else None,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
