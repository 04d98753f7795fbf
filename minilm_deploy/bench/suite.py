"""Benchmark suites (`bench/*.yaml`) and the `bench:` section of a recipe (owned by bench).

A suite says what to measure (the latency grid, the real-text pass, the accuracy split), how
long (warm-up, minimum iterations, minimum duration) and which CI gates apply. Loaded strictly:
`load_suite("bench/quick.yaml", ["grid.batch_sizes=[1,4]"])`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from minilm_deploy.config import deep_merge, from_dict, load_yaml, parse_overrides


@dataclass(frozen=True)
class Grid:
    """Latency over batch sizes × sequence lengths, on synthetic token ids of exactly that shape."""

    batch_sizes: tuple[int, ...] = (1, 8, 32)
    seq_lens: tuple[int, ...] = (32, 128)

    def __post_init__(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1 or not self.seq_lens or min(self.seq_lens) < 2:
            raise ValueError("grid: batch sizes must be >= 1 and sequence lengths >= 2, at least one of each")


@dataclass(frozen=True)
class Timing:
    warmup: int = 3  # calls before measuring, not recorded
    min_iterations: int = 10  # at least this many measured calls...
    min_duration_s: float = 1.0  # ...and at least this long
    max_iterations: int = 10_000  # a cap for very fast models

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.min_iterations < 1 or self.min_duration_s < 0 or self.max_iterations < self.min_iterations:
            raise ValueError("timing: need warmup >= 0, min_iterations >= 1, min_duration_s >= 0, max_iterations >= min_iterations")


@dataclass(frozen=True)
class Gates:
    """CI gates; a failed one makes `minilm bench` exit 1 with one line naming gate, figure and limit."""

    max_accuracy_drop: float | None = None  # teacher metric − candidate metric, in metric units (0.01 = 1 point)
    min_speedup: float | None = None  # teacher p50 / candidate p50, geometric mean over the grid
    baseline: str | None = None  # a previous results.json
    max_regression_pct: float | None = None  # p50 slower than the baseline's by more than this: fail
    # Against the baseline, machine-independent (ratios measured within each run): a candidate's
    # speed-up over the teacher may fall by at most this many percent, its metric by at most this much.
    max_speedup_loss_pct: float | None = None
    max_accuracy_loss: float | None = None

    def __post_init__(self) -> None:
        against_baseline = (self.max_regression_pct, self.max_speedup_loss_pct, self.max_accuracy_loss)
        if (self.baseline is None) != all(v is None for v in against_baseline):
            raise ValueError("gates: baseline goes together with max_regression_pct, max_speedup_loss_pct or max_accuracy_loss")
        limits = {"max_accuracy_drop": self.max_accuracy_drop, "min_speedup": self.min_speedup,
                  "max_regression_pct": self.max_regression_pct, "max_speedup_loss_pct": self.max_speedup_loss_pct,
                  "max_accuracy_loss": self.max_accuracy_loss}
        negative = [k for k, v in limits.items() if v is not None and v < 0]
        if negative:
            raise ValueError(f"gates: {negative[0]} is {limits[negative[0]]}; a gate's limit is >= 0")

    def accuracy_gated(self) -> bool:
        """Whether a gate compares accuracy (which needs a task)."""
        return self.max_accuracy_drop is not None or self.max_accuracy_loss is not None


@dataclass(frozen=True)
class BenchSuite:
    name: str = "default"
    task: str | None = None  # task spec (zoo:NAME, folder, hub id): accuracy and the real length distribution
    split: str = "test"  # the evaluation split
    eval_limit: int = 0  # examples used for accuracy (0: the whole split)
    probe_train_limit: int = 2000  # training examples for an encoder's nearest-centroid probe
    grid: Grid = field(default_factory=Grid)
    real_batch_size: int = 32  # batch size of the real-text pass (0: skip it)
    real_samples: int = 256  # texts drawn (seeded) from the split for the real-text pass
    timing: Timing = field(default_factory=Timing)
    backend: str = "auto"
    device: Literal["cpu", "cuda"] = "cpu"
    threads: int = 0  # intra-op threads (0: the library default)
    isolate: bool = True  # one fresh process per model: clean peak memory, no cross-talk
    seed: int = 0
    gates: Gates = field(default_factory=Gates)

    def __post_init__(self) -> None:
        if self.eval_limit < 0 or self.real_batch_size < 0 or self.real_samples < 0 or self.threads < 0:
            raise ValueError("eval_limit, real_batch_size, real_samples and threads must be >= 0")


def load_suite(path: Path | str, overrides: list[str] | tuple[str, ...] | None = None) -> BenchSuite:
    path = Path(path)
    data = load_yaml(path)
    if overrides:
        data = deep_merge(data, parse_overrides(list(overrides)))
    return from_dict(BenchSuite, data, source=path.name)


def with_gates(suite: BenchSuite, **values: Any) -> BenchSuite:
    """The suite with CLI gate flags laid over its own (None: keep the suite's)."""
    given = {k: v for k, v in values.items() if v is not None}
    return replace(suite, gates=replace(suite.gates, **given)) if given else suite
