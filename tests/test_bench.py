"""`minilm bench`: the report for a teacher and candidates, its JSON schema, plots, and the CI gates.

Timing figures are never asserted; gates are exercised with fabricated results whose margins are
far beyond any timing noise."""

from __future__ import annotations

import copy
import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
from test_runtime import make_artifact

from minilm_deploy.bench import compare
from minilm_deploy.bench.report import pareto_front
from minilm_deploy.bench.run import ModelSpec, run_bench
from minilm_deploy.bench.schema import validate_results
from minilm_deploy.bench.suite import BenchSuite, Gates, Grid, Timing, load_suite
from minilm_deploy.data.types import Example, TaskData
from minilm_deploy.errors import InputError
from minilm_deploy.runtime import Predictor

ROOT = Path(__file__).resolve().parents[1]
WORDS = "the a movie film good bad great not very i you love hate fun plot story hello world".split()
TINY = BenchSuite(name="tiny", grid=Grid(batch_sizes=(1, 4), seq_lens=(8, 16)), real_batch_size=4, real_samples=16,
                  timing=Timing(warmup=1, min_iterations=3, min_duration_s=0.0), threads=1, isolate=False)


def _texts(n: int, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(2, 10))) for _ in range(n)]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A teacher (Hugging Face folder), its ONNX export, a different student; a task labelled by the teacher."""
    from conftest import make_tiny_bert

    root = tmp_path_factory.mktemp("bench")
    kw = dict(architecture="BertForSequenceClassification", num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    teacher = make_tiny_bert(root / "teacher", initializer_range=0.5, **kw)
    student = make_tiny_bert(root / "student-hf", seed=7, num_hidden_layers=1, initializer_range=0.5, **kw)
    artifact = make_artifact(teacher, root / "teacher-onnx")
    student_art = make_artifact(student, root / "student")
    texts = _texts(120, 0)
    with Predictor.load(teacher) as p:
        labels = p.predict(texts).labels  # the teacher is right by construction: accuracy 1.0
    split = lambda a, b: tuple(Example(t, label=y) for t, y in zip(texts[a:b], labels[a:b], strict=True))  # noqa: E731
    task = TaskData("teacher-says", "classification", {"train": split(0, 60), "test": split(60, 120)}, ("neg", "pos"))
    folder = root / "task"
    folder.mkdir()
    for name, part in (("train", task.splits["train"]), ("test", task.splits["test"])):
        with open(folder / f"{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows([(ex.text, ex.label) for ex in part])
    return {"teacher": teacher, "artifact": artifact, "student": student_art, "task": task, "task_dir": folder, "root": root}


@pytest.fixture(scope="module")
def report(models):
    out = models["root"] / "report"
    specs = [ModelSpec("teacher", str(models["teacher"]), "teacher"), ModelSpec("teacher-onnx", str(models["artifact"])),
             ModelSpec("student", str(models["student"]))]
    return run_bench(specs, TINY, out, task=models["task"]), out


def test_report_has_every_model_side_by_side(report):
    results, out = report
    assert {p.name for p in out.iterdir()} == {"results.json", "results.schema.json", "report.md", "latency_vs_batch.png", "accuracy_vs_speedup.png"}
    on_disk = json.loads((out / "results.json").read_text())
    validate_results(on_disk)
    assert on_disk["teacher"] == "teacher" and [m["name"] for m in on_disk["models"]] == ["teacher", "teacher-onnx", "student"]
    assert [m["backend"] for m in on_disk["models"]] == ["torch", "onnxruntime", "onnxruntime"]
    # one row per measurement: 2 × 2 grid points + the real-text pass + accuracy, per model
    for name in ("teacher", "teacher-onnx", "student"):
        rows = [r for r in on_disk["rows"] if r["model"] == name]
        assert sorted((r["kind"], r["mode"] if r["kind"] == "latency" else "") for r in rows) == \
            [("accuracy", "")] + [("latency", "grid")] * 4 + [("latency", "real")]
    acc = {r["model"]: r["value"] for r in on_disk["rows"] if r["kind"] == "accuracy"}
    assert acc["teacher"] == 1.0 and acc["teacher-onnx"] == 1.0 and acc["student"] < 1.0
    summary = {s["model"]: s for s in on_disk["summary"]}
    assert summary["teacher"]["speedup"] == pytest.approx(1.0) and summary["teacher"]["accuracy_drop"] == 0
    assert summary["student"]["accuracy_drop"] == pytest.approx(1.0 - acc["student"])
    assert summary["student"]["speedup"] > 0 and summary["student"]["size_ratio"] < 1  # one layer instead of two
    assert all(m["peak_rss_mb"] > 0 and m["file_size_bytes"] > 0 for m in on_disk["models"])
    md = (out / "report.md").read_text()
    assert "| student | candidate | onnxruntime | fp32 |" in md and "![latency_vs_batch.png](latency_vs_batch.png)" in md
    for png in ("latency_vs_batch.png", "accuracy_vs_speedup.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_schema_rejects_a_broken_report(report):
    results, _ = report
    broken = copy.deepcopy(results)
    del broken["rows"][0]["latency_ms"]["p99"]
    with pytest.raises(InputError, match="schema"):
        validate_results(broken)
    broken = copy.deepcopy(results)
    broken["models"][0]["role"] = "boss"
    with pytest.raises(InputError, match="models/0/role"):
        validate_results(broken)


def test_a_fabricated_slower_result_fails_the_baseline_gate(report, tmp_path):
    results, _ = report
    fast = copy.deepcopy(results)  # a baseline 1000x faster than anything measured here
    for row in compare.latency_rows(fast):
        row["latency_ms"] = {k: v / 1000 for k, v in row["latency_ms"].items()}
    gates = compare.baseline_gates(results, fast, 10.0)
    assert gates and not any(g["passed"] for g in gates)
    line = compare.failure_line(gates)
    assert line.startswith("gate --max-regression failed: teacher grid batch 1 seq 8 p50 ") and "(limit +10%)" in line
    assert "\n" not in line
    slow = copy.deepcopy(results)  # and one 1000x slower: every measurement passes
    for row in compare.latency_rows(slow):
        row["latency_ms"] = {k: v * 1000 for k, v in row["latency_ms"].items()}
    assert all(g["passed"] for g in compare.baseline_gates(results, slow, 10.0))
    unrelated = {"rows": [{**r, "model": "other"} for r in fast["rows"]]}
    assert "shares no measurement" in compare.failure_line(compare.baseline_gates(results, unrelated, 10.0))


def test_accuracy_and_speedup_gates(report):
    results, _ = report
    gates = compare.check_gates(results, Gates(max_accuracy_drop=0.02, min_speedup=0.0))
    by = {(g["gate"], g["model"]): g for g in gates}
    assert by[("max-accuracy-drop", "teacher-onnx")]["passed"] and not by[("max-accuracy-drop", "student")]["passed"]
    assert by[("min-speedup", "student")]["passed"]
    assert compare.failure_line(gates).startswith("gate --max-accuracy-drop failed: student accuracy drop 0.")
    impossible = compare.check_gates(results, Gates(min_speedup=1e9))
    assert compare.failure_line(impossible).startswith("gate --min-speedup failed: teacher-onnx speed-up ")
    lonely = {**results, "teacher": None, "summary": [{**s, "accuracy_drop": None, "speedup": None} for s in results["summary"]]}
    assert "no teacher" in compare.failure_line(compare.check_gates(lonely, Gates(min_speedup=1.0)))


def test_baseline_ratio_gates_compare_speedup_and_accuracy_measured_within_each_run(report):
    results, _ = report
    same = compare.baseline_ratio_gates(results, results, 30.0, 0.03)
    assert same and all(g["passed"] for g in same)
    assert {g["gate"] for g in same} == {"max-speedup-loss", "max-accuracy-loss"}
    better = copy.deepcopy(results)  # a baseline whose candidates were 10x faster (vs its teacher) and 5 points better
    for s in better["summary"]:
        if s["role"] == "candidate":
            s["speedup"] *= 10
            s["accuracy"] += 0.05
    gates = compare.baseline_ratio_gates(results, better, 30.0, 0.03)
    assert not any(g["passed"] for g in gates)
    line = compare.failure_line(gates)
    assert line.startswith("gate --max-speedup-loss failed: ") and "(-90.0%, limit -30%)" in line
    assert any(g["gate"] == "max-accuracy-loss" and abs(g["figure"] - 0.05) < 1e-9 for g in gates)
    worse = copy.deepcopy(results)  # and one whose candidates were slower and worse: every check passes
    for s in worse["summary"]:
        if s["role"] == "candidate":
            s["speedup"] /= 10
            s["accuracy"] -= 0.05
    assert all(g["passed"] for g in compare.baseline_ratio_gates(results, worse, 30.0, 0.03))
    renamed = {"summary": [{**s, "model": s["model"] + "-old"} for s in results["summary"]]}
    assert "no candidate of the same name" in compare.failure_line(compare.baseline_ratio_gates(results, renamed, 30.0, None))
    elsewhere = copy.deepcopy(better)  # the same baseline from another CPU class: speed-ups not compared, accuracy still
    elsewhere["environment"]["cpu_class"] = "not-" + str(results["environment"]["cpu_class"])
    gates = compare.baseline_ratio_gates(results, elsewhere, 30.0, 0.03)
    skipped = [g for g in gates if g.get("skipped")]
    assert skipped and all(g["gate"] == "max-speedup-loss" and g["passed"] and "not compared" in g["message"] for g in skipped)
    assert compare.failure_line(gates).startswith("gate --max-accuracy-loss failed: ")
    for here, there in (("AMD EPYC", "Intel(R) Xeon(R) Processor @ 2.80GHz"), ("Intel(R) Xeon(R) Processor", "AMD EPYC 9B14")):
        results["environment"]["cpu"], other = here, copy.deepcopy(better)  # the same class, another vendor: skipped
        other["environment"] |= {"cpu": there, "cpu_class": results["environment"]["cpu_class"]}
        gates = compare.baseline_ratio_gates(results, other, 30.0, None)
        assert gates and all(g.get("skipped") and g["passed"] and "not compared" in g["message"] for g in gates)
    other["environment"]["cpu"] = "Intel(R) Xeon(R) Processor @ 2.20GHz"  # the same vendor and class: compared
    assert not any(g["passed"] for g in compare.baseline_ratio_gates(results, other, 30.0, None))
    via_suite = compare.check_gates(results, Gates(baseline="b.json", max_speedup_loss_pct=30.0), better)
    assert [g["gate"] for g in via_suite] == ["max-speedup-loss"] * len(via_suite) and not via_suite[0]["passed"]
    with pytest.raises(ValueError, match="baseline goes together"):
        Gates(max_accuracy_loss=0.01)


def test_the_ci_gate_recipe_and_its_baseline_fit_together():
    """`make gate` (run by .ci/run): the recipe loads, its baseline is a valid results file with its candidates."""
    from minilm_deploy.pipeline import bench_models
    from minilm_deploy.recipe import load_recipe

    recipe = load_recipe(ROOT / "bench" / "ci-gate" / "recipe.yaml")
    gates = recipe.bench.gates
    assert gates.baseline == "bench/ci-gate/baseline.json" and gates.max_speedup_loss_pct and gates.max_accuracy_loss
    candidates = {m.name for m in bench_models(recipe) if m.role == "candidate"}
    for path in [ROOT / gates.baseline, *(ROOT / "bench" / "ci-gate").glob("baseline-*.json")]:
        baseline = json.loads(path.read_text())
        validate_results(baseline)
        assert candidates == {s["model"] for s in baseline["summary"] if s["role"] == "candidate"}, path.name
        assert all(g["passed"] for g in baseline["gates"]), path.name
        if path.stem != "baseline":  # a class's own baseline was measured on that class
            assert path.stem == f"baseline-{baseline['environment']['cpu_class']}"


def test_a_baseline_of_this_cpu_class_is_preferred_where_there_is_one(tmp_path):
    from minilm_deploy.bench.run import baseline_for

    configured = tmp_path / "baseline.json"
    assert baseline_for(configured, "amx") == configured  # none of its own: the configured one
    (tmp_path / "baseline-amx.json").write_text("{}")
    assert baseline_for(configured, "amx") == tmp_path / "baseline-amx.json"
    assert baseline_for(configured, "avx2") == configured


def test_cli_gate_failure_is_one_line_and_the_report_is_still_written(models, tmp_path, capsys):
    from minilm_deploy.cli.main import main

    out = tmp_path / "cli-report"
    args = ["bench", f"student={models['student']}", "--against", str(models["artifact"]), "--task", str(models["task_dir"]),
            "-o", str(out), "--set", "grid.batch_sizes=[1]", "--set", "grid.seq_lens=[8]", "--set", "timing.min_iterations=2",
            "--set", "timing.min_duration_s=0", "--set", "timing.warmup=0", "--set", "real_samples=8", "--set", "isolate=false"]
    assert main([*args, "--max-accuracy-drop", "0.01"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("minilm: error: gate --max-accuracy-drop failed: student accuracy drop")
    assert "(limit 0.0100)" in err[0]
    validate_results(json.loads((out / "results.json").read_text()))
    assert main([*args, "--json"]) == 0  # no gates: passes
    assert json.loads(capsys.readouterr().out)["output"] == str(out)
    fast = json.loads((out / "results.json").read_text())  # a fabricated baseline, 1000x faster
    for row in compare.latency_rows(fast):
        row["latency_ms"] = {k: v / 1000 for k, v in row["latency_ms"].items()}
    (tmp_path / "fast.json").write_text(json.dumps(fast))
    assert main([*args, "--baseline", str(tmp_path / "fast.json"), "--max-regression", "25"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("minilm: error: gate --max-regression failed: teacher-onnx grid batch 1 seq 8 p50 ")
    assert "(limit +25%)" in err[0]
    (tmp_path / "bad.json").write_text(json.dumps({"rows": []}))
    assert main([*args, "--baseline", str(tmp_path / "bad.json"), "--max-regression", "25"]) == 2  # not a results file
    assert main([*args, "--baseline", str(out / "results.json")]) == 2  # without --max-regression
    assert main([*args, "--baseline", str(tmp_path / "missing.json"), "--max-regression", "10"]) == 2
    assert main(["bench", str(models["student"]), "--set", "grid.batch_sizes=[0]"]) == 2


def test_bad_bench_command_lines_are_refused_before_any_model_loads(models, tmp_path, capsys):
    """Issue 18: a missing candidate, a negative gate, an accuracy gate without a task: one line, at once."""
    import time

    from minilm_deploy.cli.main import main

    cases = [
        (["bench", str(tmp_path / "nope" / "artifact"), "--against", "zoo:all-minilm-l6-v2"], "no such artifact"),
        (["bench", str(models["artifact"]), "--min-speedup", "-1"], "min_speedup is -1.0; a gate's limit is >= 0"),
        (["bench", str(models["artifact"]), "--against", str(models["student"]), "--max-accuracy-drop", "0.01"],
         "needs --task T"),
    ]
    for args, expected in cases:
        capsys.readouterr()
        started = time.perf_counter()
        code = main(args)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and expected in err[0], (args, err)
        assert time.perf_counter() - started < 5  # before any model is loaded


def test_backends_side_by_side_in_one_run(models, tmp_path, capsys):
    from minilm_deploy.cli.main import main

    pytest.importorskip("openvino")
    out = tmp_path / "backends"
    args = ["bench", f"student={models['student']}", "--against", str(models["teacher"]), "--task", str(models["task_dir"]),
            "-o", str(out), "--backends", "onnxruntime,openvino,torch", "--set", "grid.batch_sizes=[1]",
            "--set", "grid.seq_lens=[8]", "--set", "timing.min_iterations=2", "--set", "timing.min_duration_s=0",
            "--set", "timing.warmup=0", "--set", "real_samples=8", "--set", "isolate=false", "--json"]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    validate_results(results)
    backends = {m["name"]: m["backend"] for m in results["models"]}
    assert backends == {"teacher": "torch", "student@onnxruntime": "onnxruntime", "student@openvino": "openvino",
                        "student@torch": "torch"}
    accuracy = {r["model"]: r["value"] for r in results["rows"] if r["kind"] == "accuracy"}
    assert accuracy["student@onnxruntime"] == pytest.approx(accuracy["student@openvino"], abs=0.02)
    assert accuracy["student@onnxruntime"] == pytest.approx(accuracy["student@torch"], abs=0.02)
    capsys.readouterr()
    assert main([*args[:-1], "--backends", "onnxruntime,nope"]) == 2
    assert "give distinct names from" in capsys.readouterr().err


def test_isolated_measurement_runs_in_its_own_process(models, tmp_path):
    suite = replace(TINY, isolate=True, grid=Grid(batch_sizes=(2,), seq_lens=(8,)), real_batch_size=0)
    results = run_bench([ModelSpec("s", str(models["student"]))], suite, tmp_path / "iso")
    model = results["models"][0]
    assert model["peak_rss_scope"] == "model" and model["info"]["providers"] == ["CPUExecutionProvider"]
    assert results["teacher"] is None and [r["mode"] for r in results["rows"]] == ["grid"]


def test_suites_in_the_repository_load():
    files = sorted((ROOT / "bench").glob("*.yaml"))
    assert {f.name for f in files} >= {"quick.yaml", "default.yaml", "ci.yaml"}
    for f in files:
        suite = load_suite(f)
        assert suite.name == f.stem
    assert load_suite(ROOT / "bench" / "ci.yaml").gates.max_accuracy_drop == 0.02
    with pytest.raises(InputError, match="unknown key"):
        load_suite(ROOT / "bench" / "quick.yaml", ["grid.sizes=[1]"])


def test_pareto_front():
    pts = [(1.0, 0.9), (2.0, 0.85), (1.5, 0.8), (3.0, 0.7), (2.5, 0.6)]
    assert pareto_front(pts) == [(1.0, 0.9), (2.0, 0.85), (3.0, 0.7)]
