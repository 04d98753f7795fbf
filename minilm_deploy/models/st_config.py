"""A student keeps its teacher's sentence-transformers configuration, so `SentenceTransformer(student)` pools,
normalises and truncates as `SentenceTransformer(teacher)` does (mean pooling, unit length, 256 tokens for
all-MiniLM-L6-v2), instead of sentence-transformers' fallback for a bare encoder (mean pooling, no
normalisation, the tokenizer's 512 tokens).

Copied: `modules.json`, `sentence_bert_config.json`, `config_sentence_transformers.json` and each listed
module's folder, with the pooling's `word_embedding_dimension` set to the student's width. A teacher whose
modules hold weights sized to its own width (a Dense projection) is not copied: the student could not load it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

MODULES = "modules.json"
TOP_FILES = ("sentence_bert_config.json", "config_sentence_transformers.json")
WIDTH_FREE = ("Transformer", "Pooling", "Normalize")  # module types that hold no width-sized weights


def copy_sentence_transformers_config(teacher: Path, student: Path, hidden: int) -> str | None:
    """Copy the teacher's configuration into the student folder; returns a note when it cannot be kept."""
    teacher, student = Path(teacher), Path(student)
    modules_file = teacher / MODULES
    if not modules_file.is_file():
        return None  # not a sentence-transformers model
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        kinds = [str(m["type"]).rsplit(".", 1)[-1] for m in modules]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        return f"the teacher's {MODULES} is unreadable: the student has no sentence-transformers configuration"
    odd = [k for k in kinds if k not in WIDTH_FREE]
    if odd:
        return (f"the teacher's sentence-transformers modules include {', '.join(odd)} (weights of the teacher's width): "
                "the student keeps only the Hugging Face files")
    shutil.copyfile(modules_file, student / MODULES)
    for name in TOP_FILES:
        if (teacher / name).is_file():
            shutil.copyfile(teacher / name, student / name)
    for module, kind in zip(modules, kinds, strict=True):
        path = str(module.get("path") or "")
        if not path or not (teacher / path).is_dir():
            continue
        shutil.copytree(teacher / path, student / path, dirs_exist_ok=True)
        pooling = student / path / "config.json"
        if kind == "Pooling" and pooling.is_file():
            config = json.loads(pooling.read_text(encoding="utf-8"))
            config["word_embedding_dimension"] = int(hidden)
            pooling.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return None
