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


# ---------------------------------------------------------------- one classification of hub failures


def _hub_error(cls_name: str, status: int, message: str) -> Exception:
    """A real huggingface_hub error, as the hub client raises it for an HTTP `status` answer."""
    import httpx
    from huggingface_hub import errors

    request = httpx.Request("GET", "https://huggingface.co/api/models/owner/name")
    return getattr(errors, cls_name)(message, response=httpx.Response(status, request=request))


@pytest.mark.parametrize(("error", "kind", "says"), [
    (lambda: _hub_error("GatedRepoError", 403, "Access to model owner/name is restricted"), InputError, "gated"),
    (lambda: _hub_error("RepositoryNotFoundError", 404, "Repository Not Found for url"), InputError, "not found"),
    (lambda: ConnectionError("Max retries exceeded with url"), NetworkError, "no network"),
    (lambda: __import__("huggingface_hub").errors.LocalEntryNotFoundError("Cannot find the requested files in the "
                                                                           "local cache"), NetworkError, "not in the"),
])
def test_hub_failures_are_sorted_once_for_models_and_datasets(error, kind, says) -> None:
    from minilm_deploy import hub

    for what in ("model", "dataset"):
        failure = hub.failure(error(), "owner/name", what)
        assert type(failure) is kind and says in str(failure) and f"{what} owner/name" in str(failure)


def test_a_gated_model_is_a_one_line_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through resolve_model: the hub client's own GatedRepoError (the hub cannot be reached here, so its
    answer is raised by the one function that would have fetched it)."""
    import huggingface_hub

    def gated(repo_id: str, **_: object) -> str:
        raise _hub_error("GatedRepoError", 403, f"Access to model {repo_id} is restricted")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # reachable() trusts the cache in offline mode
    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    with pytest.raises(InputError) as info:
        resolve_model("meta-llama/Llama-3.2-1B")
    assert "gated" in str(info.value) and "HF_TOKEN" in str(info.value) and "\n" not in str(info.value)


def test_model_location_needs_no_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from minilm_deploy.sources import model_location

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    assert model_location("zoo:all-minilm-l6-v2") == ("zoo", "zoo:all-minilm-l6-v2")
    assert model_location("runs") == ("path", "runs")
    assert model_location("runs/studnet")[0] == "missing"  # under a local folder: a typo, not a hub id
    assert model_location("./nope")[0] == "missing"
    assert model_location("sentence-transformers/all-MiniLM-L6-v2")[0] == "hub"
