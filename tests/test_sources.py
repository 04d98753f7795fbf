"""Resolving model names: local folders, hub ids (no network here), zoo names."""

from __future__ import annotations

from pathlib import Path

import pytest

from minilm_deploy.errors import InputError, NetworkError
from minilm_deploy.sources import resolve_model


def test_local_folder_with_config_resolves_to_itself(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path)) == tmp_path


def test_folder_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no config.json in this folder"):
        resolve_model(str(tmp_path))


def test_a_file_is_not_a_model_folder(tmp_path: Path) -> None:
    file = tmp_path / "model.bin"
    file.write_bytes(b"x")
    with pytest.raises(InputError, match="expected a model folder"):
        resolve_model(str(file))


@pytest.mark.parametrize("spec", ["./missing-model", "/nonexistent/model", "a/b/c"])
def test_missing_paths_are_input_errors(spec: str) -> None:
    with pytest.raises(InputError, match="no such folder"):
        resolve_model(spec)


def test_hub_id_without_network_is_one_line_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # An empty hub cache, so nothing can come from disk: the hub client must try the network.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "2")
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "2")
    with pytest.raises(NetworkError) as info:
        resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    message = str(info.value)
    assert "Hugging Face hub" in message and "zoo:NAME" in message and "\n" not in message


def test_unknown_zoo_name() -> None:
    with pytest.raises(InputError, match="unknown zoo name 'nope'"):
        resolve_model("zoo:nope")
