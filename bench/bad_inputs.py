"""Bad inputs as a newcomer gives them (issue 18), through the real `minilm` command line, case by case.

    .venv/bin/python -m bench.bad_inputs            # → bench/results/bad_inputs.json and .md

Each case runs the installed `minilm` in a fresh process on files made here (a tiny random BERT with the zoo
MiniLM's vocabulary, damaged copies of it, bad task files and recipes) and is "clean" when it does what the
issue asks: a refusal is exit code 1 or 2 with one `minilm: error:` line on stderr, no traceback, and nothing
partial left where the output would go; a case marked `survive` must succeed. Not a test (the suite has one per
root cause); this is the count the issue's closing note asks for.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench import harness

MINILM = str(Path(sys.executable).with_name("minilm"))


@dataclass
class Case:
    name: str
    args: list[str]
    expect: str = "refuse"  # "refuse" | "survive"
    output: str | None = None  # a path that must not exist afterwards (refusals)
    says: str = ""  # a phrase the error line must hold
    stdin: str | None = None
    env: dict[str, str] = field(default_factory=dict)


def tiny_bert(folder: Path, vocab_from: Path, classifier: bool = False) -> Path:
    """A 2-layer, 32-wide random BERT (a fine-tuned-looking 2-class classifier with `classifier`) with
    `vocab_from`'s tokenizer (a real vocabulary, so tokenisation is real)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    tokenizer = AutoTokenizer.from_pretrained(vocab_from)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, num_labels=2,
                        id2label={0: "0", 1: "1"}, label2id={"0": 0, "1": 1})
    (BertForSequenceClassification if classifier else BertModel)(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def damaged_copies(good: Path, root: Path) -> dict[str, Path]:
    out = {}
    out["truncated"] = shutil.copytree(good, root / "truncated")
    weights = out["truncated"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # an interrupted copy
    out["pickle"] = shutil.copytree(good, root / "pickle-only")
    (out["pickle"] / "model.safetensors").unlink()
    marker = root / "PICKLE-RAN"
    payload = ("import pickle, os\nclass P:\n    def __reduce__(self):\n"
               f"        return (os.system, ('touch {marker}',))\n")
    code = payload + f"open({str(out['pickle'] / 'pytorch_model.bin')!r}, 'wb').write(pickle.dumps(P()))\n"
    subprocess.run([sys.executable, "-c", code], check=True)
    out["vocab"] = shutil.copytree(good, root / "other-vocab")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (out["vocab"] / name).unlink(missing_ok=True)
    (out["vocab"] / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                                                      *[f"w{i}" for i in range(40_000)]]) + "\n")
    (out["vocab"] / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}))
    return out


