"""Protocol encoding against tritonclient's own codecs, and the dynamic batcher in isolation."""

from __future__ import annotations

import asyncio
import json
import threading

import numpy as np
import pytest

from minilm_deploy.runtime import Predictions
from minilm_deploy.serve.batcher import DynamicBatcher, QueueFull
from minilm_deploy.serve.config import ServeConfig
from minilm_deploy.serve.protocol import (
    InferRequest,
    ProtocolError,
    deserialize_bytes,
    encode_infer_response,
    parse_infer_request,
    serialize_bytes,
)


def test_binary_request_made_by_tritonclient_is_parsed():
    from tritonclient.utils import serialize_byte_tensor

    texts = ["héllo wörld", "", "a b c"]
    blob = serialize_byte_tensor(np.array([t.encode() for t in texts], dtype=object)).item()
    header = json.dumps({"id": "7", "inputs": [{"name": "text", "datatype": "BYTES", "shape": [3],
                                                "parameters": {"binary_data_size": len(blob)}}],
                         "parameters": {"binary_data_output": True}}).encode()
    req = parse_infer_request(header + blob, str(len(header)), max_texts=8)
    assert req.texts == texts and req.id == "7" and req.binary_default and req.pairs is None
    assert deserialize_bytes(serialize_bytes([b"x", b""])) == [b"x", b""]
    with pytest.raises(ProtocolError, match="not claimed"):
        parse_infer_request(header + blob + b"junk", str(len(header)), max_texts=8)
    with pytest.raises(ProtocolError, match="at most 2"):
        parse_infer_request(header + blob, str(len(header)), max_texts=2)


def test_binary_response_is_read_by_tritonclient():
    from tritonclient.http import InferResult

    preds = Predictions("classification", labels=["pos", "neg"], scores=np.array([[0.1, 0.9], [0.8, 0.2]], np.float32))
    body, headers = encode_infer_response("m", InferRequest(texts=["a", "b"], binary_default=True), preds, ("neg", "pos"))
    result = InferResult.from_response_body(body, header_length=int(headers["inference-header-content-length"]))
    assert list(result.as_numpy("label")) == [b"pos", b"neg"]
    np.testing.assert_array_equal(result.as_numpy("scores"), preds.scores)
    body, headers = encode_infer_response("m", InferRequest(texts=["a", "b"], outputs={"label": False}), preds, ())
    assert "inference-header-content-length" not in headers
    assert json.loads(body)["outputs"] == [{"name": "label", "datatype": "BYTES", "shape": [2], "data": ["pos", "neg"]}]


def test_config_ranges_are_checked():
    with pytest.raises(ValueError, match="max_batch_size"):
        ServeConfig(max_batch_size=0)
    with pytest.raises(ValueError, match="timeout_s"):
        ServeConfig(timeout_s=0)


def test_a_lone_request_does_not_wait_for_company_unless_asked():
    """B arrives 0.2 s after A, inside A's 2 s window: it joins A's batch only when lone requests wait."""

    async def main(eager: bool) -> list[int]:
        calls: list[int] = []
        b = DynamicBatcher(_echo_model(calls), max_batch_size=8, max_delay_s=2.0, max_queue=10, eager_when_idle=eager)
        b.start()
        first = asyncio.ensure_future(b.submit(["a"], None, timeout_s=10))
        await asyncio.sleep(0.2)
        await asyncio.gather(first, b.submit(["b"], None, timeout_s=10))
        await b.stop()
        return calls

    assert asyncio.run(main(True)) == [1, 1]
    assert asyncio.run(main(False)) == [2]


def _echo_model(calls: list[int]):
    """A deterministic stand-in model: embedding = (len(text), len(pair)); records each batch size."""
    lock = threading.Lock()

    def predict(texts, pairs):
        with lock:
            calls.append(len(texts))
        rows = [[len(t), len(p) if pairs else -1] for t, p in zip(texts, pairs or texts, strict=True)]
        return Predictions("embedding", embeddings=np.array(rows, np.float32))

    return predict


def test_batches_are_shared_bounded_and_split_back_per_request():
    calls: list[int] = []

    async def main():
        b = DynamicBatcher(_echo_model(calls), max_batch_size=8, max_delay_s=0.05, max_queue=100)
        b.start()
        reqs = [(["x" * (i + 1)] * (1 + i % 3), ["y" * i] * (1 + i % 3) if i % 4 == 0 else None) for i in range(20)]
        outs = await asyncio.gather(*(b.submit(t, p, timeout_s=10) for t, p in reqs))
        await b.stop()
        return reqs, outs

    reqs, outs = asyncio.run(main())
    for (texts, pairs), out in zip(reqs, outs, strict=True):
        assert out.embeddings.shape == (len(texts), 2)
        assert out.embeddings[:, 0].tolist() == [len(t) for t in texts]
        assert out.embeddings[:, 1].tolist() == ([len(p) for p in pairs] if pairs else [-1] * len(texts))
    assert max(calls) <= 8 and sum(calls) == sum(len(t) for t, _ in reqs)
    assert len(calls) < len(reqs)  # requests shared model calls


def test_full_queue_is_refused_and_timed_out_requests_are_dropped():
    calls: list[int] = []

    async def main():
        b = DynamicBatcher(_echo_model(calls), max_batch_size=64, max_delay_s=0.5, max_queue=2, eager_when_idle=False)
        b.start()
        first = asyncio.ensure_future(b.submit(["a"], None, timeout_s=10))
        await asyncio.sleep(0.05)
        late = asyncio.ensure_future(b.submit(["bb"], None, timeout_s=0.05))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull):
            await b.submit(["c"], None, timeout_s=10)
        with pytest.raises(TimeoutError):
            await late
        out = await first
        await b.stop()
        return out

    out = asyncio.run(main())
    assert out.embeddings[:, 0].tolist() == [1]
    assert calls == [1]  # the timed-out request never reached the model
