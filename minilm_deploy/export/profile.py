"""Export profiles (`exporters/*.yaml`) and the `export:` section of a recipe (owned by export).

A profile is plain data: what precision the artifact's `model.onnx` has, how it is exported,
the shapes it must serve, how it is calibrated and validated, and (optionally) how a TensorRT
engine is built. Loading is strict (`config.from_dict`): an unknown key, a wrong type or a
shape range whose min/opt/max are out of order is a one-line `InputError`.

    name: onnx-cpu-int8
    backend: onnxruntime       # or openvino: model.onnx (fp32) + openvino/model.xml at `precision`
    precision: int8            # model.onnx: fp32 | int8 | fp16
    quantization: {mode: dynamic, per_channel: true}
    shapes: {batch: {min: 1, opt: 8, max: 32}, sequence: {min: 1, opt: 128, max: 256}}
    tensorrt: {precision: fp16, optimization_level: 3}   # present: build model.plan too
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Literal

from minilm_deploy import hardware
from minilm_deploy.config import from_dict, load_yaml

Precision = Literal["fp32", "int8", "fp16"]
PROFILE_DIR = Path(__file__).resolve().parents[2] / "exporters"  # the repository's exporters/ folder


@dataclass(frozen=True)
class DimRange:
    """One dynamic dimension's range, as TensorRT optimisation profiles take it: min <= opt <= max."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise ValueError(f"min/opt/max must satisfy 1 <= min <= opt <= max, got {self.min}/{self.opt}/{self.max}")


@dataclass(frozen=True)
class ShapeRanges:
    """Batch and sequence ranges: one TensorRT optimisation profile; the first also sizes Triton's batch."""

    batch: DimRange = DimRange(1, 8, 32)
    sequence: DimRange = DimRange(1, 128, 256)


@dataclass(frozen=True)
class Quantization:
    mode: Literal["dynamic", "static"] = "dynamic"  # static needs calibration data
    per_channel: bool = True  # per-tensor lost accuracy on all-MiniLM-L6-v2 (min cosine 0.86 vs 0.97)
    # 7-bit weights, so that INT8 products cannot saturate on x86 CPUs without VNNI or AMX (see
    # hardware.int8_saturates); auto: where the exporting CPU is such a CPU. ORT's reduce_range; for the openvino
    # backend NNCF's overflow fix on every MatMul (else NNCF's default: the first layer only). Not for TensorRT.
    reduce_range: bool | Literal["auto"] = "auto"
    # also quantise the embedding tables: all-MiniLM-L6-v2 56 → 22 MiB; worst-case cosine 0.966 → 0.948 on the
    # validation batches (a 256-token text, a one-word text), 0.982 → 0.981 on 256 rotten-tomatoes sentences
    embeddings: bool = False
    # MatMul roles kept in float (quantize.matmul_roles: ffn-up, ffn-out, projection, attention-product), by ONNX
    # Runtime and by the openvino backend (NNCF's ignored scope): all-MiniLM-L6-v2 ORT dynamic INT8 worst cosine 0.962
    # with every MatMul quantised, 0.993 with [ffn-up, ffn-out] in float; all-mpnet-base-v2's fine-tuned 6x768 copy
    # in NNCF INT8 on AMX agreed with PyTorch on 94.7% of rotten-tomatoes dev, 98.5% with [ffn-out] in float
    float_matmuls: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        roles = {"ffn-up", "ffn-out", "projection", "attention-product"}
        if set(self.float_matmuls) - roles:
            raise ValueError(f"quantization.float_matmuls: {sorted(set(self.float_matmuls) - roles)} unknown; "
                             f"choose from {sorted(roles)}")

    def seven_bit_weights(self) -> bool:
        """`reduce_range` resolved for a CPU backend on this machine."""
        return hardware.int8_saturates() if self.reduce_range == "auto" else self.reduce_range

    @property
    def op_types(self) -> list[str]:
        return ["MatMul", "Attention"] + (["Gather", "EmbedLayerNormalization"] if self.embeddings else [])


