"""The evidence scripts under bench/ (issue 8): the ablation table and the deployment table are computed
from the per-run records exactly as documented (means, standard deviations, speed-ups, accuracy retained)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from bench import ablation, ablation_table, deployment  # the repository root is on pytest's path (pyproject)
from minilm_deploy.bench.run import ModelSpec

ROOT = Path(__file__).resolve().parents[1]


def _finetune_record(size: str, variant: str, task: str, seed: int, accuracy: float, splits: dict[str, float] | None = None) -> dict:
    splits = splits or {"test": accuracy}
    return {"kind": "finetune", "size": size, "variant": variant, "description": ablation.VARIANTS[variant], "task": task,
            "seed": seed, "metric": "accuracy", "test": {"accuracy": accuracy}, "cpu_seconds": 100.0 * seed,
            "splits": {k: {"accuracy": v} for k, v in splits.items()}}


def test_ablation_table_gives_mean_and_std_over_seeds_and_the_zero_shot_table(tmp_path: Path) -> None:
    records = [_finetune_record("6x384", "a", "rotten-tomatoes", s, acc) for s, acc in ((1, 0.80), (2, 0.82), (3, 0.81))]
    records += [_finetune_record("3x384", "e", "rotten-tomatoes", 1, 0.70), _finetune_record("3x384", "e", "trec", 1, 0.5)]
    records += [_finetune_record("3x384", "k", "rotten-tomatoes", 1, 0.75),
                {"kind": "distill", "size": "3x384", "variant": "h", "tokens": 999, "cpu_seconds_this_session": 7.0}]
    records += [_finetune_record("e5-6x384-pruned", "h", "polarity", 1, 0.6,
                                 {"test": 0.6, "test-fr": 0.7, "test-nl": 0.8, "test-de": 0.75})]
    records += [{"kind": "distill", "size": "3x384", "variant": "e", "tokens": 1234, "cpu_seconds_this_session": 56.0},
                {"kind": "distill", "size": "e5-6x384-pruned", "variant": "h", "tokens": 1, "student_parameters": 40_000,
                 "embedding_parameters": 17_000}]
    records += [{"kind": "distill", "size": "e5-6x384", "variant": "h", "tokens": 1, "student_parameters": 100_000,
                 "embedding_parameters": 96_000, "teacher_parameters": 118_000}]  # the unpruned student: the teacher's row
    results = tmp_path / "ablation"
    results.mkdir()
    for i, record in enumerate(records):
        (results / f"r{i}.json").write_text(json.dumps(record))
    (tmp_path / "finetune").mkdir()
    splits = {s: {"accuracy": {"mean": m, "std": 0.01}} for s, m in (("test", 0.7), ("test-fr", 0.8), ("test-nl", 0.9), ("test-de", 0.85))}
    (tmp_path / "finetune" / "teacher-polarity-xling.json").write_text(json.dumps({"summary": splits}))

    table = ablation_table.write_table(results)

    rows = {line.split("|")[1].strip() + line.split("|")[2].strip()[:3]: line for line in table.splitlines() if line.startswith("| ")}
    teacher_rt = rows["6x384(a)"].split("|")[3].strip()
    assert teacher_rt == f"81.0 ± {100 * statistics.stdev([0.80, 0.82, 0.81]):.1f} (3 seeds)"
    assert rows["3x384(e)"].split("|")[3].strip() == "70.0 (1 seed)"
    assert rows["3x384(e)"].split("|")[4].strip() == "50.0 (1 seed)"  # trec
    assert "| 86.4 | 1,234 | 56 | 100 |" in rows["3x384(e)"]  # 70.0 / 81.0 of its teacher, 6x384 (a)
    assert "| 100.0 |" in rows["6x384(a)"]
    assert "| 92.6 | 999 | 7 | 100 |" in rows["3x384(k)"]  # task-distilled (h): (h)'s distillation budget
    assert "| 60.0 | 70.0 | 80.0 | 75.0 | 40,000 | 17,000 |" in rows["e5-6x384-pruned(h)"]
    assert "| 70.0 ± 1.0 | 80.0 ± 1.0 | 90.0 ± 1.0 | 85.0 ± 1.0 | 118,000 | 96,000 " in rows["e5-12x384 (teacher, 3 seeds)(a)"]
    assert sum(line.startswith("| e5-6x384-pruned |") for line in table.splitlines()) == 1  # zero-shot table only
    assert (results / "ablation.md").read_text().strip() == table.strip()
    assert (results / "ablation.png").stat().st_size > 1000


def test_ablation_plan_gives_every_distilled_variant_the_same_budget() -> None:
    recipes = {v: ablation.distill_recipe("3x384", v) for v in "defgh"}
    assert {json.dumps(r["distill"]["train"], sort_keys=True) for r in recipes.values()} == {json.dumps(ablation.BUDGET, sort_keys=True)}
    assert recipes["d"]["distill"]["loss"]["kind"] == "attention" and recipes["g"]["distill"]["loss"]["kind"] == "minilmv2"
    assert recipes["h"]["distill"]["student"]["init"] == "teacher-layers" and recipes["e"]["distill"]["student"]["init"] == "random"
    assert recipes["f"]["teacher"].endswith("4x384/e/student")
    assert ablation.distill_recipe("3x384", "i")["distill"]["train"]["lr"] == pytest.approx(ablation.BUDGET["lr"] / 10)
    assert ablation.distill_recipe("e5-6x384-pruned", "h")["distill"]["vocab"]["prune"] is True


def _latency(model: str, mode: str, batch: int, p50: float) -> dict:
    return {"model": model, "kind": "latency", "mode": mode, "batch_size": batch, "latency_ms": {"p50": p50}}


def test_task_distilled_variants_reuse_their_base_student_and_the_group_teachers_fine_tuned_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ablation, "WORK", tmp_path)
    (tmp_path / "3x384" / "h" / "student").mkdir(parents=True)
    (tmp_path / "3x384" / "h" / "student" / "run.json").write_text("{}")
    teacher = tmp_path / "mpnet-6x384" / "a" / "rotten-tomatoes-s1"  # fine-tuned once, under another group
    teacher.mkdir(parents=True)
    (teacher / "metrics.json").write_text("{}")

    assert ablation.ensure_student("3x384", "k") == tmp_path / "3x384" / "h" / "student"
    assert ablation.teacher_task_model("mpnet-6x768", "rotten-tomatoes") == teacher
    assert set(ablation.TASK_DISTILLED) <= set(ablation.VARIANTS) and set(ablation.TASK_DISTILLED.values()) <= set(ablation.VARIANTS)


def test_a_task_distilled_variant_fine_tunes_the_teacher_again_when_only_its_result_is_recorded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ablation, "WORK", tmp_path / "runs")  # a fresh clone: results committed, no runs/
    monkeypatch.setattr(ablation, "RESULTS", tmp_path / "results")
    ablation._save("finetune", "3x384", "a", "trec", 1, {"test": {"accuracy": 0.9}})
    started: list[tuple[str, str]] = []

    def ensure_student(size: str, variant: str) -> str:  # the first step of a fine-tuning run that is not skipped
        started.append((size, variant))
        raise RuntimeError("stop before training")

    monkeypatch.setattr(ablation, "ensure_student", ensure_student)
    ablation.finetune("3x384", "a", "trec", 1)  # recorded: skipped
    assert started == []
    with pytest.raises(RuntimeError, match="stop before training"):
        ablation.teacher_task_model("3x384", "trec")
    assert started == [("3x384", "a")]


def test_deployment_table_gives_speedup_against_the_pytorch_teacher_and_accuracy_retained(tmp_path: Path) -> None:
    models = [ModelSpec("teacher", str(tmp_path / "teacher"), "teacher"), ModelSpec("s", str(tmp_path / "s"), "candidate"),
              ModelSpec("s-onnx-int8", str(tmp_path / "s8"), "candidate")]
    main_run = {
        "environment": {"cpu": "test cpu", "cpu_class": "x86_64-avx2"},
        "models": [{"name": m.name, "file_size_bytes": size} for m, size in zip(models, (90e6, 40e6, 10e6), strict=True)],
        "summary": [{"model": "teacher", "accuracy": 0.80}, {"model": "s", "accuracy": 0.76}, {"model": "s-onnx-int8", "accuracy": 0.72}],
        "rows": [_latency("teacher", "grid", 1, 30.0), _latency("teacher", "grid", 32, 900.0), _latency("teacher", "real", 32, 300.0),
                 _latency("s", "grid", 1, 15.0), _latency("s", "grid", 32, 450.0), _latency("s", "real", 32, 150.0),
                 _latency("s-onnx-int8", "grid", 1, 3.0), _latency("s-onnx-int8", "grid", 32, 90.0)],
    }
    single = {"rows": [_latency("teacher", "real", 1, 10.0), _latency("s", "real", 1, 5.0)]}

    table = deployment.write_table(main_run, single, models, tmp_path, rejected={"teacher-onnx-int8": "agrees on 94.5%"})

    rows = {r["model"]: r for r in json.loads((tmp_path / "deployment.json").read_text())["rows"]}
    assert rows["teacher"]["speedup_b1"] == pytest.approx(1.0) and rows["teacher"]["retained"] == pytest.approx(1.0)
    assert rows["s"]["speedup_b1"] == pytest.approx(2.0) and rows["s"]["retained"] == pytest.approx(0.95)
    assert rows["s"]["b1_real_ms"] == 5.0 and rows["s"]["b32_real_ms"] == 150.0
    assert rows["s-onnx-int8"]["speedup_b1"] == pytest.approx(10.0) and rows["s-onnx-int8"]["retained"] == pytest.approx(0.9)
    assert rows["s-onnx-int8"]["b1_real_ms"] is None  # not measured: a dash, not a zero
    assert "| s-onnx-int8 | – | 10.0 | 3.00 | 90.0 | – | – | 10.00x | 0.7200 | 90.0% |" in table
    assert (tmp_path / "deployment.md").read_text().startswith("CPU: test cpu (x86_64-avx2)")
    assert "- teacher-onnx-int8: rejected by its export's validation, not timed: agrees on 94.5%" in (tmp_path / "deployment.md").read_text()
    assert (tmp_path / "deployment.png").stat().st_size > 1000


def test_the_ablation_has_no_orchestration_of_its_own():
    """(b) and (c) are the library's students after 0 steps (recipes the library accepts), with the picks the
    recorded ablation used; the distilled variants keep the budget."""
    from minilm_deploy.recipe import recipe_from_dict

    c, b, h = (recipe_from_dict(ablation.distill_recipe("3x384", v)) for v in "cbh")
    assert c.distill.train.steps == b.distill.train.steps == 0 and h.distill.train.steps == ablation.BUDGET["steps"]
    assert c.distill.student.init_layers == h.distill.student.init_layers == (0, 2, 4)
    assert b.distill.student.init == "random" and b.distill.student.init_layers is None
    assert not hasattr(ablation, "_initialise")


def test_one_writer_for_every_script(tmp_path):
    from bench import harness

    harness.save_record(tmp_path / "runs" / "a.json", {"x": 1})
    record = json.loads((tmp_path / "runs" / "a.json").read_text())
    assert record["x"] == 1 and record["created"].endswith("Z")
    harness.write_report(tmp_path / "table", {"rows": [1]}, "| a |")
    assert json.loads((tmp_path / "table.json").read_text()) == {"rows": [1]}
    assert (tmp_path / "table.md").read_text() == "| a |\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "table.json", "table.md"]  # no temporary left


def test_no_script_edits_sys_path_or_imports_a_sibling_by_file():
    for path in sorted((ROOT / "bench").glob("*.py")):
        text = path.read_text()
        assert "sys.path" not in text, path.name
        for line in text.splitlines():
            stripped = line.strip()
            for sibling in (p.stem for p in (ROOT / "bench").glob("*.py")):
                assert not stripped.startswith((f"import {sibling}", f"from {sibling} import")), (path.name, line)


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "bench").glob("*.py") if p.stem != "__init__"))
def test_every_script_imports(name):
    """A rename in the library must not leave a script behind (each imports what it names at module level)."""
    import importlib

    importlib.import_module(f"bench.{name}")


def test_cpu_paths_keeps_one_record_per_cpu_class_and_model_and_indexes_them_all(tmp_path, monkeypatch):
    from bench import cpu_paths

    monkeypatch.setattr(cpu_paths, "RESULTS", tmp_path)
    assert cpu_paths.result_path(cpu_paths.DEFAULT_MODEL, "avx2") == tmp_path / "avx2"
    assert cpu_paths.result_path("runs/quickstart/student/", "amx") == tmp_path / "amx-student"

    def record(model: str, klass: str, p50: float) -> dict:
        rows = [{"model": "auto", "kind": "latency", "mode": "grid", "batch_size": 1, "seq_len": 128, "latency_ms": {"p50": p50}},
                {"model": "auto", "kind": "accuracy", "value": 0.7}]
        return {"cpu": "test cpu", "cpu_class": klass, "model": model, "real_cosine": {"auto": 0.995},
                "paths": {"auto": {"min_cosine": 0.991, "auto": f"chose x on this {klass} CPU"}},
                "runs": [{"suite": {"threads": 1}, "rows": rows}, {"suite": {"threads": 2}, "rows": rows}]}

    (tmp_path / "avx2.json").write_text(json.dumps(record(cpu_paths.DEFAULT_MODEL, "avx2", 12.5)))
    (tmp_path / "amx-student.json").write_text(json.dumps(record("runs/quickstart/student", "amx", 3.25)))
    (tmp_path / "unrelated.json").write_text(json.dumps({"rows": []}))  # not a CPU-paths record: left out

    cpu_paths.write_index()

    text = (tmp_path / "README.md").read_text()
    assert text.count("\n## ") == 2 and "unrelated" not in text
    assert "## runs/quickstart/student on amx (test cpu), threads 1, 2" in text and "chose x on this amx CPU" in text
    assert "| auto | 1 | 12.50 | – | – | – | 0.7000 | 0.9910 | 0.9950 |" in text
    assert "| auto | 2 | 3.25 | – | – | – | 0.7000 | 0.9910 | 0.9950 |" in text


def test_interleaved_table_bolds_the_fastest_export_that_passes_autos_gate():
    from bench.cpu_paths_interleaved import table

    figures = {"1": {"pytorch-fp32": {"b1": 1.0, "b32": 9.0},  # the reference: never bold, even when fastest
                     "full-int8": {"b1": 2.0, "b32": 20.0},  # fastest export, but under the gate
                     "auto": {"b1": 3.0, "b32": 31.0},
                     "peer": {"b1": 4.0, "b32": 30.0}}}  # no cosine recorded: counted as passing
    text = table(figures, ["b1", "b32"], {"full-int8": 0.97, "auto": 0.995})
    lines = text.splitlines()
    assert lines[0] == "| path | threads | b1 ms | b32 ms | real cosine |"
    assert "| pytorch-fp32 | 1 | 1.00 | 9.00 | 1 (reference) |" in lines
    assert "| full-int8 | 1 | 2.00 | 20.00 | 0.9700 |" in lines
    assert "| auto | 1 | **3.00** | 31.00 | 0.9950 |" in lines
    assert "| peer | 1 | 4.00 | **30.00** | – |" in lines


def test_deployment_rows_are_named_and_drawn_by_their_export_profile() -> None:
    assert deployment.row_format("mpnet-c1-onnx-int8") == ("ONNX INT8", "^")
    assert deployment.row_format("mpnet-c1-onnx-int8-attention") == ("ONNX INT8 attention", "v")  # the longest suffix
    assert deployment.row_format("teacher-openvino")[1] == "D" and deployment.row_format("teacher") == ("PyTorch", "o")
    assert set(deployment.PROFILES) <= set(deployment.FORMATS)
    from minilm_deploy.export.profile import load_profile

    for profile in deployment.FORMATS:  # every name is a profile the project ships
        load_profile(profile)
    # every format's marker has the glyph the plot's title shows (a new profile once crashed the plot after timing)
    assert {marker for _, _, marker in deployment.FORMATS.values()} | {"o"} <= set(deployment.MARKER_GLYPHS)


def test_distill_throughput_report_says_how_it_was_made_and_warns_only_of_a_busy_machine(tmp_path) -> None:
    from bench import distill_throughput

    result = json.loads((distill_throughput.RESULTS / "distill_throughput_avx2_2threads.json").read_text())
    stem = tmp_path / "mine"
    distill_throughput.report(result, stem)
    text = stem.with_suffix(".md").read_text()
    assert f"Reproduce: `python -m bench.distill_throughput --out {stem}`" in text  # 2 threads: the default
    assert "The 1-minute load average at start (1.4)" in text  # 1.4 + 2 threads > 2 cores
    assert "target is not reached" in text
    other = {**result, "setting": {**result["setting"], "threads": 1, "steps": 8}, "speedup_tokens_per_s": 1.6,
             "machine": {**result["machine"], "load_average_start": [3.0, 2.5, 2.0]}}
    distill_throughput.report(other, stem)
    text = stem.with_suffix(".md").read_text()
    assert f"`python -m bench.distill_throughput --steps 8 --threads 1 --out {stem}`" in text
    assert "target is met here" in text and "load average" not in text  # one thread waits for no other
    quiet = {**result, "machine": {**result["machine"], "load_average_start": [0.2, 0.5, 1.0]}}
    distill_throughput.report(quiet, stem)
    assert "load average at start (" not in stem.with_suffix(".md").read_text()
    assert "both under bf16" not in stem.with_suffix(".md").read_text()  # a record from before naive-bf16 was timed
    both = json.loads((distill_throughput.RESULTS / "distill_throughput_amx_1thread_naive_bf16_stop36.json").read_text())
    distill_throughput.report(both, stem)
    text = stem.with_suffix(".md").read_text()
    assert "| naive-bf16 |" in text and "both under bf16 autocast: **1.26x**" in text and "not reached there" in text
    fp32_only = {**result, "setting": {**result["setting"], "fp32_only": True},
                 "results": {k: v for k, v in result["results"].items() if not k.endswith("-bf16")}}
    for key in ("bf16_speedup_tokens_per_s", "bf16_loss_difference"):
        del fp32_only[key]
    distill_throughput.report(fp32_only, stem)
    text = stem.with_suffix(".md").read_text()
    assert "| minilm-bf16 |" not in text and "bf16 not run (`--fp32-only`)" in text
    assert "fast dropout" not in text  # the student of that record had no dropout
    distill_throughput.report({**fp32_only, "setting": {**fp32_only["setting"], "dropout": 0.1}}, stem)
    assert "runs `models.cpu_training`'s fast dropout" in stem.with_suffix(".md").read_text()
    assert f"`python -m bench.distill_throughput --fp32-only --out {stem}`" in text


def test_cpu_training_report_reads_its_records_and_says_how_they_were_made(tmp_path) -> None:
    from bench import cpu_training

    result = json.loads((cpu_training.harness.RESULTS / "cpu_training_amx_bf16.json").read_text())
    stem = tmp_path / "mine"
    cpu_training.report(result, stem)
    text = stem.with_suffix(".md").read_text()
    assert f"Reproduce: `python -m bench.cpu_training --out {stem}`" in text and "# Real distill on a CPU (bf16)" in text
    assert all(text.count(f"| {way} |") == 2 for way in ("cpu-training", "torch-dropout", "torch"))
    assert "| default-adamw |" not in text and "torch-dropout **1.06x**" in text  # a record from before that way
    assert "student dropout 0.1 (the teacher's, the default)" in text
    fp32 = {**result, "setting": {**result["setting"], "precision": "fp32", "dropout": 0.0, "tokens": 64_000}}
    cpu_training.report(fp32, stem)
    assert f"`python -m bench.cpu_training --tokens 64000 --precision fp32 --dropout 0.0 --out {stem}`" in \
        stem.with_suffix(".md").read_text()


def test_cpu_training_runs_the_ways_asked_for_the_trainer_as_it_is_first(tmp_path) -> None:
    from bench import cpu_training

    assert cpu_training.selected_ways("cpu-training, glibc-heap") == ("cpu-training", "glibc-heap")
    for wrong in ("glibc-heap,cpu-training", "cpu-training,jemalloc", ""):
        with pytest.raises(SystemExit, match="--ways"):
            cpu_training.selected_ways(wrong)
    record = {"way": "x", "wall_s": 10.0, "tokens_per_s": 100.0, "minor_faults": 123_456, "peak_rss_mib": 1250.4,
              "final": {"tokens_per_s": 110.0, "loss": 0.5}}
    result = json.loads((cpu_training.harness.RESULTS / "cpu_training_amx_bf16.json").read_text())
    result = {**result, "setting": {**result["setting"], "ways": "cpu-training,glibc-heap"},
              "runs": {"cpu-training": [record], "glibc-heap": [{**record, "tokens_per_s": 80.0}]},
              "medians": {"cpu-training": {"tokens_per_s": 100.0}, "glibc-heap": {"tokens_per_s": 80.0}},
              "speedup": {"glibc-heap": 1.25}}
    stem = tmp_path / "heap"
    cpu_training.report(result, stem)
    text = stem.with_suffix(".md").read_text()
    assert "| 123,456 | 1,250 |" in text and "glibc-heap **1.25x**" in text and "| torch |" not in text
    assert f"`python -m bench.cpu_training --ways cpu-training,glibc-heap --out {stem}`" in text


def test_openvino_int8_variants_are_valid_profiles_settings_and_the_table_reads_the_record() -> None:
    from dataclasses import replace

    from bench import openvino_int8
    from minilm_deploy.export.profile import Quantization

    for variant in openvino_int8.VARIANTS.values():  # every role a variant keeps in float is one the profile takes
        replace(Quantization(), float_matmuls=variant.float_matmuls)
    record = {"cpu": "Some CPU", "cpu_class": "amx", "openvino": "x", "nncf": "y", "inference_precision": "bf16",
              "rounds": 3, "model": "m", "task": "t", "command": "python -m bench.openvino_int8 --model m",
              "pytorch": {"dev_accuracy": 84.25, "test_accuracy": 85.58},
              "variants": {"bf16": {"dev_agreement": 100.0, "ms": 30.0, "rounds_ms": [30.0]},
                           "int8-smoothquant": {"dev_agreement": 99.02, "test_accuracy": 85.67, "ms": 20.0,
                                                "rounds_ms": [19.0, 20.0, 21.0]}}}
    text = openvino_int8.table(record)
    assert "Some CPU (amx)" in text and "dev 84.25, test 85.58" in text
    row = next(line for line in text.splitlines() if line.startswith("| int8-smoothquant:"))
    assert "| 99.02 |" in row and "| 85.67 |" in row and "20.0 (19.0, 20.0, 21.0)" in row and row.endswith("| 1.50x |")
