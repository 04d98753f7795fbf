"""The Hugging Face hub, for models and datasets alike: one reachability check, one classification of
its failures (no network, unknown id, gated), one download per kind. Only `sources.py` calls this.

With no network every fetch fails in seconds with a `NetworkError` (not after the hub client's minutes
of retries); an unknown id or config is an `InputError` saying to check it; a gated repository is an
`InputError` saying how to get access. In offline mode (`HF_HUB_OFFLINE=1`) the local hub cache serves.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from minilm_deploy.data.formats import HubData, Row
from minilm_deploy.errors import InputError, MinilmError, NetworkError

DATASETS_HINT = "pip install minilm-deploy[datasets]"
NO_HUB = "use local files or zoo:NAME (see `minilm zoo list`)"


def reachable(timeout: float = 5.0) -> bool:
    """A quick check of the hub endpoint, so that no network fails in seconds, not after minutes of retries:
    a TCP connection, or behind a proxy one HEAD request through it (a refused tunnel is no network; any
    answer of the hub's own is one). Skipped (True) in offline mode, where the cache may serve."""
    if any(os.environ.get(v) for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return True
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout).close()
        except urllib.error.HTTPError:
            return True  # the hub answered (through the proxy)
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return True
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def failure(exc: BaseException, label: str, what: str) -> MinilmError:
    """What a hub client's exception means for `label` (a `what`: "model" or "dataset"), as one line."""
    kind, text = type(exc).__name__, str(exc)
    lowered = text.lower()
    if "LocalEntryNotFound" in kind or "OfflineMode" in kind:  # not cached, and the hub was not (or could not be) asked
        return NetworkError(f"could not fetch {what} {label}: it is not in the Hugging Face hub cache and the hub could "
                            f"not be reached ({kind}); {NO_HUB}")
    if "Gated" in kind or "gated" in lowered or " 401 " in f" {text} " or " 403 " in f" {text} ":
        return InputError(f"{what} {label} is gated on the Hugging Face hub ({kind}): accept its terms on its hub "
                          "page, then log in (`hf auth login`, or set HF_TOKEN)")
    if ("NotFound" in kind or "404" in text or "doesn't exist" in lowered
            or ("config" in lowered and "available" in lowered)):
        return InputError(f"{what} {label}: not found on the Hugging Face hub ({kind}); check the id (and config name)")
    return NetworkError(f"could not fetch {what} {label} from the Hugging Face hub ({kind}); there is no network or "
                        f"the hub is unreachable: {NO_HUB}")


def _unreachable(label: str, what: str) -> NetworkError:
    return NetworkError(f"could not fetch {what} {label} from the Hugging Face hub: the hub is unreachable "
                        f"(no network); {NO_HUB}, or set HF_HUB_OFFLINE=1 to read the hub cache")


def download_model(repo_id: str) -> Path:
    """The hub model `repo_id` as a local folder (the hub cache's snapshot)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # transformers depends on it; this is a broken install
        raise InputError("huggingface_hub is not installed; reinstall minilm-deploy") from None
    if not reachable():  # no network: the hub cache may still hold it
        try:
            return Path(snapshot_download(repo_id, local_files_only=True))
        except Exception:  # not cached: there is no network, and nothing to read
            raise _unreachable(repo_id, "model") from None
    try:
        return Path(snapshot_download(repo_id))
    except Exception as exc:  # the hub client raises many types; `failure` sorts them
        raise failure(exc, repo_id, "model") from None


def dataset_rows(repo: str, config: str | None) -> HubData:
    """Every split of a hub dataset, with ClassLabel ids turned into names (-1, "no label", into None)."""
    try:
        import datasets
    except ImportError:
        raise InputError(f"hub datasets need the optional `datasets` package: {DATASETS_HINT}") from None
    label = f"{repo}:{config}" if config else repo
    if not reachable():
        raise _unreachable(label, "dataset")
    try:
        loaded = datasets.load_dataset(repo, config)
    except Exception as exc:  # the hub stack raises many types; `failure` sorts them
        raise failure(exc, label, "dataset") from None
    rows: dict[str, list[Row]] = {}
    class_names: dict[str, list[str]] = {}
    floats: set[str] = set()
    for split, table in loaded.items():
        for column, feature in table.features.items():
            if isinstance(feature, datasets.ClassLabel):
                class_names[column] = list(feature.names)
            elif getattr(feature, "dtype", "").startswith("float"):
                floats.add(column)
        rows[split] = [Row(_named(record, class_names), f"{label}[{split}] row {i}") for i, record in enumerate(table)]
    return HubData(rows, class_names, frozenset(floats))


def _named(record: dict[str, Any], class_names: dict[str, list[str]]) -> dict[str, Any]:
    out = dict(record)
    for column, names in class_names.items():
        value = out.get(column)
        if isinstance(value, int):
            out[column] = names[value] if 0 <= value < len(names) else None
    return out