@dataclass(frozen=True)
class Calibration:
    """Data for static INT8 and TensorRT INT8: the task's texts (default: the `--task` of the export)."""

    task: str = ""
    split: str = "train"
    samples: int = 256
    batch_size: int = 16
    method: Literal["minmax", "entropy", "percentile"] = "minmax"

    def __post_init__(self) -> None:
        if self.samples < 1 or self.batch_size < 1:
            raise ValueError("samples and batch_size must be at least 1")


@dataclass(frozen=True)
class Tolerance:
    """Gates for one precision; a gate left null is not applied (its figure is still reported)."""

    atol: float | None = None  # max absolute difference per output
    min_cosine: float | None = None  # worst per-example cosine similarity per output
    min_agreement: float | None = None  # task check: share of predictions equal to PyTorch's
    max_accuracy_drop: float | None = None  # task check: PyTorch's accuracy minus this variant's


@dataclass(frozen=True)
class Validation:
    fp32: Tolerance = Tolerance(atol=1e-4, min_agreement=0.995)
    fp16: Tolerance = Tolerance(min_cosine=0.999, min_agreement=0.99, max_accuracy_drop=0.005)
    # an fp32 model file computed in bf16 (OpenVINO's inference-precision hint on AMX / AVX512-BF16 CPUs):
    # 8 mantissa bits, so an absolute gate cannot hold (3e-4 on a tiny BERT, 1e-2 on mpnet's logits)
    bf16: Tolerance = Tolerance(min_cosine=0.999, min_agreement=0.99, max_accuracy_drop=0.005)
    # int8 agreement is low on weakly trained heads (near-tied logits flip): 96% on rotten-tomatoes with a
    # linear probe whose accuracy moved 0.4 points; the accuracy gate is the one that matters
    int8: Tolerance = Tolerance(min_cosine=0.95, min_agreement=0.95, max_accuracy_drop=0.01)
    task_samples: int = 2000  # the task check reads at most this many examples of the eval split
    tensorrt_atol: float = 1e-2  # engine vs ONNX Runtime, Polygraphy-style: |a-b| <= atol + rtol*|b|
    tensorrt_rtol: float = 1e-2

    def for_precision(self, precision: str, computed_in: str = "f32") -> Tolerance:
        """The gates for a model file at `precision` (fp32 | fp16 | int8) that runs at `computed_in` (f32 | bf16:
        OpenVINO's inference precision); an fp32 file computed in bf16 is held to the bf16 gates."""
        return self.bf16 if precision == "fp32" and computed_in == "bf16" else getattr(self, precision)


@dataclass(frozen=True)
class TensorRTOptions:
    """A `tensorrt:` section builds `model.plan` from the fp32 ONNX (needs an NVIDIA GPU)."""

    RENAMED: ClassVar[dict[str, str]] = {"profiles": "shape_ranges"}  # the old name works for one release
    precision: Precision = "fp16"
    shape_ranges: tuple[ShapeRanges, ...] = ()  # TensorRT's optimisation profiles, one per entry; empty: `shapes`
    optimization_level: int = 3  # builder optimisation level, 0..5
    workspace_mb: int = 4096
    timing_cache: str = ""  # empty: <cache>/tensorrt/timing.cache, shared across builds

    def __post_init__(self) -> None:
        if not 0 <= self.optimization_level <= 5:
            raise ValueError(f"optimization_level must be 0..5, got {self.optimization_level}")
        if self.workspace_mb < 1:
            raise ValueError("workspace_mb must be at least 1")


@dataclass(frozen=True)
class TritonOptions:
    model_name: str = ""  # empty: from the artifact folder's name
    max_queue_delay_us: int = 100
    instance_count: int = 1


