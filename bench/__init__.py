"""The evidence scripts: run each from the repository root as a module (`python -m bench.NAME`); `harness` is what they share."""
