"""The OpenVINO export backend: an IR (`openvino/model.xml` + `model.bin`) beside `model.onnx`.

From the unfused fp32 graph (OpenVINO compiles standard ONNX ops; it cannot read ONNX Runtime's
fused contrib ops): `fp32` converts it as it is; `int8` quantises it with NNCF's post-training
quantisation (transformer model type, the mixed preset: symmetric weights, asymmetric activations;
SmoothQuant as the profile says, off by default), calibrated on the task's training texts. Either is validated against PyTorch like
every export before it is kept. The inference precision (f32, or bf16 where the CPU has AMX or
AVX512-BF16) is a compile-time hint, recorded in the manifest and applied when the IR is loaded.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import numpy as np

from minilm_deploy.errors import InputError

IR_DIR = "openvino"
IR_FILE = "model.xml"
Feeds = dict[str, np.ndarray]


def missing() -> str | None:
    """Why the OpenVINO backend cannot export here (None when it can)."""
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401
    except ImportError:
        return 'the openvino backend needs OpenVINO and NNCF: pip install -e ".[openvino]"'
    return None


def build_ir(fp32_onnx: Path, target: Path, precision: str, calibration: list[Feeds], *, smooth_quant: bool = False,
             fast_bias_correction: bool = True) -> dict[str, Any]:
    """Write the IR of `fp32_onnx` at `precision` (fp32 | int8) to `target` (…/model.xml); returns its record."""
    import openvino as ov

    model = ov.Core().read_model(str(fp32_onnx))
    record: dict[str, Any] = {"precision": precision, "openvino": ov.__version__}
    if precision == "int8":
        if not calibration:
            raise InputError("OpenVINO INT8 is calibrated on the task's training texts: export with --task T "
                             "(or set calibration.task in the profile)")
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

        advanced = None if smooth_quant else AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1))  # -1: SmoothQuant off
        with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: stdout is for --json
            model = nncf.quantize(model, nncf.Dataset(calibration), preset=nncf.QuantizationPreset.MIXED,
                                  model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calibration),
                                  fast_bias_correction=fast_bias_correction, advanced_parameters=advanced)
        record["nncf"] = {"version": nncf.__version__, "preset": "mixed", "model_type": "transformer",
                          "smooth_quant": smooth_quant, "fast_bias_correction": fast_bias_correction,
                          "calibration_batches": len(calibration)}
    elif precision != "fp32":
        raise InputError(f"the openvino backend writes fp32 or int8 IRs, not {precision}; for bf16 inference set "
                         "openvino.inference_precision: bf16 with precision: fp32")
    target.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(target), compress_to_fp16=False)
    return record