@dataclass(frozen=True)
class OpenVinoOptions:
    """`backend: openvino`: how the IR is compiled when it is loaded."""

    inference_precision: Literal["auto", "f32", "bf16"] = "auto"  # auto: bf16 where the CPU has AMX/AVX512-BF16
    # INT8 (NNCF): SmoothQuant off by default: on all-MiniLM-L6-v2 (256 rotten-tomatoes calibration texts) the
    # worst token cosine to PyTorch was 0.948 with NNCF's transformer default (SmoothQuant on), 0.962 without
    smooth_quant: bool = False
    fast_bias_correction: bool = True  # False: full bias correction (0.963 there; slower calibration)


@dataclass(frozen=True)
class ExportProfile:
    name: str = "onnx-cpu-fp32"
    # onnxruntime: model.onnx holds `precision`; openvino: model.onnx is the fp32 graph and
    # openvino/model.xml the IR at `precision` (fp32 or int8, NNCF-calibrated)
    backend: Literal["onnxruntime", "openvino"] = "onnxruntime"
    precision: Precision = "fp32"  # of the backend's model file
    exporter: Literal["legacy", "dynamo"] = "legacy"  # legacy + eager attention: ORT fuses attention
    opset: int = 17
    max_length: int = 0  # 0: the model's position limit (and its tokenizer's, if lower)
    optimize: Literal["auto", "always", "never"] = "auto"  # auto: keep the fused graph only if faster
    shapes: ShapeRanges = ShapeRanges()
    quantization: Quantization = Quantization()
    calibration: Calibration = Calibration()
    validation: Validation = Validation()
    tensorrt: TensorRTOptions | None = None
    triton: TritonOptions = field(default_factory=TritonOptions)
    openvino: OpenVinoOptions = OpenVinoOptions()

    def __post_init__(self) -> None:
        if self.backend == "openvino" and self.precision == "fp16":
            raise ValueError("backend openvino: precision fp32 or int8 (for bf16 inference: openvino.inference_precision)")
        if not 14 <= self.opset <= 21:
            raise ValueError(f"opset must be 14..21, got {self.opset}")
        if self.max_length < 0:
            raise ValueError(f"max_length must be >= 0 (0: the model's limit), got {self.max_length}")

    @property
    def trt_shape_ranges(self) -> tuple[ShapeRanges, ...]:
        if self.tensorrt is None:
            return ()
        return self.tensorrt.shape_ranges or (self.shapes,)


def load_profile(path: str | Path) -> ExportProfile:
    """A profile file, or a bare name from the repository's `exporters/` folder (`onnx-cpu-int8`)."""
    path = Path(path)
    if not path.exists() and path.suffix == "" and (PROFILE_DIR / f"{path.name}.yaml").is_file():
        path = PROFILE_DIR / f"{path.name}.yaml"
    data = load_yaml(path)
    data.setdefault("name", path.stem)
    return from_dict(ExportProfile, data, source=path.name)


def decided_here(profile: ExportProfile) -> ExportProfile:
    """The profile with `quantization.reduce_range` as the export applies it on this machine's CPU, so that the
    manifest records what the export did (and the runtime can warn where an artifact's INT8 products may saturate):
    `auto` decided for this CPU where the CPU model file is INT8 (ONNX Runtime's or OpenVINO's), else false (an fp32
    model file has no INT8 weights; a TensorRT INT8 graph never takes 7-bit weights)."""
    seven_bit = profile.precision == "int8" and profile.quantization.seven_bit_weights()
    return replace(profile, quantization=replace(profile.quantization, reduce_range=seven_bit))


def with_overrides(profile: ExportProfile, *, precision: Precision | None = None, trt: bool = False) -> ExportProfile:
    """Apply the CLI's flags: with `--trt`, `--int8/--fp16` choose the engine's precision, else the ONNX's."""
    if trt and profile.tensorrt is None:
        profile = replace(profile, tensorrt=TensorRTOptions())
    if precision is None:
        return profile
    if profile.tensorrt is not None:
        return replace(profile, tensorrt=replace(profile.tensorrt, precision=precision))
    return replace(profile, precision=precision)
