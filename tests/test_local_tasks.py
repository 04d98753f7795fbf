"""Issue 18, root cause 5: local files as a newcomer writes them. A header-less CSV is refused in one line
(it would lose its first row), column names are settable from the command line, a long CSV field loads as
it does in JSONL, and a single-file task says how to name the evaluation split."""

from __future__ import annotations

import json

import pytest

from minilm_deploy.cli.main import main
from minilm_deploy.errors import InputError
from minilm_deploy.sources import load_task

FAST = ["--set", "epochs=1", "--set", "batch_size=8", "--set", "max_length=16"]


def rows(n: int) -> list[tuple[str, int]]:
    return [(f"the film was {'good' if i % 2 else 'bad'} number {i}", i % 2) for i in range(n)]


def test_a_header_less_csv_is_refused_in_one_line_that_says_how_to_add_the_header(tmp_path, tiny_bert_session_dir, capsys):
    (tmp_path / "train.csv").write_text("".join(f"{t},{y}\n" for t, y in rows(20)))
    with pytest.raises(InputError, match=r"train.csv:1: the first row \('the film was bad number 0', '0'\) reads as data"):
        load_task(tmp_path / "train.csv")
    capsys.readouterr()
    code = main(["finetune", str(tiny_bert_session_dir), "--task", str(tmp_path / "train.csv"), *FAST,
                 "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "add a first line naming the columns, e.g. text,label" in err[0]
    assert not (tmp_path / "out").exists()


def test_unrecognised_column_names_are_given_on_the_command_line(tmp_path, tiny_bert_session_dir, capsys):
    task = tmp_path / "task"
    task.mkdir()
    for split, n in (("train", 40), ("test", 10)):
        (task / f"{split}.csv").write_text("review_body,stars\n" + "".join(f"{t},{y}\n" for t, y in rows(n)))
    capsys.readouterr()
    assert main(["finetune", str(tiny_bert_session_dir), "--task", str(task), *FAST, "--output", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "no text column (columns: review_body, stars)" in err and "--set text_column=NAME" in err
    columns = ["--set", "text_column=review_body", "--set", "label_column=stars"]
    out = tmp_path / "b"
    assert main(["finetune", str(tiny_bert_session_dir), "--task", str(task), *FAST, *columns, "--output", str(out),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["data"]["sizes"]["test"] == 10 and result["label_names"] == ["0", "1"]
    assert main(["eval", str(out), "--task", str(task), *columns, "--json"]) == 0  # eval takes them too
    assert json.loads(capsys.readouterr().out)["splits"]["test"]["n"] == 10
    assert main(["eval", str(out), "--task", str(task), "--set", "epochs=3"]) == 2


def test_a_200_kib_csv_field_loads_as_it_does_in_jsonl(tmp_path):
    long = "word " * 40_000  # 200 KB: over the csv module's 128 KiB default
    (tmp_path / "train.csv").write_text(f'text,label\n"{long}",1\nshort,0\n')
    (tmp_path / "train.jsonl").write_text(json.dumps({"text": long, "label": 1}) + "\n" + json.dumps({"text": "short", "label": 0}) + "\n")
    from_csv, from_jsonl = load_task(tmp_path / "train.csv"), load_task(tmp_path / "train.jsonl")
    assert from_csv.splits["train"][0].text == from_jsonl.splits["train"][0].text == long


def test_a_single_file_task_says_how_to_name_the_evaluation_split(tmp_path, tiny_bert_session_dir, capsys):
    (tmp_path / "reviews.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows(30)))
    capsys.readouterr()
    code = main(["finetune", str(tiny_bert_session_dir), "--task", str(tmp_path / "reviews.csv"), *FAST,
                 "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "one file is the training split only" in err[0]
    assert "--set 'eval_splits=[]'" in err[0] and "test.csv" in err[0]
    assert main(["finetune", str(tiny_bert_session_dir), "--task", str(tmp_path / "reviews.csv"), *FAST,
                 "--set", "eval_splits=[]", "--output", str(tmp_path / "out")]) == 0  # as the message says
