"""What every evidence script under bench/ shares: where results go, the one writer, CPU time, and the
one way a student comes to be (the library's own `run_distill`, 0 steps for an initialised student).

Timing is not here: every latency goes through `minilm_deploy.bench.timing` (`measure`, or `PhaseClock`
for the parts of a training step), the module `minilm bench` itself uses.

Scripts run from the repository root as modules (the root is on the import path; nothing edits it):

    .venv/bin/python -m bench.students plan
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "runs"


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def save_record(path: Path, record: dict[str, Any]) -> None:
    """One result as JSON, stamped with its creation time, written atomically (a killed run leaves none)."""
    write_report(path, {**record, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2)


def write_report(path: Path, record: Any = None, markdown: str | None = None, *, indent: int = 1) -> None:
    """`path` with suffix .json (the record) and/or .md (the table), each written atomically."""
    from minilm_deploy.paths import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    if record is not None:
        atomic_write_text(path.with_suffix(".json"), json.dumps(record, indent=indent, default=str) + "\n")
    if markdown is not None:
        atomic_write_text(path.with_suffix(".md"), markdown if markdown.endswith("\n") else markdown + "\n")


def changed_options(values: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    """`--name value` for each of `values` that differs from its default (a switch, true where its default is false:
    `--name`): the options a Reproduce line needs."""
    return [f"--{key.replace('_', '-')}" + ("" if value is True and defaults.get(key) is False else f" {value}")
            for key, value in values.items() if value != defaults.get(key)]


def distill_student(recipe_dict: dict[str, Any], label: str) -> dict[str, Any]:
    """The student of `recipe_dict` through the library (resumed if interrupted; `train.steps: 0` writes it
    initialised, untrained): its run.json, plus this session's CPU and wall seconds."""
    from minilm_deploy.distill.pipeline import run_distill
    from minilm_deploy.recipe import recipe_from_dict

    recipe = recipe_from_dict(recipe_dict, source=label)
    cpu, wall = cpu_seconds(), time.perf_counter()
    run_distill(recipe, resume=True)
    run = json.loads((Path(recipe.output_dir) / "student" / "run.json").read_text())
    return {**run, "cpu_seconds_this_session": round(cpu_seconds() - cpu, 1),
            "wall_seconds_this_session": round(time.perf_counter() - wall, 1)}


def add_worker_options(parser: argparse.ArgumentParser, workers: tuple[str, ...], *, threads: int, out: Path) -> None:
    """The options `interleaved_workers` and `worker_or_main` rely on: the hidden `--worker`, `--rounds`, `--threads`
    and `--out` (the report's path stem, which `reproduce_line` compares with its default)."""
    parser.add_argument("--worker", choices=workers, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=threads)
    parser.add_argument("--out", type=Path, default=out)


def interleaved_workers(module: str, workers: tuple[str, ...], rounds: int, threads: int) -> dict[str, list[dict]]:
    """`python -m <module> --worker W <this command's arguments>` for each of `workers`, each in a fresh process
    with OMP_NUM_THREADS=`threads`, in `rounds` alternating rounds: each worker's records (its stdout's last line,
    JSON), in order. A worker that fails stops the script with its stderr's tail."""
    runs: dict[str, list[dict]] = {w: [] for w in workers}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    for _ in range(rounds):
        for worker in workers:
            cmd = [sys.executable, "-m", module, "--worker", worker, *sys.argv[1:]]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
            if done.returncode:
                raise SystemExit(f"{worker} failed:\n{done.stderr[-3000:]}")
            runs[worker].append(json.loads(done.stdout.strip().splitlines()[-1]))
            rate = next(key for key in runs[worker][-1] if key.endswith("_per_s"))  # tokens_per_s, examples_per_s
            print(f"{worker}: {runs[worker][-1][rate]:.0f} {rate.removesuffix('_per_s')}/s", file=sys.stderr)
    return runs


def reproduce_line(module: str, setting: dict[str, Any], stem: Path, parse: Callable[[list[str]], Any]) -> str:
    """The command that measures `setting` again into `stem`: `python -m <module>` with the options that differ
    from `parse`'s defaults (keys `parse` does not know are left out)."""
    defaults = vars(parse([]))
    command = [f"python -m {module}", *changed_options({k: v for k, v in setting.items() if k in defaults}, defaults)]
    if stem != defaults["out"]:
        command.append(f"--out {stem.relative_to(ROOT) if stem.is_relative_to(ROOT) else stem}")
    return " ".join(command)


def worker_or_main(parse: Callable[[], Any], worker: Callable[[Any], dict], main_run: Callable[[Any], dict],
                   report: Callable[[dict, Path], None]) -> None:
    """A script of `interleaved_workers`: as `--worker W`, print one record (JSON) and stop; else run the workers,
    write the report to `--out` and print its table."""
    arguments = parse()
    if arguments.worker:
        print(json.dumps(worker(arguments)))
        return
    report(main_run(arguments), arguments.out)
    print(arguments.out.with_suffix(".md").read_text())
