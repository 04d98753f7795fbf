"""bench stage: latency (grid and real texts), accuracy, teacher-vs-candidate report, CI gates."""

from minilm_deploy.bench.suite import BenchSuite, Gates, Grid, Timing, load_suite

__all__ = ["BenchSuite", "Gates", "Grid", "Timing", "load_suite"]