def cases(root: Path) -> list[Case]:
    from minilm_deploy.sources import resolve_model

    zoo = resolve_model("zoo:all-minilm-l6-v2")
    good = tiny_bert(root / "tiny", zoo)
    bad = damaged_copies(tiny_bert(root / "tiny-classifier", zoo, classifier=True), root)  # eval takes task models
    file = root / "a-file"
    file.write_text("x")
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / "headerless.csv").write_text("".join(f"review number {i} was {'good' if i % 2 else 'bad'},{i % 2}\n" for i in range(40)))
    long_field = tasks / "long" / "train.csv"
    long_field.parent.mkdir()
    long_field.write_text("text,label\n" + "".join(f"\"{'long text ' * 20_000 if i == 0 else f'short {i}'}\",{i % 2}\n"
                                                   for i in range(40)))
    shutil.copyfile(long_field, long_field.with_name("dev.csv"))
    (tasks / "single.csv").write_text("text,label\n" + "".join(f"text {i},{i % 2}\n" for i in range(40)))
    recipe = root / "dup.yaml"
    recipe.write_text(f"name: dup\nteacher: {good}\nteacher: {good}\ndistill:\n  train: {{steps: 1}}\n")
    bad_recipe = root / "distill-bad-teacher.yaml"
    bad_recipe.write_text(json.dumps({"name": "b", "teacher": str(bad["truncated"]), "output_dir": str(root / "d-out"),
                                      "distill": {"corpus": str(tasks / "single.csv"), "student": {"layers": 1, "hidden": 32},
                                                  "train": {"steps": 1, "batch_size": 2, "max_length": 16}}}))
    fast = ["--set", "steps=1", "--set", "batch_size=4", "--set", "max_length=16", "--set", "eval_splits=[]"]
    out: list[Case] = []
    for kind, folder in bad.items():
        says = {"truncated": "truncated", "pickle": "safetensors", "vocab": "vocabulary"}[kind]
        out += [
            Case(f"export: {kind} model", ["export", str(folder), "-o", str(root / f"x-{kind}")], output=str(root / f"x-{kind}"), says=says),
            Case(f"finetune: {kind} model", ["finetune", str(folder), "--task", str(tasks / "single.csv"), *fast,
                                             "-o", str(root / f"f-{kind}")], output=str(root / f"f-{kind}"), says=says),
            Case(f"eval: {kind} model", ["eval", str(folder), "--task", str(tasks / "single.csv"), "--split", "train"], says=says),
        ]
    out += [
        Case("distill: truncated teacher", ["distill", str(bad_recipe)], output=str(root / "d-out"), says="truncated"),
        Case("export: -o below a regular file", ["export", str(good), "-o", str(file / "art")], says="cannot write"),
        Case("export: -o in an unwritable place", ["export", str(good), "-o", "/proc/minilm-art"], says="cannot write"),
        Case("finetune: -o below a regular file", ["finetune", str(good), "--task", str(tasks / "single.csv"), *fast,
                                                   "-o", str(file / "ft")], says="cannot write"),
        Case("finetune: header-less CSV", ["finetune", str(good), "--task", str(tasks / "headerless.csv"), *fast,
                                           "-o", str(root / "f-headerless")], output=str(root / "f-headerless"), says="header"),
        Case("finetune: a 200 KiB CSV field", ["finetune", str(good), "--task", str(long_field.parent), *fast,
                                               "-o", str(root / "f-long")], expect="survive"),
        Case("finetune: single-file task, default eval split", ["finetune", str(good), "--task", str(tasks / "single.csv"),
                                                                 "--set", "steps=1", "-o", str(root / "f-single")],
             output=str(root / "f-single"), says="eval_splits"),
        Case("finetune: --set text_column of a missing column", ["finetune", str(good), "--task", str(tasks / "single.csv"),
                                                                 *fast, "--set", "text_column=body", "-o", str(root / "f-col")],
             output=str(root / "f-col"), says="body"),
        Case("distill: a key given twice in the recipe", ["distill", str(recipe)], says="twice"),
        Case("serve: a bad --host", ["serve", str(good), "--host", "no such host!"], says="host"),
        Case("bench: a candidate that does not exist", ["bench", str(root / "missing-artifact"), "--against", str(good)],
             says="no such"),
        Case("bench: a negative gate", ["bench", str(good), "--against", str(good), "--min-speedup", "-1"], says="speedup"),
        Case("bench: an accuracy gate without --task", ["bench", str(good), "--against", str(good),
                                                        "--max-accuracy-drop", "0.01"], says="--task"),
        # no TensorRT here: exit 1 saying so, the ONNX artifact with its TensorRT-ready graph written and valid
        Case("export: trt-fp16 profile without --trt (no TensorRT here)", ["export", str(good), "--profile", "trt-fp16",
                                                                           "-o", str(root / "x-trt")], says="complete and valid"),
        Case("export: an unknown profile", ["export", str(good), "--profile", "no-such-profile"], says="profile"),
        Case("eval: no such task", ["eval", str(root / "tiny-classifier"), "--task", str(root / "nope.csv")], says="no such file"),
    ]
    return out


def run_case(case: Case, root: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **case.env}
    done = subprocess.run([MINILM, *case.args], capture_output=True, text=True, env=env, cwd=root, timeout=900,
                          input=case.stdin)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("minilm: error:")]
    traceback = "Traceback (most recent call last)" in done.stderr
    left = case.output is not None and Path(case.output).exists()
    marker = (root / "PICKLE-RAN").exists()
    if case.expect == "survive":
        clean = done.returncode == 0 and not traceback
    else:
        clean = (done.returncode in (1, 2) and len(errors) == 1 and not traceback and not left and not marker
                 and case.says.lower() in errors[0].lower())
    return {"case": case.name, "expect": case.expect, "exit_code": done.returncode, "clean": clean,
            "error": errors[0] if errors else (lines[-1] if lines else ""), "traceback": traceback,
            "partial_output_left": left, "pickle_payload_ran": marker}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        results = []
        for case in cases(root):
            result = run_case(case, root)
            results.append(result)
            print(f"{'clean' if result['clean'] else 'NOT CLEAN'}: {case.name}: exit {result['exit_code']}: "
                  f"{result['error'][:150]}", file=sys.stderr)
    clean = sum(r["clean"] for r in results)
    lines = ["# Bad inputs through the command line (issue 18)", "",
             f"`python -m bench.bad_inputs`: {clean} of {len(results)} cases clean (a refusal: exit 1/2, one "
             "`minilm: error:` line naming the problem, no traceback, nothing partial left, no pickle payload run; "
             "a `survive` case: exit 0).", "", "| case | expect | exit | clean | what it said |", "|---|---|---:|---|---|"]
    lines += [f"| {r['case']} | {r['expect']} | {r['exit_code']} | {'yes' if r['clean'] else '**no**'} | "
              f"{r['error'][:160].replace('|', '/')} |" for r in results]
    harness.write_report(harness.RESULTS / "bad_inputs", {"clean": clean, "cases": len(results), "results": results},
                         "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
