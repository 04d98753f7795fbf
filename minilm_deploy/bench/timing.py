"""The timing harness: warm-up, then at least N calls and at least D seconds; percentiles and throughput.

On a GPU the clock is a pair of CUDA events around each call (device time, not launch time);
on CPU it is `time.perf_counter`. Peak memory is the process's resident high-water mark
(`VmHWM`), reset before each model through `/proc/self/clear_refs` where Linux allows it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from minilm_deploy.bench.suite import Timing


def wall_clock(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cuda_clock(fn: Callable[[], Any]) -> float:
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000.0


def clock_for(device: str) -> Callable[[Callable[[], Any]], float]:
    return cuda_clock if device == "cuda" else wall_clock


def measure(fn: Callable[[int], Any], timing: Timing, clock: Callable[[Callable[[], Any]], float] = wall_clock) -> np.ndarray:
    """Seconds per call of `fn(i)` (i = the call's index, for rotating inputs), after the warm-up."""
    for i in range(timing.warmup):
        fn(i)
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < timing.max_iterations and (
        len(samples) < timing.min_iterations or time.perf_counter() - started < timing.min_duration_s
    ):
        i = len(samples)
        samples.append(clock(functools.partial(fn, i)))
    return np.asarray(samples)


class PhaseClock:
    """Seconds spent in each named phase of a loop (a training step's forward, loss, backward, ...), summed
    over the recorded iterations; on CUDA each lap waits for the device first (device time, not launch time)."""

    def __init__(self, device: str = "cpu") -> None:
        self.device, self.parts, self._last = device, dict[str, float](), 0.0

    def start(self) -> None:
        self._sync()
        self._last = time.perf_counter()

    def lap(self, name: str, record: bool = True) -> None:
        """Close the phase `name` (counted only when `record`: warm-up iterations are not)."""
        self._sync()
        now = time.perf_counter()
        if record:
            self.parts[name] = self.parts.get(name, 0.0) + now - self._last
        self._last = now

    def _sync(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()


def cycling(call: Callable[[Any], Any], inputs: list[Any]) -> Callable[[int], Any]:
    """`measure`'s fn(i): `call` on inputs[i % len(inputs)] (one input: the same every time)."""

    def fn(i: int) -> Any:
        return call(inputs[i % len(inputs)])

    return fn


def summarize(seconds: np.ndarray, items_per_call: float, tokens_per_call: float) -> dict[str, Any]:
    """p50/p90/p99/mean/min in ms; throughput in sequences/s and tokens/s (over the summed call time)."""
    ms = seconds * 1000.0
    total = float(seconds.sum())
    return {
        "iterations": int(seconds.size),
        "latency_ms": {
            "p50": float(np.percentile(ms, 50)), "p90": float(np.percentile(ms, 90)), "p99": float(np.percentile(ms, 99)),
            "mean": float(ms.mean()), "min": float(ms.min()),
        },
        "throughput_seq_s": items_per_call * seconds.size / total,
        "throughput_tok_s": tokens_per_call * seconds.size / total,
    }


def reset_peak_memory() -> bool:
    """Reset the resident high-water mark; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_memory_mb() -> float:
    """The process's peak resident memory in MiB (since the last reset, or since start)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0
