"""On the real zoo model: all-MiniLM-L6-v2 (teacher, PyTorch) against its INT8 ONNX export, on
rotten-tomatoes, through the Predictor and the whole bench report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_runtime import make_contract_artifact

from minilm_deploy.bench.run import ModelSpec, run_bench
from minilm_deploy.bench.schema import validate_results
from minilm_deploy.bench.suite import BenchSuite, Grid, Timing
from minilm_deploy.runtime import Predictor

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    from minilm_deploy.sources import load_task, resolve_model

    teacher = resolve_model("zoo:all-minilm-l6-v2")
    int8 = make_contract_artifact(teacher, tmp_path_factory.mktemp("zoo") / "minilm-int8", max_length=128, int8=True)
    return teacher, int8, load_task("zoo:rotten-tomatoes")


def test_int8_embeddings_stay_close_to_the_teacher(zoo):
    teacher, int8, task = zoo
    texts = [ex.text for ex in task.splits["test"][:32]]
    with Predictor.load(teacher, threads=1) as ref, Predictor.load(int8, threads=1) as q:
        a, b = ref.predict(texts).embeddings, q.predict(texts).embeddings
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert a.shape == (32, 384) and cos.min() > 0.95


def test_bench_report_teacher_against_int8_student(zoo, tmp_path):
    teacher, int8, task = zoo
    suite = BenchSuite(name="zoo", split="test", eval_limit=120, probe_train_limit=240, grid=Grid((1, 8), (32,)),
                       real_batch_size=8, real_samples=32, timing=Timing(warmup=1, min_iterations=3, min_duration_s=0.0),
                       threads=1, isolate=False)
    results = run_bench([ModelSpec("all-minilm-l6-v2", str(teacher), "teacher"), ModelSpec("int8", str(int8))],
                        suite, tmp_path / "out", task=task)
    validate_results(json.loads((tmp_path / "out" / "results.json").read_text()))
    acc = {r["model"]: r for r in results["rows"] if r["kind"] == "accuracy"}
    assert acc["int8"]["method"].startswith("nearest-centroid probe") and acc["int8"]["examples"] == 120
    assert acc["all-minilm-l6-v2"]["value"] > 0.55  # the probe beats chance on real sentiment data
    assert abs(acc["int8"]["value"] - acc["all-minilm-l6-v2"]["value"]) < 0.1
    summary = {s["model"]: s for s in results["summary"]}
    assert summary["int8"]["size_ratio"] < 0.8
    assert (tmp_path / "out" / "accuracy_vs_speedup.png").is_file()
