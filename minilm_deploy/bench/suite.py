"""Benchmark suites (`bench/*.yaml`) and the `bench:` section of a recipe (owned by bench)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchSuite:
    batch_sizes: tuple[int, ...] = (1, 32)
    seq_lens: tuple[int, ...] = (128,)
