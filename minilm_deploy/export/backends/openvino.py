"""The OpenVINO export backend (`backend: openvino`): an IR (`openvino/model.xml` + `model.bin`) beside `model.onnx`.

From the unfused fp32 graph (OpenVINO compiles standard ONNX ops; it cannot read ONNX Runtime's
fused contrib ops): `fp32` converts it as it is; `int8` quantises it with NNCF's post-training
quantisation (transformer model type, the mixed preset: symmetric weights, asymmetric activations;
SmoothQuant as the profile says, off by default), calibrated on the task's training texts; the MatMul roles in
`quantization.float_matmuls` stay in float (NNCF's ignored scope; bf16 on AMX). Either is validated against PyTorch like
every export before it is kept. The inference precision (f32, or bf16 where the CPU has AMX or
AVX512-BF16) is a compile-time hint, recorded in the manifest and applied when the IR is loaded.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from minilm_deploy.errors import InputError
from minilm_deploy.export.backends import files_of
from minilm_deploy.export.validate import Graph
from minilm_deploy.export.work import Work, calibration_feeds, check

RUNNER = "openvino"
FUSES_WITH_ORT = False  # OpenVINO reads standard ops only and fuses them itself
IR_DIR = "openvino"
IR_FILE = "model.xml"
Feeds = dict[str, np.ndarray]


def missing() -> str | None:
    """Why the OpenVINO backend cannot export here (None when it can): the runtime's check, and NNCF."""
    from minilm_deploy.runtime.backends.openvino_runner import openvino_missing

    if why := openvino_missing():
        return why
    try:
        import nncf  # noqa: F401
    except ImportError:
        return 'NNCF is not installed; install the extra: pip install -e ".[openvino]"'
    return None


def build_ir(fp32_onnx: Path, target: Path, precision: str, calibration: list[Feeds], *, smooth_quant: bool = False,
             fast_bias_correction: bool = True, seven_bit_weights: bool = False,
             float_matmuls: tuple[str, ...] = ()) -> dict[str, Any]:
    """Write the IR of `fp32_onnx` at `precision` (fp32 | int8) to `target` (…/model.xml); returns its record.
    `seven_bit_weights`: NNCF's overflow fix on every MatMul (for CPUs whose INT8 products saturate), else on the
    first layer only (NNCF's default). `float_matmuls`: MatMul roles (`quantize.matmul_roles`) left unquantised."""
    import openvino as ov

    from minilm_deploy.runtime.backends.openvino_core import openvino_core

    model = openvino_core().read_model(str(fp32_onnx))
    record: dict[str, Any] = {"precision": precision, "openvino": ov.__version__}
    if precision == "int8":
        if not calibration:
            raise InputError("OpenVINO INT8 is calibrated on the task's training texts: export with --task T "
                             "(or set calibration.task in the profile)")
        import nncf
        from nncf.quantization.advanced_parameters import (
            AdvancedQuantizationParameters,
            AdvancedSmoothQuantParameters,
            OverflowFix,
        )

        from minilm_deploy.export.quantize import nodes_with_roles

        kept = nodes_with_roles(fp32_onnx, float_matmuls)  # refuses roles that match no MatMul
        scope = {"ignored_scope": nncf.IgnoredScope(names=kept)} if kept else {}  # ONNX node names survive conversion
        overflow_fix = OverflowFix.ENABLE if seven_bit_weights else OverflowFix.FIRST_LAYER
        advanced = AdvancedQuantizationParameters(overflow_fix=overflow_fix, **({} if smooth_quant else {
            "smooth_quant_alphas": AdvancedSmoothQuantParameters(matmul=-1)}))  # -1: SmoothQuant off
        with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: stdout is for --json
            model = nncf.quantize(model, nncf.Dataset(calibration), preset=nncf.QuantizationPreset.MIXED,
                                  model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calibration),
                                  fast_bias_correction=fast_bias_correction, advanced_parameters=advanced, **scope)
        record["nncf"] = {"version": nncf.__version__, "preset": "mixed", "model_type": "transformer",
                          "smooth_quant": smooth_quant, "fast_bias_correction": fast_bias_correction,
                          "overflow_fix": str(overflow_fix.value),
                          "calibration_batches": len(calibration),
                          "float_matmuls": {"roles": list(float_matmuls), "count": len(kept)}}
    elif precision != "fp32":
        raise InputError(f"the openvino backend writes fp32 or int8 IRs, not {precision}; for bf16 inference set "
                         "openvino.inference_precision: bf16 with precision: fp32")
    target.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(target), compress_to_fp16=False)
    return record


def build(work: Work, graphs: dict[str, Path]) -> dict[str, Path | Graph]:
    """The IR at the profile's precision from the unfused fp32 graph, validated through OpenVINO;
    model.onnx stays the fp32 graph (what ONNX Runtime and Triton load)."""
    from minilm_deploy.runtime.backends.openvino_runner import inference_precision

    prec, options = work.profile.precision, work.profile.openvino
    work.record["optimization"] = {**work.record["optimization"], "kept": "unfused",
                                   "reason": "backend openvino: OpenVINO compiles the standard-ops graph and fuses it itself"}
    target = work.scratch / IR_DIR / IR_FILE
    built = build_ir(work.raw_graph, target, prec, calibration_feeds(work) if prec == "int8" else [],
                     smooth_quant=options.smooth_quant, fast_bias_correction=options.fast_bias_correction,
                     seven_bit_weights=work.profile.quantization.seven_bit_weights(),
                     float_matmuls=work.profile.quantization.float_matmuls)
    graph = Graph(target, RUNNER, inference_precision(options.inference_precision))
    figures = check(work, graph, prec)
    work.record["openvino"] = {**built, "model_file": f"{IR_DIR}/{IR_FILE}",
                               "inference_precision": options.inference_precision,
                               "inference_precision_at_export": graph.inference_precision, "validation": figures}
    work.variants = {"fp32": work.raw_graph, prec: graph} if prec != "fp32" else {"fp32": graph}
    return dict(work.variants)


def publish(work: Work, options: dict[str, Any]) -> dict[str, Any]:
    """openvino/model.xml + model.bin, and model.onnx as the fp32 graph."""
    shutil.copytree(work.scratch / IR_DIR, work.root / IR_DIR)
    shutil.copyfile(work.raw_graph, work.root / "model.onnx")
    files = [work.root / "model.onnx", *sorted((work.root / IR_DIR).iterdir())]
    return {"runner": RUNNER, "precision": work.profile.precision, "model_file": f"{IR_DIR}/{IR_FILE}",
            "files": files_of(work.root, files)}
