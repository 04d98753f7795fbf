"""Local data formats, `load_task` and the split helpers, on small files the tests write."""

from __future__ import annotations

import json
import sys

import pytest

from minilm_deploy import hub
from minilm_deploy.data import formats, splits
from minilm_deploy.data.types import Example
from minilm_deploy.errors import InputError, NetworkError
from minilm_deploy.sources import load_task  # the resolver: local paths, zoo:, hub: and glue/ names


def carve_dev(train, seed: int, fraction: float):
    """(train, dev): a share held out by text hash, through the library's split_by (stable, seeded)."""
    from minilm_deploy.data import splits

    parts = splits.split_by(train, splits.example_key, seed, {"train": 1.0 - fraction, "dev": fraction})
    return parts["train"], parts["dev"]


def write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def one_line_error(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- readers


def test_csv_quoted_multiline_field_keeps_line_numbers(tmp_path):
    path = write(tmp_path / "a.csv", 'text,label\n"one, two",pos\n"three\nfour",neg\nfive,pos\n')
    rows = formats.read_rows(path)
    assert [r.fields for r in rows] == [{"text": "one, two", "label": "pos"}, {"text": "three\nfour", "label": "neg"},
                                        {"text": "five", "label": "pos"}]
    assert [r.where.rsplit(":", 1)[1] for r in rows] == ["2", "3", "5"]


def test_csv_wrong_field_count_names_the_line(tmp_path):
    path = write(tmp_path / "bad.csv", "text,label\ngood,pos\nbad,neg,extra\n")
    with pytest.raises(InputError) as exc:
        formats.read_rows(path)
    assert f"{path}:3: expected 2 fields" in one_line_error(exc)


def test_csv_unterminated_quote_is_an_error(tmp_path):
    path = write(tmp_path / "bad.csv", 'text,label\nok,pos\n"never closed,neg\n')
    with pytest.raises(InputError) as exc:
        formats.read_rows(path)
    assert str(path) in one_line_error(exc)


def test_glue_tsv_keeps_quotes_as_text(tmp_path):
    path = write(tmp_path / "train.tsv", 'sentence\tlabel\nhe said "hi\t1\n"quoted" words\t0\n')
    rows = formats.read_rows(path)
    assert rows[0].fields == {"sentence": 'he said "hi', "label": "1"}
    assert rows[1].fields["sentence"] == '"quoted" words'


def test_tsv_without_header_names_columns_by_index(tmp_path):
    path = write(tmp_path / "cola.tsv", "gj04\t1\t\tThe boy ran.\ngj04\t0\t*\tRan boy the.\n")
    rows = formats.read_rows(path, header=False)
    assert rows[1].fields == {"0": "gj04", "1": "0", "2": "*", "3": "Ran boy the."}


def test_tsv_missing_tab_names_the_line(tmp_path):
    path = write(tmp_path / "dev.tsv", "sentence\tlabel\nfine\t1\nno tab here\n")
    with pytest.raises(InputError) as exc:
        formats.read_rows(path)
    assert f"{path}:3:" in one_line_error(exc)


def test_jsonl_rows_and_unicode_line_separator(tmp_path):
    path = write(tmp_path / "x.jsonl", json.dumps({"text": "a\u2028b", "label": 1}, ensure_ascii=False) + "\n\n"
                 + json.dumps({"text": "c", "label": 0}) + "\n")
    rows = formats.read_rows(path)
    assert [r.fields["text"] for r in rows] == ["a\u2028b", "c"]
    assert rows[1].where.endswith(":3")


def test_jsonl_malformed_line_is_named(tmp_path):
    path = write(tmp_path / "x.jsonl", '{"text": "a", "label": 1}\n{"text": "b", label: 0}\n')
    with pytest.raises(InputError) as exc:
        formats.read_rows(path)
    assert f"{path}:2: not valid JSON" in one_line_error(exc)


def test_jsonl_non_object_line(tmp_path):
    path = write(tmp_path / "x.jsonl", '{"text": "a"}\n[1, 2]\n')
    with pytest.raises(InputError, match=r":2: expected a JSON object"):
        formats.read_rows(path)


SQUAD = {"version": "v2.0", "data": [{"title": "T", "paragraphs": [{
    "context": "Paris is the capital of France.",
    "qas": [{"id": "q1", "question": "What is the capital of France?", "answers": [{"text": "Paris", "answer_start": 0}]},
            {"id": "q2", "question": "What is the capital of Mars?", "answers": [], "is_impossible": True}]}]}]}


def test_squad_json_gives_question_context_pairs(tmp_path):
    path = write(tmp_path / "train.json", json.dumps(SQUAD))
    rows = formats.read_rows(path)
    assert [(r.fields["question"], r.fields["label"], r.fields["answer"]) for r in rows] == [
        ("What is the capital of France?", "answerable", "Paris"), ("What is the capital of Mars?", "unanswerable", "")]
    assert rows[1].where.endswith("data[0].paragraphs[0].qas[1]")


def test_squad_json_missing_field_is_an_error(tmp_path):
    path = write(tmp_path / "train.json", json.dumps({"data": [{"paragraphs": [{"qas": [{"question": "q?"}]}]}]}))
    with pytest.raises(InputError, match="not SQuAD JSON"):
        formats.read_rows(path)


def test_json_list_of_objects(tmp_path):
    path = write(tmp_path / "x.json", json.dumps([{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]))
    assert [r.fields["label"] for r in formats.read_rows(path)] == ["x", "y"]


def test_orange_tab_skips_its_header_lines(tmp_path):
    path = write(tmp_path / "r8.tab", "Category\tText\nd\tstring\nclass\t\nearn\tprofit up\n\t\nacq\tbuys firm\n")
    rows = formats.read_rows(path)
    assert [(r.fields["Category"], r.fields["Text"]) for r in rows] == [("earn", "profit up"), ("acq", "buys firm")]
    assert rows[1].where.endswith(":6")


def test_not_utf8_names_file_line_and_byte(tmp_path):
    path = write(tmp_path / "latin.csv", "text,label\ncaf\xe9,pos\n", encoding="latin-1")
    with pytest.raises(InputError) as exc:
        formats.read_rows(path)
    assert f"{path}: not UTF-8 at line 2 (byte 14" in one_line_error(exc)


def test_bom_is_accepted(tmp_path):
    path = write(tmp_path / "bom.csv", "\ufefftext,label\nhi,1\n")
    assert formats.read_rows(path)[0].fields == {"text": "hi", "label": "1"}


@pytest.mark.parametrize("content,message", [(None, "no such file"), ("", "the file is empty"),
                                             ("  \n\n", "the file is empty"), ("text,label\n", "no rows")])
def test_missing_empty_and_header_only_files(tmp_path, content, message):
    path = tmp_path / "train.csv"
    if content is not None:
        write(path, content)
    with pytest.raises(InputError, match=message):
        formats.read_rows(path)


def test_unsupported_suffix(tmp_path):
    with pytest.raises(InputError, match="unsupported file type .xlsx"):
        formats.read_rows(write(tmp_path / "a.xlsx", "x"))


# ---------------------------------------------------------------- load_task


def make_task(folder, train="text,label\ngood film,pos\nbad film,neg\nfine film,pos\n", **files):
    write(folder / "train.csv", train)
    for name, text in files.items():
        write(folder / name.replace("_", "."), text)
    return folder


def test_folder_of_mixed_formats(tmp_path):
    folder = make_task(tmp_path / "t", dev_tsv="sentence\tlabel\nok film\tpos\n",
                       test_jsonl='{"text": "awful", "label": "neg"}\n{"text": "great", "label": "pos"}\n')
    task = load_task(str(folder))
    assert list(task.splits) == ["train", "dev", "test"]
    assert task.kind == "classification" and task.label_names == ("neg", "pos") and task.metric == "accuracy"
    assert task.splits["test"][0] == Example("awful", None, "neg")
    assert task.info["sizes"] == {"train": 3, "dev": 1, "test": 2}
    assert task.info["label_counts"]["train"] == {"neg": 1, "pos": 2}


def test_validation_file_becomes_dev_and_test_language_splits(tmp_path):
    folder = make_task(tmp_path / "t", validation_csv="text,label\nx,pos\n", **{"test-fr_csv": "text,label\ny,neg\n"})
    assert sorted(load_task(str(folder)).splits) == ["dev", "test-fr", "train"]


def test_unknown_label_in_dev_names_label_and_line(tmp_path):
    folder = make_task(tmp_path / "t", dev_csv="text,label\nok,pos\nmeh,neutral\n")
    with pytest.raises(InputError) as exc:
        load_task(str(folder))
    message = one_line_error(exc)
    assert f"{folder / 'dev.csv'}:3: label 'neutral' is not among the train labels (neg, pos)" in message


def test_pair_columns_are_detected(tmp_path):
    write(tmp_path / "p" / "train.tsv", "sentence1\tsentence2\tlabel\na\tb\t1\nc\td\t0\n")
    task = load_task(str(tmp_path / "p"))
    assert task.is_pair and task.splits["train"][0] == Example("a", "b", "1")
    assert task.info["columns"] == {"text": "sentence1", "text_pair": "sentence2", "label": "label"}


def test_squad_file_loads_as_pair_task(tmp_path):
    task = load_task(str(write(tmp_path / "train.json", json.dumps(SQUAD))))
    assert task.splits["train"][0].text_pair == "Paris is the capital of France."
    assert task.label_names == ("answerable", "unanswerable")


def test_column_overrides(tmp_path):
    path = write(tmp_path / "data.csv", "body_text,tag,other\nhello,a,x\nbye,b,y\n")
    with pytest.raises(InputError, match="no text column .* --set text_column=NAME"):
        load_task(str(path))
    task = load_task(str(path), text_column="body_text", label_column="tag")
    assert task.splits["train"][1] == Example("bye", None, "b")
    with pytest.raises(InputError, match="no column 'nope'"):
        load_task(str(path), text_column="nope", label_column="tag")


def test_no_label_column_in_train(tmp_path):
    with pytest.raises(InputError, match="no label column"):
        load_task(str(write(tmp_path / "train.csv", "text,other\na,b\n")))


def test_unlabelled_test_split_loads_with_none(tmp_path):
    folder = make_task(tmp_path / "t", test_csv="text\nno label here\n")
    assert load_task(str(folder)).splits["test"] == (Example("no label here", None, None),)


def test_regression_detected_and_non_numeric_target(tmp_path):
    folder = make_task(tmp_path / "r", train="sentence1,sentence2,score\na,b,0.5\nc,d,4.25\n")
    task = load_task(str(folder))
    assert task.kind == "regression" and task.metric == "pearson" and task.splits["train"][1].label == 4.25
    write(folder / "dev.csv", "sentence1,sentence2,score\na,b,high\n")
    with pytest.raises(InputError) as exc:
        load_task(str(folder))
    assert f"{folder / 'dev.csv'}:2: label 'high' is not a number" in one_line_error(exc)


def test_forced_regression_on_text_labels(tmp_path):
    path = write(tmp_path / "train.csv", "text,label\na,pos\n")
    with pytest.raises(InputError, match="not a number; a regression task needs numeric targets"):
        load_task(str(path), kind="regression")


def test_numeric_class_labels_sort_numerically(tmp_path):
    path = write(tmp_path / "train.jsonl", "".join(json.dumps({"text": f"t{i}", "label": i}) + "\n" for i in (10, 2, 1, 0)))
    task = load_task(str(path))
    assert task.kind == "classification" and task.label_names == ("0", "1", "2", "10")


def test_single_file_split_name(tmp_path):
    assert list(load_task(str(write(tmp_path / "test.csv", "text,label\na,x\nb,y\n"))).splits) == ["test"]
    assert list(load_task(str(write(tmp_path / "reviews.csv", "text,label\na,x\nb,y\n"))).splits) == ["train"]
    assert list(load_task(str(tmp_path / "reviews.csv"), as_split="test").splits) == ["test"]


def test_empty_split_file(tmp_path):
    folder = make_task(tmp_path / "t", dev_csv="text,label\n")
    with pytest.raises(InputError, match=r"dev.csv: no rows"):
        load_task(str(folder))


def test_empty_text_names_the_line(tmp_path):
    with pytest.raises(InputError, match=r"train.csv:3: the 'text' field is empty"):
        load_task(str(write(tmp_path / "train.csv", "text,label\na,x\n,y\n")))


def test_folder_errors(tmp_path):
    write(tmp_path / "nt" / "test.csv", "text,label\na,b\n")
    with pytest.raises(InputError, match="no train file"):
        load_task(str(tmp_path / "nt"))
    make_task(tmp_path / "two", train_jsonl='{"text": "a", "label": "x"}\n')
    with pytest.raises(InputError, match="two files for split 'train'"):
        load_task(str(tmp_path / "two"))
    with pytest.raises(InputError, match="no such file or folder"):
        load_task(str(tmp_path / "missing"))


def test_zoo_name_of_wrong_kind_or_unknown():
    with pytest.raises(InputError, match="not a labelled dataset"):
        load_task("zoo:corpus-en")
    with pytest.raises(InputError, match="unknown zoo name"):
        load_task("zoo:no-such-set")


def test_hub_without_datasets_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail, as when not installed
    with pytest.raises(InputError) as exc:
        load_task("glue/sst2")
    assert "pip install minilm-deploy[datasets]" in one_line_error(exc)


def test_hub_without_network(monkeypatch, tmp_path):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises((NetworkError, InputError)) as exc:
        load_task("hub:nyu-mll/glue:sst2")
    assert "nyu-mll/glue:sst2" in one_line_error(exc)


def test_hub_unreachable_fails_fast(monkeypatch):
    pytest.importorskip("datasets")
    import huggingface_hub.constants

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(NetworkError) as exc:
        load_task("glue/sst2")
    assert "the hub is unreachable" in one_line_error(exc)


def test_hub_rows_on_a_local_dataset(tmp_path, monkeypatch):
    """The real `datasets` library on a local parquet dataset: class ids to names, -1 to None, splits."""
    datasets = pytest.importorskip("datasets")
    from minilm_deploy.data.tasks import hub_task

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    features = datasets.Features({"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["negative", "positive"])})
    parts = {"train": (["good", "bad", "fine"], [1, 0, 1]), "validation": (["nice"], [1]), "test": (["hidden"], [-1])}
    for split, (texts, labels) in parts.items():
        datasets.Dataset.from_dict({"sentence": texts, "label": labels}, features=features).to_parquet(str(tmp_path / "d" / f"{split}.parquet"))
    data = hub.dataset_rows(str(tmp_path / "d"), None)
    assert data.class_names == {"label": ["negative", "positive"]}
    assert data.rows["test"][0].fields == {"sentence": "hidden", "label": None}
    task = hub_task("local", data, {}, None, {})
    assert list(task.splits) == ["train", "dev"] and task.info["dropped_splits"] == ["test"]
    assert task.label_names == ("negative", "positive") and task.splits["dev"][0] == Example("nice", None, "positive")


def test_bad_hub_spec():
    with pytest.raises(InputError, match="expected hub:OWNER/NAME"):
        load_task("hub:a/b/c")


# ---------------------------------------------------------------- splits


def test_text_key_ignores_case_spacing_and_punctuation():
    assert splits.text_key("He's great .") == splits.text_key("he's great.") == "hesgreat"
    assert splits.text_key("Ça va ?") == splits.text_key("ça  va")
    assert splits.text_key("?!") == "?!"  # nothing to keep: the text itself


def test_assign_is_seeded_stable_and_proportional():
    keys = [f"item-{i}" for i in range(20000)]
    fractions = {"train": 0.8, "dev": 0.1, "test": 0.1}
    first = [splits.assign(k, 7, fractions) for k in keys]
    assert first == [splits.assign(k, 7, fractions) for k in keys]
    assert first != [splits.assign(k, 8, fractions) for k in keys]
    share = first.count("dev") / len(first)
    assert 0.09 < share < 0.11
    parts = splits.split_by(list(reversed(keys)), str, 7, fractions)
    assert sorted(parts["dev"]) == sorted(k for k, s in zip(keys, first, strict=True) if s == "dev")


def test_dedupe_drops_conflicting_labels():
    rows = [Example("A b", None, "x"), Example("a B!", None, "x"), Example("c", None, "x"), Example("C", None, "y")]
    kept, counts = splits.dedupe(rows)
    assert kept == [Example("A b", None, "x")] and counts == {"duplicates": 1, "conflicting_labels": 2}


def test_decontaminate_keeps_test_and_cleans_dev_and_train():
    review = "first line of a long review here\nthe second sentence of that review .\nok"
    data = {"train": [Example("The second sentence of that review", None, "p"), Example("shared", None, "p"),
                      Example("ok", None, "p"), Example("only train", None, "n")],
            "dev": [Example("Shared!", None, "p"), Example("dev only", None, "n")],
            "test": [Example(review, None, "p"), Example("dev only", None, "n")]}
    clean, removed = splits.decontaminate(data)
    assert clean["test"] == data["test"]
    assert clean["dev"] == [Example("Shared!", None, "p")]
    # "ok" is a line of the review too short to count; the long line and the dev text are removed
    assert clean["train"] == [Example("ok", None, "p"), Example("only train", None, "n")]
    assert removed == {"dev": 1, "train": 2}


def test_carve_dev_is_deterministic():
    rows = [Example(f"text {i}", None, str(i % 2)) for i in range(1000)]
    train, dev = carve_dev(rows, 0, 0.2)
    assert (train, dev) == carve_dev(list(reversed(rows))[::-1], 0, 0.2)
    assert len(train) + len(dev) == 1000 and 150 < len(dev) < 250
    assert not {ex.text for ex in train} & {ex.text for ex in dev}


def test_no_network_behind_a_proxy_is_found_in_seconds(monkeypatch):
    """Issue 18: behind a proxy that cannot reach the hub, the dataset loader's minutes of retries are skipped."""
    import socket
    import time

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens here once the socket is closed
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "ALL_PROXY", "all_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    started = time.perf_counter()
    assert hub.reachable(timeout=3) is False
    assert time.perf_counter() - started < 5
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline mode: the cache may serve, no check
    assert hub.reachable() is True
