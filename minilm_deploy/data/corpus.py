"""`read_corpus(path)`: raw text for task-agnostic distillation, as a list of documents.

Names (`zoo:corpus-en`, `zoo:TASK`) are resolved by `minilm_deploy.sources.read_corpus`: a zoo
corpus is its folder's `corpus.txt` (with `corpus.json` beside it: sources, languages, sizes and
what was removed to keep evaluation text out); a zoo task gives its training texts.

Paths:
- a `.txt` file: one document per line; blank lines are skipped.
- a folder: every `.txt` file under it (sorted by path), read the same way.
- any other local task file or folder (`.csv`, `.tsv`, `.jsonl`, `.json`): its training texts.

Files must be UTF-8; a missing, empty or non-UTF-8 file, or a spec that yields no document,
is a one-line `InputError`.
"""

from __future__ import annotations

from pathlib import Path

from minilm_deploy.data.formats import is_supported, physical_lines, read_text
from minilm_deploy.data.tasks import load_task
from minilm_deploy.data.types import TaskData
from minilm_deploy.errors import InputError

CORPUS_FILE = "corpus.txt"  # inside a zoo corpus folder: one document per line
CORPUS_META = "corpus.json"


def read_corpus(path: str | Path) -> list[str]:
    """The documents of local file or folder `path` (see the module docstring), in a fixed order."""
    text = str(path)
    path = Path(text).expanduser()
    if path.is_dir():
        txt = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if txt:
            return _nonempty(text, [doc for p in txt for doc in read_lines(p)])
        if any(is_supported(p) for p in path.iterdir()):
            return _training_texts(text)
        raise InputError(f"{text}: no .txt files in this folder; give one document per line in .txt files")
    if path.is_file():
        if path.suffix.lower() == ".txt":
            return _nonempty(text, read_lines(path))
        if is_supported(path):
            return _training_texts(text)
        raise InputError(f"{text}: unsupported corpus file {path.suffix or '(no suffix)'}; use .txt (one document per line)")
    raise InputError(f"{text}: no such file or folder; give a .txt file, a folder of .txt files, a task file or zoo:NAME")


def read_lines(path: Path) -> list[str]:
    """Non-blank lines of a UTF-8 text file, stripped (lines end at "\n" only)."""
    return [line.strip() for line in physical_lines(read_text(path)) if line.strip()]


def _training_texts(path: str) -> list[str]:
    return training_texts(path, load_task(path))


def training_texts(spec: str, task: TaskData) -> list[str]:
    """A task's TRAINING texts (both texts of a pair), never dev or test: a corpus that leaks no evaluation text."""
    if "train" not in task.splits:
        raise InputError(f"{spec}: no training split; only training text may serve as a corpus")
    docs = [t for ex in task.splits["train"] for t in (ex.text, ex.text_pair) if t and t.strip()]
    return _nonempty(spec, docs)


def _nonempty(spec: str, docs: list[str]) -> list[str]:
    if not docs:
        raise InputError(f"{spec}: no documents (only blank lines)")
    return docs
