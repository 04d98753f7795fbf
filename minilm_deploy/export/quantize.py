"""Precision variants of an fp32 ONNX graph: dynamic or static INT8 (ONNX Runtime quantization), FP16.

- dynamic INT8 (CPU default): weights per channel, activations quantised at run time.
- static INT8: QDQ graph, activation ranges calibrated on the task's texts.
- FP16 (GPU): weights and activations in half precision, with LayerNorm and softmax kept in fp32
  and fp32 inputs/outputs, so callers and the Triton config do not change.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from minilm_deploy.errors import InputError, MinilmError
from minilm_deploy.export.profile import Calibration, Quantization
from minilm_deploy.export.reference import ReferenceModel

FP32_OPS = ["LayerNormalization", "SkipLayerNormalization", "EmbedLayerNormalization",
            "SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization", "Softmax"]


@contextlib.contextmanager
def quiet_root_logger() -> Iterator[None]:
    """ORT's quantizer logs advice through the root logger and prints calibration progress to stdout
    (which must stay clean for `--json`): silence both."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def quantize_dynamic(src: Path, target: Path, options: Quantization, *, float_nodes: Sequence[str] = ()) -> Path:
    """`float_nodes`: node names kept in float besides the roles in `options.float_matmuls`."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    kept = nodes_with_roles(src, options.float_matmuls)
    kept += [n for n in float_nodes if n not in kept]
    with quiet_root_logger():
        ort_quantize_dynamic(str(src), str(target), per_channel=options.per_channel,
                             reduce_range=options.seven_bit_weights(),
                             weight_type=QuantType.QInt8, op_types_to_quantize=options.op_types, nodes_to_exclude=kept,
                             # fused contrib ops (Attention, SkipLayerNormalization) defeat ONNX shape inference
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return target


class TextCalibrationReader:
    """ONNX Runtime's CalibrationDataReader protocol over tokenised texts (`get_next()` → feeds or None).

    Every batch has the same shape (full batches, padded to `seq_len`): the histogram calibrators
    (entropy, percentile) stack the batches' activations and fail on ragged shapes.
    """

    def __init__(self, source: ReferenceModel, texts: Sequence[str], batch_size: int, seq_len: int) -> None:
        usable = len(texts) - len(texts) % batch_size if len(texts) >= batch_size else len(texts)
        self._batches = iter(list(token_batches(source, texts[:usable], batch_size, pad_to=seq_len)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def token_batches(source: ReferenceModel, texts: Sequence[str], batch_size: int, pad_to: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """Tokenised batches: padded to the longest text, or to `pad_to` tokens (truncating longer texts)."""
    length = min(pad_to, source.max_length) if pad_to else source.max_length
    for start in range(0, len(texts), batch_size):
        enc = source.tokenizer(list(texts[start : start + batch_size]), truncation=True, max_length=length,
                               padding="max_length" if pad_to else True, return_tensors="np")
        yield {k: np.asarray(v, dtype=np.int64) for k, v in enc.items() if k in source.inputs}


def nodes_with_roles(path: Path, roles: Sequence[str]) -> list[str]:
    """The names of the MatMuls of `path` whose role (`matmul_roles`) is one of `roles`: what a profile's
    `quantization.float_matmuls` keeps in float (the graph is not read when `roles` is empty). Roles that match
    no MatMul are refused: the profile would otherwise quantise what it asked to keep in float, unnoticed."""
    if not roles:
        return []
    kept = [name for name, role in matmul_roles(path).items() if role in roles]
    if not kept:
        raise InputError(f"quantization.float_matmuls {list(roles)}: no MatMul of {path.name} has these roles; "
                         "leave float_matmuls empty for this model")
    return kept


GELU_OPS = ("Erf", "Gelu", "FastGelu", "BiasGelu", "Tanh")  # what a GELU exports as (exact, fused, tanh approximation)


def matmul_roles(path: Path) -> dict[str, str]:
    """Each MatMul of a transformer graph by its role, read from the graph's structure (unfused or fused by
    ONNX Runtime): `attention-product` (activation x activation: scores and their weighted sum), `ffn-up` (its
    output reaches a GELU), `ffn-out` (its input is the GELU's output), else `projection` (Q/K/V, attention
    output)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    constant = {t.name for t in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    producer = {o: n.op_type for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def feeds_gelu(tensor: str, hops: int = 3) -> bool:
        """Whether `tensor` reaches a GELU op within `hops` nodes (MatMul → bias Add → Div → Erf)."""
        return any(n.op_type in GELU_OPS or (hops > 1 and any(feeds_gelu(o, hops - 1) for o in n.output))
                   for n in consumers.get(tensor, []))

    roles = {}
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        activations = [i for i in node.input if i not in constant]
        if len(activations) > 1:
            roles[node.name] = "attention-product"
        elif any(producer.get(i) in ("Mul", *GELU_OPS) for i in activations):
            roles[node.name] = "ffn-out"
        elif feeds_gelu(node.output[0]):
            roles[node.name] = "ffn-up"
        else:
            roles[node.name] = "projection"
    return roles


TENSORRT_FLOAT_ROLES = ("attention-product", "ffn-up", "ffn-out")


def tensorrt_exclusions(path: Path) -> list[str]:
    """MatMuls left in float in a TensorRT Q/DQ graph (all the others get per-channel INT8 weights and a
    per-tensor INT8 input): activation x activation products (attention scores and their weighted sum:
    softmax probabilities do not survive one per-tensor scale), and both FFN projections: the up projection,
    whose input is the attention block's LayerNorm output with a few outlier channels, and the output
    projection, whose input is the GELU's. Found by leaving one group float at a time on all-MiniLM-L6-v2
    (symmetric, 256 rotten-tomatoes texts, percentile calibration; worst token cosine to PyTorch): every
    MatMul quantised 0.49; attention products and FFN output float 0.945; also the attention output
    projection 0.924, the Q/K/V projections 0.951, the first layer 0.931, the last layer 0.951, the FFN up
    projection 0.989 (`bench/trt_graphs.py` has the figures of what is kept)."""
    return [name for name, role in matmul_roles(path).items() if role in TENSORRT_FLOAT_ROLES]


def quantize_static(source: ReferenceModel, src: Path, target: Path, options: Quantization, calibration: Calibration,
                    texts: Sequence[str], seq_len: int, *, symmetric: bool = False) -> Path:
    """A QDQ graph; `symmetric`: signed INT8 activations and weights with zero points 0, as TensorRT's explicit
    quantisation takes them (ONNX Runtime's CPU default is unsigned, asymmetric activations)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    if not texts:
        raise InputError("static INT8 needs calibration texts: give --task T or calibration.task in the profile")
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[calibration.method]
    reader = TextCalibrationReader(source, texts[: calibration.samples], calibration.batch_size, seq_len)
    try:
        with quiet_root_logger():
            extra: dict[str, Any] = {"DefaultTensorType": onnx.TensorProto.FLOAT}
            if symmetric:
                # TensorRT dequantises INT8 only: biases stay float (no int32 bias Q/DQ)
                extra |= {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
            ort_quantize_static(str(src), str(target), reader, quant_format=QuantFormat.QDQ, per_channel=options.per_channel,
                                reduce_range=not symmetric and options.seven_bit_weights(),  # GPUs: no saturation
                                activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                                weight_type=QuantType.QInt8, calibrate_method=method, op_types_to_quantize=["MatMul", "Gemm"],
                                nodes_to_exclude=tensorrt_exclusions(src) if symmetric else [], extra_options=extra)
    except Exception as exc:  # calibration raises assorted errors on unusual graphs
        raise MinilmError(f"static INT8 calibration failed ({str(exc)[:200]}); use quantization.mode: dynamic") from None
    return target


def to_fp16(src: Path, target: Path) -> Path:
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(src))
    blocked = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(FP32_OPS))  # ORT's list: ops without fp16 kernels
    half = convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked)
    onnx.save(half, str(target))
    return target
