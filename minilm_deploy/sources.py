"""One resolver for model names and one for data names: local path, hub id, or `zoo:NAME`.

- Models: a local directory holding `config.json`; `zoo:NAME` (pulled into the cache on first
  use); otherwise a Hugging Face hub id, fetched with the standard hub client (with no network,
  a one-line error that says so).
- Tasks and corpora: see `minilm_deploy.data.tasks.load_task` and `minilm_deploy.data.corpus`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minilm_deploy.errors import InputError, NetworkError

if TYPE_CHECKING:
    from minilm_deploy.data.types import TaskData

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def resolve_model(spec: str | Path) -> Path:
    """A local folder that `from_pretrained` can load, for `spec` in any of the three forms."""
    text = str(spec)
    if text.startswith("zoo:"):
        from minilm_deploy.zoo import registry

        entry = registry.get(text)
        if entry.kind != "model":
            raise InputError(f"{text} is a {entry.kind}, not a model; model names: {', '.join(registry.names('model'))}")
        return registry.pull(text)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise InputError(f"{text}: expected a model folder (with config.json), got a file")
        if not (path / "config.json").is_file():
            raise InputError(f"{text}: no config.json in this folder; give a Hugging Face model folder")
        return path
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or not _HUB_ID.match(text):
        raise InputError(f"{text}: no such folder; give a local model folder, a hub id or zoo:NAME")
    return _download_from_hub(text)


def _download_from_hub(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # transformers depends on it; this is a broken install
        raise InputError("huggingface_hub is not installed; reinstall minilm-deploy") from None
    try:
        return Path(snapshot_download(repo_id))
    except Exception as exc:  # the hub client raises many types; all mean "could not get it"
        kind = type(exc).__name__
        if "RepositoryNotFound" in kind or "404" in str(exc):
            raise InputError(f"{repo_id}: no such model on the Hugging Face hub; check the id") from None
        raise NetworkError(
            f"could not fetch {repo_id!r} from the Hugging Face hub ({kind}); there is no network or the hub "
            "is unreachable: use a local folder or zoo:NAME (see `minilm zoo list`)"
        ) from None


def load_task(spec: str, **options: Any) -> TaskData:
    """A labelled task; `options` (column names, kind, header, ...) go to `data.tasks.load_task`."""
    from minilm_deploy.data.tasks import load_task as _load  # imported lazily so the CLI starts fast

    return _load(spec, **options)


def read_corpus(spec: str) -> list[str]:
    from minilm_deploy.data.corpus import read_corpus as _read

    return _read(spec)
