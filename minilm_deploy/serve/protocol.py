"""The Open Inference Protocol (KServe v2) as Triton speaks it: parse infer requests, encode responses.

Pure functions over bytes and dicts, with the binary tensor data extension that `tritonclient` uses
by default: a JSON header of `Inference-Header-Content-Length` bytes, then raw tensors; a BYTES
element is a 4-byte little-endian length followed by its bytes.

Inputs: `text` (BYTES, shape [B] or [B, 1]) and optionally `text_pair` (same shape).
Outputs by task: classification `label` (BYTES [B]) and `scores` (FP32 [B, C]); regression `score`
(FP32 [B]); embedding `sentence_embedding` (FP32 [B, H]).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from minilm_deploy.runtime import Predictions

INPUTS = ("text", "text_pair")
OUTPUTS = {
    "classification": (("label", "BYTES"), ("scores", "FP32")),
    "regression": (("score", "FP32"),),
    "embedding": (("sentence_embedding", "FP32"),),
}


class ProtocolError(ValueError):
    """A malformed request (HTTP 400); the message is one line meant for the client."""


@dataclass
class InferRequest:
    texts: list[str]
    pairs: list[str] | None = None
    id: str | None = None
    outputs: dict[str, bool] = field(default_factory=dict)  # requested name → binary; empty: all
    binary_default: bool = False
    timeout_s: float | None = None  # from parameters.timeout (microseconds, as Triton)


def output_names(task: str) -> list[str]:
    return [name for name, _ in OUTPUTS[task]]


def parse_infer_request(body: bytes, header_length: str | None, max_texts: int) -> InferRequest:
    """Check and decode one infer request; every problem raises `ProtocolError` naming the field."""
    json_part, binary = _split_body(body, header_length)
    try:
        req = json.loads(json_part)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deeply to parse
        raise ProtocolError(f"the request body is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(req, dict) or not isinstance(req.get("inputs"), list):
        raise ProtocolError("expected a JSON object with an 'inputs' list")
    params = _params(req, "request")
    tensors, offset = {}, 0
    for i, tensor in enumerate(req["inputs"]):
        name, values, offset = _decode_input(tensor, i, binary, offset)
        if name in tensors:
            raise ProtocolError(f"input {name!r} is given twice")
        tensors[name] = values
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} bytes of binary data are not claimed by any input")
    if "text" not in tensors:
        raise ProtocolError("missing input 'text' (BYTES, shape [batch])")
    texts, pairs = tensors["text"], tensors.get("text_pair")
    if not texts:
        raise ProtocolError("empty batch: input 'text' has no elements")
    if len(texts) > max_texts:
        raise ProtocolError(f"{len(texts)} texts in one request; at most {max_texts}: split the batch")
    if pairs is not None and len(pairs) != len(texts):
        raise ProtocolError(f"'text_pair' has {len(pairs)} elements but 'text' has {len(texts)}")
    return InferRequest(
        texts=texts, pairs=pairs, id=_request_id(req), outputs=_requested_outputs(req),
        binary_default=bool(params.get("binary_data_output", False)), timeout_s=_timeout(params),
    )


def encode_infer_response(
    model: str, request: InferRequest, preds: Predictions, label_names: tuple[str, ...]
) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers (JSON, or JSON header + binary tensors)."""
    available = _output_tensors(preds)
    unknown = [n for n in request.outputs if n not in available]
    if unknown:
        raise ProtocolError(f"unknown output {unknown[0]!r}; this model has {', '.join(available)}")
    names = list(request.outputs) or list(available)
    out, blobs = [], []
    for name in names:
        datatype, array = available[name]
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if request.outputs.get(name, request.binary_default):
            blob = _to_bytes(datatype, array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            flat = array.reshape(-1).tolist()
            entry["data"] = [b.decode() for b in flat] if datatype == "BYTES" else flat
        out.append(entry)
    header = {"model_name": model, "model_version": "1", "outputs": out}
    if request.id is not None:
        header["id"] = request.id
    text = json.dumps(header).encode()
    if not blobs:
        return text, {"content-type": "application/json"}
    return text + b"".join(blobs), {"content-type": "application/octet-stream", "inference-header-content-length": str(len(text))}


def model_metadata(model: str, task: str, width: int, platform: str) -> dict[str, Any]:
    shapes = {"label": [-1], "scores": [-1, width], "score": [-1], "sentence_embedding": [-1, width]}
    return {
        "name": model, "versions": ["1"], "platform": platform,
        "inputs": [{"name": n, "datatype": "BYTES", "shape": [-1]} for n in INPUTS],
        "outputs": [{"name": n, "datatype": d, "shape": shapes[n]} for n, d in OUTPUTS[task]],
    }


def serialize_bytes(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def deserialize_bytes(blob: bytes) -> list[bytes]:
    items, i = [], 0
    while i < len(blob):
        if i + 4 > len(blob):
            raise ProtocolError("truncated BYTES element in the binary data")
        (n,) = struct.unpack_from("<I", blob, i)
        if i + 4 + n > len(blob):
            raise ProtocolError("a BYTES element is longer than the binary data")
        items.append(blob[i + 4 : i + 4 + n])
        i += 4 + n
    return items


# -- helpers ------------------------------------------------------------------------------------


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        n = int(header_length)
    except ValueError:
        raise ProtocolError("Inference-Header-Content-Length is not an integer") from None
    if not 0 < n <= len(body):
        raise ProtocolError(f"Inference-Header-Content-Length {n} is outside the body of {len(body)} bytes")
    return body[:n], body[n:]


def _params(obj: dict[str, Any], what: str) -> dict[str, Any]:
    params = obj.get("parameters", {})
    if not isinstance(params, dict):
        raise ProtocolError(f"{what} 'parameters' must be an object")
    return params


def _decode_input(tensor: Any, i: int, binary: bytes, offset: int) -> tuple[str, list[str], int]:
    if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
        raise ProtocolError(f"inputs[{i}] must be an object with a 'name'")
    name = tensor["name"]
    if name not in INPUTS:
        raise ProtocolError(f"unknown input {name!r}; this model takes {', '.join(INPUTS)}")
    if tensor.get("datatype") != "BYTES":
        raise ProtocolError(f"input {name!r}: datatype must be BYTES (texts), got {tensor.get('datatype')!r}")
    shape = tensor.get("shape")
    if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise ProtocolError(f"input {name!r}: shape must be a list of non-negative integers")
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise ProtocolError(f"input {name!r}: shape must be [batch] or [batch, 1], got {shape}")
    size = _params(tensor, f"input {name!r}").get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise ProtocolError(f"input {name!r}: binary_data_size {size!r} does not fit the binary data")
        raw, offset = deserialize_bytes(binary[offset : offset + size]), offset + size
    else:
        raw = _flatten(tensor.get("data"), name)
    values = [_as_text(v, name) for v in raw]
    if len(values) != shape[0]:
        raise ProtocolError(f"input {name!r}: shape {shape} does not match its {len(values)} elements")
    return name, values, offset


def _flatten(data: Any, name: str) -> list[Any]:
    if not isinstance(data, list):
        raise ProtocolError(f"input {name!r}: 'data' must be a list of strings")
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item, name) if isinstance(item, list) else [item])
    return flat


