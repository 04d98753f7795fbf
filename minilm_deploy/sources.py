"""The one resolver: every name a user gives (a local path, a hub id, `glue/TASK`, `zoo:NAME`) becomes
local files here, for models, tasks and corpora alike; `data/` then reads those files and knows no names.

- Models: a local folder holding `config.json`; `zoo:NAME` (a zoo model, pulled into the cache on first
  use); otherwise a Hugging Face hub id (`hub.download_model`).
- Tasks: a local file or folder (`data.tasks.load_task`); `zoo:NAME` (a zoo dataset: its cache folder);
  `hub:OWNER/NAME[:CONFIG]` or `glue/TASK` (the hub dataset's rows, `hub.dataset_rows`).
- Corpora: a `.txt` file or folder, or a task's training texts (`data.corpus.read_corpus`); `zoo:NAME`
  (a zoo corpus: its `corpus.txt`; a zoo dataset: its training split only).

What the zoo holds, and how each entry is built: `zoo/registry.py`. Hub failures (no network, unknown
id, gated) are sorted in one place: `hub.py`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from minilm_deploy.errors import InputError

if TYPE_CHECKING:
    from minilm_deploy.data.types import TaskData
    from minilm_deploy.zoo.registry import ZooKind

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
GLUE = re.compile(r"^glue[/:]([a-z0-9_]+)$")
GLUE_REPO = "nyu-mll/glue"
ZOO = "zoo:"
ModelLocation = Literal["zoo", "path", "hub", "missing"]


def model_location(spec: str | Path) -> tuple[ModelLocation, str]:
    """Which of the three forms `spec` is, without fetching anything: ("zoo", name), ("path", path),
    ("hub", repo id), or ("missing", path) for a local path that does not exist."""
    text = str(spec)
    if text.startswith(ZOO):
        return "zoo", text
    if Path(text).expanduser().exists():
        return "path", text
    under_local_folder = "/" in text and Path(text.split("/")[0]).is_dir()  # runs/studnet: a typo, not a hub id
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or not _HUB_ID.match(text) or under_local_folder:
        return "missing", text
    return "hub", text


def resolve_model(spec: str | Path) -> Path:
    """A local folder that `from_pretrained` can load, for `spec` in any of the three forms."""
    kind, text = model_location(spec)
    if kind == "zoo":
        return _zoo_folder(text, "model")
    if kind == "missing":
        raise InputError(f"{text}: no such folder; give a local model folder, a hub id or zoo:NAME")
    if kind == "hub":
        from minilm_deploy.hub import download_model

        return download_model(text)
    path = Path(text).expanduser()
    if not path.is_dir():
        raise InputError(f"{text}: expected a model folder (with config.json), got a file")
    if not (path / "config.json").is_file():
        raise InputError(f"{text}: no config.json in this folder; give a Hugging Face model folder")
    return path


def load_task(spec: str | Path, *, text_column: str | None = None, pair_column: str | None = None,
              label_column: str | None = None, kind: str | None = None, header: bool = True,
              as_split: str | None = None) -> TaskData:
    """The labelled task `spec` names (see the module docstring); the options go to `data.tasks`."""
    from minilm_deploy.data import tasks

    text = str(spec)
    if text.startswith(ZOO):
        return tasks.load_task(_zoo_folder(text, "dataset"), text_column=text_column, pair_column=pair_column,
                               label_column=label_column, kind=kind)
    if text.startswith("hub:") or GLUE.match(text):
        from minilm_deploy.hub import dataset_rows

        repo, config = _hub_dataset(text)
        return tasks.hub_task(text, dataset_rows(repo, config), tasks.column_choice(text_column, pair_column, label_column), kind,
                              {"source": text, "hub_repo": repo, "hub_config": config})
    path = Path(text).expanduser()
    if not path.exists():
        raise InputError(f"{text}: no such file or folder; give a local file or folder, zoo:NAME, "
                         "hub:OWNER/NAME[:CONFIG] or glue/TASK")
    return tasks.load_task(path, text_column=text_column, pair_column=pair_column, label_column=label_column,
                           kind=kind, header=header, as_split=as_split)


def read_corpus(spec: str | Path) -> list[str]:
    """The documents of corpus `spec` (see the module docstring), in a fixed order."""
    from minilm_deploy.data import corpus

    text = str(spec)
    if not text.startswith(ZOO):
        return corpus.read_corpus(Path(text).expanduser())
    from minilm_deploy.zoo import registry

    entry = registry.get(text)
    if entry.kind == "corpus":
        return corpus.read_corpus(registry.pull(text) / corpus.CORPUS_FILE)
    if entry.kind == "dataset":
        return corpus.training_texts(text, load_task(text))
    raise InputError(f"{text} is a {entry.kind}, not text; corpora: {', '.join(registry.names('corpus'))}")


def _zoo_folder(spec: str, kind: ZooKind) -> Path:
    """The cache folder of zoo entry `spec`, which must be a `kind` (pulled on first use)."""
    from minilm_deploy.zoo import registry

    entry = registry.get(spec)
    if entry.kind != kind:
        what = {"model": "a model", "dataset": "a labelled dataset", "corpus": "a corpus"}[kind]
        raise InputError(f"{spec} is a {entry.kind}, not {what}; {kind} names: {', '.join(registry.names(kind))}")
    return registry.pull(spec)


def _hub_dataset(spec: str) -> tuple[str, str | None]:
    """`hub:OWNER/NAME[:CONFIG]` or `glue/TASK` → (repo, config)."""
    glue = GLUE.match(spec)
    if glue:
        return GLUE_REPO, glue.group(1)
    repo, _, config = spec.removeprefix("hub:").partition(":")
    if repo.count("/") > 1 or not repo:
        raise InputError(f"{spec}: expected hub:OWNER/NAME[:CONFIG]")
    return repo, config or None

