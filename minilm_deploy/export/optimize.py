"""ONNX Runtime's transformer graph optimizer, checked and measured.

The optimizer's own statistics are not trusted alone: the fused operators are counted in the
saved graph. With `optimize: auto` the fused graph is kept only when it is faster than the
unfused one on this machine (median of timed runs at the profile's opt shape); the decision and
both timings go into the manifest.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from minilm_deploy.errors import MinilmError
from minilm_deploy.export.reference import ReferenceModel
from minilm_deploy.export.validate import open_session

FUSED_OPS = ("EmbedLayerNormalization", "Attention", "MultiHeadAttention", "SkipLayerNormalization",
             "LayerNormalization", "BiasGelu", "FastGelu", "Gelu", "SkipSimplifiedLayerNormalization")
NOISE_MARGIN = 0.02  # the fused graph must be at least 2% faster: a smaller gap is noise on a busy machine
# Which optimizer model type serves which architecture; unlisted architectures use "bert" (the encoder fusions).
OPTIMIZER_MODEL_TYPE = {"bert": "bert", "mpnet": "bert", "roberta": "bert", "xlm-roberta": "bert", "distilbert": "bert"}


def fused_ops(path: Path) -> dict[str, int]:
    """Counts of the fused (contrib) operators actually present in the graph at `path`."""
    counts = Counter(node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node)
    return {op: counts[op] for op in FUSED_OPS if counts[op]}


def fuse(source: ReferenceModel, src: Path, target: Path) -> dict[str, int]:
    """Write the optimizer's fused graph to `target` (opt_level 0: portable across providers); return what fused."""
    from onnxruntime.transformers import optimizer

    model_type = OPTIMIZER_MODEL_TYPE.get(source.config.model_type, "bert")
    try:
        opt = optimizer.optimize_model(str(src), model_type=model_type, num_heads=source.num_heads,
                                       hidden_size=source.hidden_size, opt_level=0, use_gpu=False)
        opt.save_model_to_file(str(target))
    except Exception as exc:  # the optimizer raises assorted errors on graphs it does not know
        raise MinilmError(f"ONNX Runtime's transformer optimizer failed ({str(exc)[:200]}); export with --set optimize=never") from None
    return fused_ops(target)


def latencies_ms(paths: dict[str, Path], feeds: dict[str, np.ndarray], rounds: int = 15, warmup: int = 3,
                 threads: int = 0) -> dict[str, float]:
    """Median latency of each graph, runs interleaved round by round so a busy machine affects all alike."""
    sessions = {name: open_session(path, threads) for name, path in paths.items()}
    for session in sessions.values():
        for _ in range(warmup):
            session.run(None, feeds)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(None, feeds)
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: float(np.median(t)) for name, t in times.items()}


def timing_feeds(source: ReferenceModel, batch: int, seq: int) -> dict[str, np.ndarray]:
    """A batch at the opt shape: real tokens of a long text, no padding."""
    from minilm_deploy.export.samples import LONG_TEXT

    seq = min(seq, source.max_length)
    enc = source.tokenizer([LONG_TEXT] * batch, truncation=True, max_length=seq, padding="max_length", return_tensors="np")
    return {k: np.asarray(v, dtype=np.int64) for k, v in enc.items() if k in source.inputs}


def candidates(source: ReferenceModel, unfused: Path, fused: Path, mode: str) -> tuple[dict[str, Path], dict[str, Any]]:
    """The graphs to choose from ({"unfused": …, "fused": …} per `mode`) and the fusion record."""
    if mode == "never":
        return {"unfused": unfused}, {"mode": mode, "fusions": {}}
    fusions = fuse(source, unfused, fused)
    record: dict[str, Any] = {"mode": mode, "fusions": fusions}
    if not fusions:
        return {"unfused": unfused}, {**record, "reason": "the optimizer fused nothing in this graph"}
    if mode == "always":
        return {"fused": fused}, record
    return {"unfused": unfused, "fused": fused}, record


def pick(graphs: dict[str, Path], record: dict[str, Any], feeds: dict[str, np.ndarray]) -> tuple[str, dict[str, Any]]:
    """Keep the fastest graph (fused only when it is faster); the timings go into the record."""
    if len(graphs) == 1:
        name = next(iter(graphs))
        return name, {**record, "kept": name}
    timings = latencies_ms(graphs, feeds)
    name = "fused" if timings["fused"] < timings["unfused"] * (1 - NOISE_MARGIN) else "unfused"
    record = {**record, "timing_shape": list(feeds["input_ids"].shape), **{f"{n}_ms": t for n, t in timings.items()}, "kept": name}
    if name == "unfused":
        record["reason"] = f"the fused graph was not at least {NOISE_MARGIN:.0%} faster on this machine"
    return name, record
