"""bench/students.py (issue 14's evidence): the runs it plans are the recipes it says, and summary.json,
the table and the crossover plot are computed from the per-run records as documented."""

from __future__ import annotations

import json
import statistics
from dataclasses import fields
from pathlib import Path

import pytest

from bench import students, students_table  # the repository root is on pytest's path (pyproject)
from minilm_deploy.finetune.recipe import TaskDistillRecipe
from minilm_deploy.recipe import recipe_from_dict

ROOT = Path(__file__).resolve().parents[1]


def test_variants_map_to_the_recipes_the_docstring_describes() -> None:
    def recipe(variant: str, tokens: str = "1M"):
        run = students.Run.parse(f"3x384:{variant}:{tokens}:rotten-tomatoes:1")
        return recipe_from_dict(students.distill_recipe(run, teacher_layers=6)).distill

    c, c1 = recipe("c", "0"), recipe("c1", "0")
    assert c.student.init_layers == (0, 2, 4) and c1.student.init_layers is None  # c1: the default (0, 2, 5)
    assert c.train.total_steps() == c1.train.total_steps() == 0
    assert recipe("c1-minilm").loss.active_parts() == ("attention", "value")
    assert recipe("c1-hidden").loss.active_parts() == ("hidden", "embedding")
    both = recipe("c1-both")
    assert both.loss.active_parts() == ("attention", "value", "hidden", "embedding")
    assert both.train.total_steps() == 500 and both.train.lr == 1e-4  # 1,024,000 tokens at 32 x 64
    assert recipe("rand-both").student.init == "random" and recipe("rand-both").train.lr == 1e-3
    pruned, pruned_both = recipe("p1", "0"), recipe("p1-both")
    assert pruned.student.init == pruned_both.student.init == "teacher-pruned" and pruned_both.train.lr == 1e-4
    assert pruned_both.loss.relation_heads == students.PRUNED_RELATION_HEADS and c1.loss.relation_heads is None
    mixture = recipe("c1-both-rt").corpus_parts()
    assert [(p.source, p.weight) for p in mixture] == [("zoo:corpus-en", 0.5), ("zoo:rotten-tomatoes", 0.5)]


def test_bad_run_names_are_refused() -> None:
    with pytest.raises(SystemExit, match="unknown variant"):
        students.Run.parse("3x384:nope:0:rotten-tomatoes:1")
    with pytest.raises(SystemExit, match="take 0 tokens"):
        students.Run.parse("3x384:c1:1M:rotten-tomatoes:1")
    with pytest.raises(SystemExit, match="expected GROUP"):
        students.Run.parse("3x384:c1")
    assert students.Run.parse("4x384:teacher:0:trec:2").label == "minilm-6x384"  # a teacher's runs are shared
    with pytest.raises(SystemExit, match="take 0 tokens"):
        students.Run.parse("3x384:c1-kd:1M:rotten-tomatoes:1")


def test_task_distillation_variants_fine_tune_the_same_student_from_the_same_seed_teacher() -> None:
    kd = students.Run.parse("3x384:c1-both-kd:1M:trec:2")
    plain = students.Run.parse("3x384:c1-both:1M:trec:2")
    assert kd.kd and not plain.kd and kd.base() == plain
    assert kd.student_key == plain.student_key == "3x384-c1-both-1M"  # one distilled encoder, two fine-tunings
    assert kd.output != plain.output and kd.result != plain.result
    assert kd.teacher_run() == students.Run.parse("3x384:teacher:0:trec:2")
    assert students.distill_recipe(kd, 6) == students.distill_recipe(plain, 6)