def _as_text(value: Any, name: str) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"input {name!r}: an element is not UTF-8 text") from None
    if not isinstance(value, str):
        raise ProtocolError(f"input {name!r}: elements must be strings, got {type(value).__name__}")
    return value


def _request_id(req: dict[str, Any]) -> str | None:
    rid = req.get("id")
    if rid is not None and not isinstance(rid, str):
        raise ProtocolError("'id' must be a string")
    return rid


def _requested_outputs(req: dict[str, Any]) -> dict[str, bool]:
    outputs = req.get("outputs", [])
    if not isinstance(outputs, list):
        raise ProtocolError("'outputs' must be a list")
    wanted = {}
    for i, o in enumerate(outputs):
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise ProtocolError(f"outputs[{i}] must be an object with a 'name'")
        wanted[o["name"]] = bool(_params(o, f"outputs[{i}]").get("binary_data", False))
    return wanted


def _timeout(params: dict[str, Any]) -> float | None:
    value = params.get("timeout")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ProtocolError("parameters.timeout must be a positive integer (microseconds)")
    return value / 1e6


def _output_tensors(preds: Predictions) -> dict[str, tuple[str, np.ndarray]]:
    if preds.task == "classification":
        labels: np.ndarray = np.array([s.encode() for s in preds.label_list], dtype=object)
        return {"label": ("BYTES", labels), "scores": ("FP32", preds.score_array.astype(np.float32))}
    if preds.task == "regression":
        return {"score": ("FP32", preds.score_array.astype(np.float32))}
    return {"sentence_embedding": ("FP32", preds.embedding_array.astype(np.float32))}


def _to_bytes(datatype: str, array: np.ndarray) -> bytes:
    if datatype == "BYTES":
        return serialize_bytes(list(array.reshape(-1)))
    return np.ascontiguousarray(array, dtype="<f4").tobytes()
