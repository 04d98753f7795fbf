"""`read_corpus(spec)`: raw text for task-agnostic distillation, as a list of documents.

Specs:
- `zoo:corpus-en`, `zoo:corpus-multilingual`: the zoo corpora (pulled on first use); their
  `corpus.json` records sources, languages, sizes and what was removed to keep evaluation
  text out.
- `zoo:TASK` (a zoo dataset): the texts of its TRAINING split only (and the second text of
  pairs), never dev or test.
- a `.txt` file: one document per line; blank lines are skipped.
- a folder: every `.txt` file under it (sorted by path), read the same way.
- any other local task file or folder (`.csv`, `.tsv`, `.jsonl`, `.json`): its training texts.

Files must be UTF-8; a missing, empty or non-UTF-8 file, or a spec that yields no document,
is a one-line `InputError`.
"""

from __future__ import annotations

from pathlib import Path

from minilm_deploy.data.formats import is_supported, physical_lines, read_text
from minilm_deploy.errors import InputError

CORPUS_FILE = "corpus.txt"  # inside a zoo corpus folder: one document per line
CORPUS_META = "corpus.json"


def read_corpus(spec: str | Path) -> list[str]:
    """The documents of `spec` (see the module docstring), in a fixed order."""
    text = str(spec)
    if text.startswith("zoo:"):
        return _from_zoo(text)
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
    raise InputError(f"{text}: no such file or folder; give a .txt file, a folder of .txt files or zoo:NAME")


def read_lines(path: Path) -> list[str]:
    """Non-blank lines of a UTF-8 text file, stripped (lines end at "\n" only)."""
    return [line.strip() for line in physical_lines(read_text(path)) if line.strip()]


def _from_zoo(spec: str) -> list[str]:
    from minilm_deploy.zoo import registry

    entry = registry.get(spec)
    if entry.kind == "corpus":
        return _nonempty(spec, read_lines(registry.pull(spec) / CORPUS_FILE))
    if entry.kind == "dataset":
        return _training_texts(spec)
    raise InputError(f"{spec} is a {entry.kind}, not text; corpora: {', '.join(registry.names('corpus'))}")


def _training_texts(spec: str) -> list[str]:
    from minilm_deploy.data.tasks import load_task

    task = load_task(spec)
    if "train" not in task.splits:
        raise InputError(f"{spec}: no training split; only training text may serve as a corpus")
    docs = [t for ex in task.splits["train"] for t in (ex.text, ex.text_pair) if t and t.strip()]
    return _nonempty(spec, docs)


def _nonempty(spec: str, docs: list[str]) -> list[str]:
    if not docs:
        raise InputError(f"{spec}: no documents (only blank lines)")
    return docs