def test_task_teacher_variants_copy_and_distill_the_fine_tuned_teacher_of_their_task_and_seed() -> None:
    both = students.Run.parse("3x384:t1-both:1M:trec:2")
    recipe = students.distill_recipe(both, 6)
    assert recipe["teacher"] == str(students.Run.parse("3x384:teacher:0:trec:2").output)  # the fine-tuned one
    distill = recipe_from_dict(recipe).distill
    assert [(p.source, p.weight) for p in distill.corpus_parts()] == [("zoo:trec", 1.0)]  # its own training texts
    assert distill.loss.active_parts() == ("attention", "value", "hidden", "embedding")
    assert distill.student.init == "teacher-layers" and distill.student.init_layers is None  # the new picks
    # one student per task and seed (its teacher is); -kd fine-tunes the same one
    assert both.student_key == "3x384-t1-both-1M-trec-s2" == students.Run.parse("3x384:t1-both-kd:1M:trec:2").student_key
    assert students.Run.parse("3x384:t1-both:1M:trec:3").student_key != both.student_key
    copy = recipe_from_dict(students.distill_recipe(students.Run.parse("3x384:t1:0:rotten-tomatoes:1"), 6)).distill
    assert copy.train.total_steps() == 0
    pruned = students.Run.parse("mpnet-6x384:t1-pruned:0:rotten-tomatoes:2")
    recipe = students.distill_recipe(pruned, 12)
    assert recipe["teacher"] == str(students.Run.parse("mpnet-6x384:teacher:0:rotten-tomatoes:2").output)
    distill = recipe_from_dict(recipe).distill
    assert distill.student.init == "teacher-pruned" and (distill.student.layers, distill.student.hidden) == (6, 384)
    assert [p.source for p in distill.corpus_parts()] == ["zoo:rotten-tomatoes"]  # ranked on the task's training texts
    assert not students.Run.parse("3x384:c1-both:1M:trec:2").task_teacher
    with pytest.raises(SystemExit, match="take 0 tokens"):
        students.Run.parse("3x384:t1:1M:rotten-tomatoes:1")


def test_pruning_in_steps_cuts_the_depth_then_prunes_the_width_of_that_fine_tuned_model() -> None:
    wide = students.Run.parse("3x192:t1-wide-kd-aug:0:rotten-tomatoes:2")
    recipe = students.distill_recipe(wide, 6, teacher_hidden=384)
    assert recipe["teacher"] == str(wide.teacher_run().output)
    assert recipe["distill"]["student"] == {"layers": 3, "hidden": 384, "init": "teacher-layers"}  # the depth cut only
    with pytest.raises(ValueError, match="teacher_hidden"):
        students.distill_recipe(wide, 6)
    steps = students.Run.parse("3x192:t1-steps-kd-aug:0:rotten-tomatoes:2")
    assert steps.source_run() == wide  # the same task and seed
    recipe = students.distill_recipe(steps, 3, teacher_hidden=384)
    assert recipe["teacher"] == str(wide.output)  # pruned from the wide student's fine-tuned model ...
    distill = recipe_from_dict(recipe).distill
    assert (distill.student.layers, distill.student.hidden, distill.student.init) == (3, 192, "teacher-pruned")
    assert [p.source for p in distill.corpus_parts()] == ["zoo:rotten-tomatoes"]
    assert steps.kd and steps.teacher_run() == wide.teacher_run()  # ... and fine-tuned with the teacher's soft targets
    one_step = students.VARIANTS["t1-pruned-kd-aug"]
    for variant in ("t1-steps-kd-aug", "t1-wide-kd-aug"):  # both steps fine-tune as the one-step recipe does
        assert (students.VARIANTS[variant].finetune, students.VARIANTS[variant].task_distill) == (
            one_step.finetune, one_step.task_distill)


def test_pruning_in_three_steps_narrows_the_width_halfway_then_to_the_groups() -> None:
    wide = students.Run.parse("3x192:t1-wide-kd-aug:0:rotten-tomatoes:3")
    mid = students.Run.parse("3x192:t1-mid-kd-aug:0:rotten-tomatoes:3")
    assert mid.source_run() == wide
    recipe = students.distill_recipe(mid, 3, teacher_hidden=384)
    assert recipe["teacher"] == str(wide.output)
    distill = recipe_from_dict(recipe).distill
    assert (distill.student.layers, distill.student.hidden, distill.student.init) == (3, 288, "teacher-pruned")
    with pytest.raises(ValueError, match="teacher_hidden"):
        students.distill_recipe(mid, 3)
    last = students.Run.parse("3x192:t1-steps3-kd-aug:0:rotten-tomatoes:3")
    assert last.source_run() == mid and last.teacher_run() == mid.teacher_run() == wide.teacher_run()
    recipe = students.distill_recipe(last, 3, teacher_hidden=384)
    assert recipe["teacher"] == str(mid.output)
    assert recipe_from_dict(recipe).distill.student.hidden == 192
    mpnet = students.distill_recipe(students.Run.parse("mpnet-6x384:t1-mid-kd-aug:0:rotten-tomatoes:1"), 6, 768)
    assert mpnet["distill"]["student"]["hidden"] == 576  # 9 heads of 64
    one_step = students.VARIANTS["t1-pruned-kd-aug"]
    for variant in ("t1-mid-kd-aug", "t1-steps3-kd-aug"):
        assert (students.VARIANTS[variant].finetune, students.VARIANTS[variant].task_distill) == (
            one_step.finetune, one_step.task_distill)


