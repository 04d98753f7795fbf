"""`read_corpus`: local text files and folders, task files, errors; the real zoo corpora (slow)."""

from __future__ import annotations

import json

import pytest

from minilm_deploy.errors import InputError
from minilm_deploy.sources import read_corpus  # the resolver: local paths and zoo: names


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def test_txt_one_document_per_line_blank_lines_skipped(tmp_path):
    path = write(tmp_path / "c.txt", "first doc\n\n   \n  second doc  \r\nthird\u2028still third\n")
    assert read_corpus(str(path)) == ["first doc", "second doc", "third\u2028still third"]


def test_folder_of_txt_files_sorted_and_recursive(tmp_path):
    write(tmp_path / "b.txt", "b1\nb2\n")
    write(tmp_path / "a.txt", "a1\n")
    write(tmp_path / "sub" / "c.txt", "c1\n")
    write(tmp_path / "notes.md", "ignored\n")
    assert read_corpus(str(tmp_path)) == ["a1", "b1", "b2", "c1"]


def test_task_file_gives_training_texts_only(tmp_path):
    write(tmp_path / "t" / "train.csv", "sentence1,sentence2,label\nq one,a one,x\nq two,a two,y\n")
    write(tmp_path / "t" / "test.csv", "sentence1,sentence2,label\nsecret test,text,x\n")
    assert read_corpus(str(tmp_path / "t")) == ["q one", "a one", "q two", "a two"]
    with pytest.raises(InputError, match="no training split"):
        read_corpus(str(tmp_path / "t" / "test.csv"))


def test_not_utf8_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.txt", b"fine\nalso fine\nbad \xff byte\n")
    with pytest.raises(InputError) as exc:
        read_corpus(str(path))
    assert f"{path}: not UTF-8 at line 3" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("content,message", [("", "the file is empty"), ("\n \n\t\n", "the file is empty")])
def test_empty_files(tmp_path, content, message):
    with pytest.raises(InputError, match=message):
        read_corpus(str(write(tmp_path / "e.txt", content)))


def test_errors_for_missing_unsupported_and_empty_folder(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        read_corpus(str(tmp_path / "missing.txt"))
    with pytest.raises(InputError, match="unsupported corpus file .pdf"):
        read_corpus(str(write(tmp_path / "paper.pdf", "x")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .txt files"):
        read_corpus(str(tmp_path / "empty"))
    with pytest.raises(InputError, match="unknown zoo name"):
        read_corpus("zoo:no-such-corpus")


# ---------------------------------------------------------------- the real zoo corpora


@pytest.mark.slow
@pytest.mark.parametrize("name", ["corpus-en", "corpus-multilingual"])
def test_zoo_corpus_holds_no_evaluation_text(name):
    from minilm_deploy.data.splits import eval_keys, text_key
    from minilm_deploy.sources import load_task
    from minilm_deploy.zoo import registry
    from minilm_deploy.zoo.dataset_tasks import TASKS

    docs = read_corpus(f"zoo:{name}")
    meta = json.loads((registry.pull(name) / "corpus.json").read_text())
    assert meta["documents"] == len(docs) and meta["characters"] == sum(map(len, docs))
    assert len({text_key(d) for d in docs}) == len(docs)  # no duplicates
    for task in TASKS:  # every dev/test text of every zoo task, as the pulled files hold it
        data = load_task(f"zoo:{task}")
        forbidden = set().union(*(eval_keys(rows) for split, rows in data.splits.items() if split != "train"))
        leaked = [d for d in docs if text_key(d) in forbidden]
        assert not leaked, f"{name} holds {len(leaked)} evaluation texts of {task}, e.g. {leaked[0][:80]!r}"
    if name == "corpus-en":
        assert meta["documents"] > 90_000 and meta["characters"] > 20_000_000
        assert {"movie-dialogues", "rotten-tomatoes-plots", "rotten-tomatoes-train", "20newsgroups-train"} <= set(meta["sources"])
    else:
        assert len(meta["languages"]) >= 28 and {"de", "es", "it", "nl", "fr", "ja", "zh"} <= set(meta["languages"])
        non_en = sum(v["characters"] for k, v in meta["languages"].items() if k != "en")
        assert meta["corpus_en_share"]["characters"] >= non_en