def test_the_last_steps_variants_change_one_thing_each_against_t1_steps_kd_aug() -> None:
    base = students.VARIANTS["t1-steps-kd-aug"]
    assistant = students.Run.parse("3x192:t1-steps-kd-aug-ta:0:rotten-tomatoes:2")
    wide = students.Run.parse("3x192:t1-wide-kd-aug:0:rotten-tomatoes:2")
    assert assistant.kd_teacher_run() == wide  # the soft targets from the 3x384 middle step of the same seed ...
    assert assistant.base() == students.Run.parse("3x192:t1-steps:0:rotten-tomatoes:2")  # ... for the same student
    assert assistant.output.parent == students.Run.parse("3x192:t1-steps-kd-aug:0:rotten-tomatoes:2").output.parent
    steps = students.Run.parse("3x192:t1-steps-kd-aug:0:rotten-tomatoes:2")
    assert steps.kd_teacher_run() == steps.teacher_run()  # without kd_from: the teacher
    for name, changed in (("t1-steps-kd-aug-ta", {}), ("t1-steps-kd-aug-lr3", {"lr": 3.0e-4}),
                          ("t1-steps-kd-aug-e4", {"epochs": 4})):
        variant = students.VARIANTS[name]
        assert (variant.finetune, variant.task_distill) == (base.finetune | changed, base.task_distill)
        assert variant.student == base.student == "t1-steps"


def test_the_refit_variant_is_t1_pruned_with_refit_in_its_recipe_and_fine_tuned_alike() -> None:
    refit = students.distill_recipe(students.Run.parse("3x192:t1-pruned-refit:0:rotten-tomatoes:2"), 6)
    plain = students.distill_recipe(students.Run.parse("3x192:t1-pruned:0:rotten-tomatoes:2"), 6)
    assert refit["distill"]["student"] == plain["distill"]["student"] | {"refit": True}
    assert refit["teacher"] == plain["teacher"]  # the same seed's fine-tuned teacher, ranked on the same texts
    assert refit["distill"]["corpus"] == plain["distill"]["corpus"]
    candidate, baseline = students.VARIANTS["t1-pruned-refit-kd-aug"], students.VARIANTS["t1-pruned-kd-aug"]
    assert (candidate.finetune, candidate.task_distill) == (baseline.finetune, baseline.task_distill)


def test_the_steps_refit_variant_is_t1_steps_with_refit_pruned_from_the_same_wide_model() -> None:
    refit = students.Run.parse("3x192:t1-steps-refit-kd-aug:0:rotten-tomatoes:2")
    steps = students.Run.parse("3x192:t1-steps-kd-aug:0:rotten-tomatoes:2")
    assert refit.source_run() == steps.source_run() == students.Run.parse("3x192:t1-wide-kd-aug:0:rotten-tomatoes:2")
    with_refit, plain = (students.distill_recipe(run, 3, teacher_hidden=384) for run in (refit, steps))
    assert with_refit["distill"]["student"] == plain["distill"]["student"] | {"refit": True}
    assert with_refit["teacher"] == plain["teacher"] == str(steps.source_run().output)  # fit to the wide model
    assert with_refit["distill"]["corpus"] == plain["distill"]["corpus"]
    assert refit.kd_teacher_run() == steps.kd_teacher_run() == steps.teacher_run()  # soft targets from the teacher
    assert refit.output.parent != steps.output.parent  # its own student
    candidate, baseline = students.VARIANTS["t1-steps-refit-kd-aug"], students.VARIANTS["t1-steps-kd-aug"]
    assert (candidate.finetune, candidate.task_distill) == (baseline.finetune, baseline.task_distill)


def _record(student: str, variant: str, tokens: str, seed: int, accuracy: float, task: str = "rotten-tomatoes") -> dict:
    return {"kind": "finetune", "student": student, "variant": variant, "tokens": students.TOKENS[tokens],
            "tokens_label": tokens, "task": task, "seed": seed, "metric": "accuracy", "test": {"accuracy": accuracy},
            "cpu_class": "avx2"}


def test_summary_table_and_crossover_plot(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    records = [_record("minilm-6x384", "teacher", "0", s, a) for s, a in ((1, 0.82), (2, 0.83), (3, 0.81))]
    records += [_record("3x384", "c", "0", s, a) for s, a in ((1, 0.79), (2, 0.80))]
    records += [_record("3x384", "c1", "0", 1, 0.80), _record("3x384", "c1-both", "1M", 1, 0.805),
                _record("3x384", "c1-both", "4M", 1, 0.81), _record("3x384", "c1", "0", 1, 0.70, task="trec"),
                _record("3x384", "c1-both-kd", "1M", 1, 0.812)]
    for i, record in enumerate(records):
        (runs / f"{i}.json").write_text(json.dumps(record))
    (runs / "d.json").write_text(json.dumps({"kind": "distill", "student": "3x384", "variant": "c1-both",
                                             "tokens_label": "1M", "cpu_seconds_this_session": 612.0}))
    students_table.write_all(runs, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    teacher = next(r for r in summary if r["variant"] == "teacher")
    assert teacher == {**teacher, "student": "minilm-6x384", "task": "rotten-tomatoes", "tokens": 0, "seeds": [1, 2, 3],
                       "accuracy": [0.82, 0.83, 0.81], "mean": pytest.approx(0.82),
                       "std": pytest.approx(statistics.stdev([0.82, 0.83, 0.81]))}
    single = next(r for r in summary if r["variant"] == "c1-both" and r["tokens"] == 1_024_000)
    assert single["std"] is None and single["seeds"] == [1]
    table = (tmp_path / "students.md").read_text()
    assert "| 3x384 | c: layer copy, old picks (every k-th from 0), no distillation | 0 | 79.5 ± 0.7 (2 seeds) | – | 97.0 | – | avx2 fp32 |" in table
    assert "| 612 |" in table and "70.0 (1 seed)" in table
    kd_row = next(line for line in table.splitlines() if line.startswith("| 3x384 | c1-both-kd:"))
    assert kd_row.endswith("| 81.2 (1 seed) | – | 99.0 | 612 | avx2 fp32 |")  # a -kd row shows its student's distillation
    assert (tmp_path / "crossover.png").stat().st_size > 1000 and "crossover.png" in table


def test_a_student_distilled_once_per_seed_shows_the_mean_cpu_and_each_row_says_where_it_ran(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    records = [_record("minilm-6x384", "teacher", "0", 1, 0.82),
               {**_record("3x384", "t1-both-kd", "1M", 1, 0.81)},
               {**_record("3x384", "t1-both-kd", "1M", 2, 0.80), "cpu_class": "amx", "bf16": True},
               {**_record("minilm-6x384", "teacher", "0", 2, 0.5), "kind": "finetune-remade"}]  # not a result
    records += [{"kind": "distill", "student": "3x384", "variant": "t1-both", "tokens_label": "1M", "task": "rotten-tomatoes",
                 "seed": seed, "cpu_seconds_this_session": cpu} for seed, cpu in ((1, 1000.0), (2, 400.0))]
    records.append({**records[-1], "kind": "distill-remade", "cpu_seconds_this_session": 9999.0})  # not a result either
    for i, record in enumerate(records):
        (runs / f"{i}.json").write_text(json.dumps(record))
    students_table.write_all(runs, tmp_path)
    row = next(line for line in (tmp_path / "students.md").read_text().splitlines() if "| t1-both-kd:" in line)
    assert row.endswith("| 700 (mean of 2) | amx bf16; avx2 fp32 |")
    summary = json.loads((tmp_path / "summary.json").read_text())
    kd = next(r for r in summary if r["variant"] == "t1-both-kd")
    assert (kd["cpu_class"], kd["where"]) == ("amx, avx2", "amx bf16; avx2 fp32")
    assert next(r for r in summary if r["variant"] == "teacher")["seeds"] == [1]


def test_a_row_whose_tasks_ran_on_different_machines_says_where_each_ran(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    records = [_record("3x384", "c1", "0", 1, 0.80), {**_record("3x384", "c1", "0", 2, 0.81), "cpu_class": "amx", "bf16": True},
               {**_record("3x384", "c1", "0", 1, 0.90), "task": "trec", "cpu_class": "amx", "bf16": True}]
    for i, record in enumerate(records):
        (runs / f"{i}.json").write_text(json.dumps(record))
    students_table.write_all(runs, tmp_path)
    row = next(line for line in (tmp_path / "students.md").read_text().splitlines() if "| c1:" in line)
    assert row.endswith("| rotten-tomatoes: amx bf16; avx2 fp32; trec: amx bf16 |")


def test_variants_say_once_what_each_is() -> None:
    assert [name for name, v in students.VARIANTS.items() if not v.distilled] == [
        "teacher", "c", "c1", "p1", "c1-kd", "t1", "t1-kd", "t1-pruned", "t1-pruned-kd", "t1-pruned-kd-e8",
        "t1-pruned-kd-aug", "t1-pruned-kd-aug7", "t1-pruned-kd-aug-hid", "t1-wide", "t1-wide-kd-aug", "t1-steps",
        "t1-steps-kd-aug", "t1-steps-kd-aug-ta", "t1-steps-kd-aug-lr3", "t1-steps-kd-aug-e4", "t1-mid", "t1-mid-kd-aug",
        "t1-steps3", "t1-steps3-kd-aug", "t1-pruned-refit", "t1-pruned-refit-kd-aug", "t1-steps-refit",
        "t1-steps-refit-kd-aug", "l6", "l6-kd", "l6-kd-aug"]
    folders = [(students.student_variant(name), v.tag) for name, v in students.VARIANTS.items()]
    assert len(set(folders)) == len(folders)  # no two variants fine-tune one student into one folder
    for name, variant in students.VARIANTS.items():
        assert variant.kd == ("-kd" in name) == bool(variant.tag) and variant.task_teacher == name.startswith("t1")
        assert set(variant.finetune) <= set(students.FINETUNE)  # overrides of known settings only
        assert set(variant.task_distill) <= {f.name for f in fields(TaskDistillRecipe)}
        base = students.VARIANTS[variant.student] if variant.kd else variant
        assert (base.loss, base.corpus, base.init, base.pretrained, base.source, base.width, base.refit) == (
            variant.loss, variant.corpus, variant.init, variant.pretrained, variant.source, variant.width, variant.refit)
        assert not variant.refit or variant.init == "teacher-pruned"
        assert variant.width in ("group", "teacher", "midway")
        assert not variant.source or (variant.source in students.VARIANTS and variant.task_teacher)
        assert not variant.kd_from or (variant.kd and students.VARIANTS[variant.kd_from].kd)  # a fine-tuned model
        assert not (variant.pretrained and variant.distilled)  # a pretrained student is taken as it is


def test_a_pretrained_student_is_taken_as_it_is_where_its_shape_is_the_groups() -> None:
    assert students.ensure_student(students.Run.parse("mpnet-6x384:l6-kd-aug:0:rotten-tomatoes:1").base()) == \
        "zoo:all-minilm-l6-v2"
    with pytest.raises(SystemExit, match="zoo:all-minilm-l6-v2 is 6x384, not a 3x384 student"):
        students.ensure_student(students.Run.parse("3x384:l6:0:rotten-tomatoes:1"))


def test_a_stop_during_the_plan_is_one_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def stopped(run: students.Run) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(students, "finetune", stopped)
    monkeypatch.setattr("sys.argv", ["students", "run", "--only", "3x384:c1:0:rotten-tomatoes:1"])
    with pytest.raises(SystemExit, match="stopped; the last checkpoint is kept"):
        students.main()


def test_a_teacher_remade_for_its_folder_keeps_its_recorded_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import minilm_deploy.finetune.api as api

    monkeypatch.setattr(students, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(students, "WORK", tmp_path / "work")
    split = {"accuracy": 0.9}
    monkeypatch.setattr(api, "finetune_model", lambda *a, **k: {  # the fine-tuning itself is tested elsewhere
        "metric": "accuracy", "splits": {"test": split, "dev": split}, "runs": [{"best_epoch": 1, "bf16": True}],
        "train_seconds": 1.0, "wall_seconds": 1.0})
    teacher = students.Run.parse("3x384:teacher:0:trec:2")
    students.harness.save_record(teacher.result, {"kind": "finetune", "test": {"accuracy": 0.8}})
    students.finetune(teacher, needed_as_teacher=True)  # its model folder is missing: remade
    assert json.loads(teacher.result.read_text())["test"] == {"accuracy": 0.8}  # the recorded result is kept
    remade = [json.loads(p.read_text()) for p in teacher.result.parent.glob("*-remade-*.json")]
    assert [(r["kind"], r["test"], r["bf16"]) for r in remade] == [("finetune-remade", split, True)]


def test_a_student_remade_for_its_folder_keeps_its_recorded_distillation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from minilm_deploy import hardware

    monkeypatch.setattr(students, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(students, "WORK", tmp_path / "work")
    monkeypatch.setattr(hardware, "cpu_class", lambda: "avx2")
    distilled = {"tokens": 1_024_000, "steps": 500, "final": {"loss": 0.5}, "init": "teacher-layers",
                 "student": {"parameters": 1}, "teacher": {"parameters": 2}, "recipe": {"distill": {}},
                 "cpu_seconds_this_session": 1.0, "wall_seconds_this_session": 1.0}
    monkeypatch.setattr(students.harness, "distill_student", lambda recipe, label: distilled)  # tested elsewhere
    run = students.Run.parse("4x384:c1-both:1M:rotten-tomatoes:2")
    first = students.RUNS / "4x384-c1-both-1M-distill.json"
    students.ensure_student(run)  # nothing recorded: the record
    assert json.loads(first.read_text())["kind"] == "distill"
    students.harness.save_record(first, {"kind": "distill", "final": {"loss": 0.4}, "bf16": True})  # an earlier machine's
    students.ensure_student(run)  # its folder is missing (distill_student is faked): remade, recorded beside
    assert json.loads(first.read_text())["final"] == {"loss": 0.4}
    remade = json.loads((students.RUNS / "4x384-c1-both-1M-distill-remade-avx2.json").read_text())
    assert (remade["kind"], remade["final"]) == ("distill-remade", {"loss": 0.5})
    student = students.WORK / "4x384-c1-both-1M" / "student"  # where a fine-tuning record says its student was made
    assert students._made_on(student) is None
    student.mkdir(parents=True)
    (student / "run.json").write_text(json.dumps({"cpu": {"class": "avx2"}, "bf16": False, "final": {"loss": 0.5}}))
    assert students._made_on(student) == {"cpu_class": "avx2", "bf16": False, "final_loss": 0.5}


def test_the_claim_pairs_seeds_and_compares_against_the_better_baseline_and_two_of_its_stds(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    records = [_record("minilm-6x384", "teacher", "0", s, 0.82) for s in (1, 2, 3)]
    records += [_record("3x384", "c", "0", s, a) for s, a in ((1, 0.79), (2, 0.81), (3, 0.80))]  # mean 0.80, std 0.01
    records += [_record("3x384", "c1", "0", s, a) for s, a in ((1, 0.805), (2, 0.807), (3, 0.809))]  # 0.807, std 0.002
    records += [_record("3x384", "t1-both-kd", "1M", s, a) for s, a in ((1, 0.81), (2, 0.815), (4, 0.90))]
    for i, record in enumerate(records):
        (runs / f"{i}.json").write_text(json.dumps(record))
    students_table.write_all(runs, tmp_path)
    claim = json.loads((tmp_path / "claim.json").read_text())
    ours = statistics.mean([0.81, 0.815, 0.90])
    assert claim["better_baseline"] == "c1" and claim["baseline_mean"] == pytest.approx(0.807)
    assert claim["margin_points"] == pytest.approx(100 * (ours - 0.807), abs=1e-3)
    assert claim["two_std_points"] == pytest.approx(0.4, abs=1e-3) and claim["above_by_two_std"]
    assert claim["retained_pct"] == pytest.approx(100 * ours / 0.82, abs=0.01)
    to_c = next(p for p in claim["paired"] if p["baseline"] == "c")
    assert to_c["seeds"] == [1, 2]  # seed 4 has no c: not paired
    assert to_c["diff_points"] == pytest.approx([2.0, 0.5]) and to_c["wins"] == 2
    assert to_c["mean"] == pytest.approx(1.25) and to_c["t"] == pytest.approx(1.25 / (statistics.stdev([2.0, 0.5]) / 2 ** 0.5), abs=1e-3)
    assert [p["baseline"] for p in claim["paired"]] == ["c", "c1"]  # t1, c1-kd, t1-kd: no records, no row
    assert "| c1: layer copy, new picks" in (tmp_path / "students.md").read_text()
    assert students_table.paired({}, ("3x384", "t1-both-kd", "1M", "trec"), ("3x384", "c", "0", "trec")) is None


def test_other_pairs_are_paired_by_seed_and_listed_only_with_two_seeds(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    records = [_record("4x384", "c1", "0", s, a) for s, a in ((1, 0.80), (2, 0.81), (3, 0.79))]
    records += [_record("4x384", "c1-both", "1M", s, a) for s, a in ((1, 0.81), (2, 0.80), (3, 0.81))]
    records.append(_record("4x384", "c", "0", 1, 0.78))  # one seed: no pair against c
    for i, record in enumerate(records):
        (runs / f"{i}.json").write_text(json.dumps(record))
    students_table.write_all(runs, tmp_path)
    pairs = students_table.other_pairs(students_table.load(runs)[0])
    assert [(p["candidate"], p["baseline"]) for p in pairs] == [("c1-both", "c1")]
    assert pairs[0]["diff_points"] == pytest.approx([1.0, -1.0, 2.0]) and pairs[0]["wins"] == 2
    assert "| 4x384 | rotten-tomatoes | c1-both (1,024,000 tokens) | c1 | [1, 2, 3] | +1.00, -1.00, +2.00 |" in (
        tmp_path / "students.md").read_text()


def test_each_curve_budget_is_paired_against_its_start_and_the_claims_pairs_are_not_repeated(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    records = [_record("3x384", "c1", "0", s, 0.80) for s in (1, 2)]
    records += [_record("3x384", "c1-both", "16M", s, a) for s, a in ((1, 0.79), (2, 0.805))]
    records += [_record("3x384", "t1-kd", "0", s, 0.80) for s in (1, 2)]
    records += [_record("3x384", "t1-both-kd", tokens, s, 0.81) for s in (1, 2) for tokens in ("1M", "4M")]
    for i, record in enumerate(records):
        (runs / f"{i}.json").write_text(json.dumps(record))
    pairs = students_table.other_pairs(students_table.load(runs)[0])
    # t1-both-kd at 1M against t1-kd is the claim's own pair (its section lists it): not listed twice
    assert [(p["candidate"], p["tokens"], p["baseline"]) for p in pairs] == [
        ("c1-both", 16_384_000, "c1"), ("t1-both-kd", 4_096_000, "t1-kd")]
    assert pairs[0]["diff_points"] == pytest.approx([-1.0, 0.5]) and pairs[0]["wins"] == 1


def test_the_claim_is_undecided_with_one_seed_on_either_side(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    records = [_record("minilm-6x384", "teacher", "0", 1, 0.82), _record("3x384", "c1", "0", 1, 0.80),
               _record("3x384", "t1-both-kd", "1M", 1, 0.81), _record("3x384", "t1-both-kd", "1M", 2, 0.815)]
    for i, record in enumerate(records):
        (runs / f"{i}.json").write_text(json.dumps(record))
    students_table.write_all(runs, tmp_path)
    claim = json.loads((tmp_path / "claim.json").read_text())
    assert claim["above_by_two_std"] is None and claim["two_std_points"] is None and claim["paired"] == []
    assert "**undecided**" in (tmp_path / "students.md").read_text()
