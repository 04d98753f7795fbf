"""The archive cache (minilm_deploy/zoo/archives.py) and `minilm zoo`: pinned sha256, atomic and
locked builds, no network once cached, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from minilm_deploy.cli.main import main
from minilm_deploy.errors import MinilmError, NetworkError
from minilm_deploy.zoo import archives, registry
from minilm_deploy.zoo.archives import Archive, fetch, materialize

SIX = Archive("six==1.16.0", "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254")  # a real, small wheel
CLI = "import sys; from minilm_deploy.cli.main import main; sys.exit(main(sys.argv[1:]))"
BLOCK_SOCKETS = """\
import socket
def _refuse(*args, **kwargs):
    raise OSError("network cut off by the test")
socket.socket.connect = socket.socket.connect_ex = _refuse
socket.create_connection = socket.getaddrinfo = _refuse
"""


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.parent.name != "locks")


def offline_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment whose Python processes (pip included) cannot open a network connection."""
    site = tmp_path / "offline-site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCK_SOCKETS)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "PIP_INDEX_URL": "http://127.0.0.1:9/", "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "",
           "PIP_EXTRA_INDEX_URL": "", "PIP_CONFIG_FILE": os.devnull, "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", **extra}
    return env


def run(args: list[str], env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


# --------------------------------------------------------------------------- fetch and sha256


def test_wrong_sha256_deletes_the_download_and_refuses(tmp_cache):
    with pytest.raises(MinilmError) as err:
        fetch(Archive("six==1.16.0", "0" * 64))
    message = str(err.value)
    assert "\n" not in message and "sha256 mismatch" in message and SIX.sha256 in message and "deleted" in message
    assert files_under(tmp_cache) == []  # nothing of the download is left


def test_fetch_verifies_caches_and_then_needs_no_network(tmp_cache, tmp_path, monkeypatch):
    path = fetch(SIX)
    assert path.name == "six-1.16.0-py2.py3-none-any.whl" and archives.sha256_of(path) == SIX.sha256
    assert path.parent == tmp_cache / "archives" / SIX.sha256
    for key, value in offline_env(tmp_path).items():
        if key.startswith("PIP_"):
            monkeypatch.setenv(key, value)
    assert fetch(SIX) == path  # from the cache
    path.write_bytes(b"corrupted")  # a damaged cached copy is noticed and fetched again: here, that needs pip
    with pytest.raises(NetworkError) as err:
        fetch(SIX)
    assert "\n" not in str(err.value) and "six==1.16.0" in str(err.value)


def test_archive_dir_with_a_wrong_file_is_refused_but_kept(tmp_cache, tmp_path, monkeypatch):
    local = tmp_path / "archives-on-disk"
    local.mkdir()
    (local / "six-1.16.0-py2.py3-none-any.whl").write_bytes(b"not the wheel")
    monkeypatch.setenv("MINILM_ARCHIVES", str(local))
    with pytest.raises(MinilmError, match="sha256 mismatch"):
        fetch(SIX)
    assert (local / "six-1.16.0-py2.py3-none-any.whl").read_bytes() == b"not the wheel"  # the user's file stays


def test_missing_archive_dir_is_a_one_line_error(tmp_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("MINILM_ARCHIVES", str(tmp_path / "no-such-folder"))
    with pytest.raises(MinilmError, match="MINILM_ARCHIVES"):
        fetch(SIX)


# --------------------------------------------------------------------------- materialize: atomic, locked

BUILD_ONCE = textwrap.dedent("""
    import os, sys, time
    from minilm_deploy.zoo.archives import materialize
    def build(d):
        with open(os.environ["BUILD_LOG"], "a") as log:
            log.write(f"{os.getpid()}\\n")
        (d / "part1").write_text("1")
        time.sleep(1.5)  # the other process arrives while this one builds
        (d / "part2").write_text("2")
    print(materialize("models/fake", build))
""")


def test_two_processes_build_an_entry_once(tmp_cache, tmp_path):
    env = {**os.environ, "MINILM_CACHE": str(tmp_cache), "BUILD_LOG": str(tmp_path / "builds.log")}
    procs = [subprocess.Popen([sys.executable, "-c", BUILD_ONCE], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[0][0] == outs[1][0] == f"{tmp_cache / 'models' / 'fake'}\n"
    assert len((tmp_path / "builds.log").read_text().split()) == 1
    assert files_under(tmp_cache) == ["models/fake/.complete", "models/fake/part1", "models/fake/part2"]


def test_failed_build_leaves_nothing(tmp_cache):
    def build(d: Path) -> None:
        (d / "half").write_text("written before the failure")
        raise MinilmError("the build broke")

    with pytest.raises(MinilmError, match="broke"):
        materialize("models/broken", build)
    assert files_under(tmp_cache) == []
    assert not archives.is_materialized("models/broken")


# --------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize("command", ["pull", "path"])
def test_unknown_zoo_name_is_a_one_line_usage_error(command, tmp_cache, capsys):
    assert main(["zoo", command, "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("minilm: error: unknown zoo name 'nope'")
    assert "all-minilm-l6-v2" in err  # it lists the known names
    assert files_under(tmp_cache) == []


def test_path_of_an_entry_not_pulled_says_how_to_pull(tmp_cache, capsys):
    assert main(["zoo", "path", "all-minilm-l6-v2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "minilm zoo pull all-minilm-l6-v2" in err


def test_zoo_list_shows_models_with_licences(tmp_cache, capsys):
    assert main(["zoo", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["entries"]}
    assert rows["multilingual-e5-small"]["license"] == "MIT" and rows["all-minilm-l6-v2"]["kind"] == "model"
    assert not any(r["cached"] for r in rows.values())


# --------------------------------------------------------------------------- real entries (slow)


@pytest.fixture
def user_cache(monkeypatch) -> Path:
    """The user's default cache (~/.cache/minilm-deploy): real models are downloaded once per machine."""
    monkeypatch.delenv("MINILM_CACHE", raising=False)
    return registry.pull("all-minilm-l6-v2")


@pytest.mark.slow
def test_pull_minilm_then_embed(user_cache, capsys):
    from transformers import AutoModel, AutoTokenizer

    assert main(["zoo", "pull", "all-minilm-l6-v2", "--json"]) == 0
    folder = Path(json.loads(capsys.readouterr().out)["path"])
    assert folder == user_cache
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (folder / name).is_file(), name
    model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert (model.config.num_hidden_layers, model.config.hidden_size, model.config.vocab_size) == (6, 384, 30522)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(22.7e6, rel=0.01)
    import torch

    texts = ["A man is playing a guitar.", "Someone is playing an instrument.", "The stock market crashed today."]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # (3, T, 384)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)  # (3, 384)
    assert emb[0] @ emb[1] > 0.5 > emb[0] @ emb[2]


@pytest.mark.slow
def test_pulled_entry_works_with_the_network_cut_off(user_cache, tmp_path):
    env = offline_env(tmp_path)
    env.pop("MINILM_CACHE", None)
    # the cut is real: an archive that is not cached cannot be fetched in this environment
    probe = run(["-c", "from minilm_deploy.zoo.archives import Archive, fetch; "
                       f"fetch(Archive('six==1.16.0', '{SIX.sha256}'))"], {**env, "MINILM_CACHE": str(tmp_path / "c")})
    assert probe.returncode != 0 and "NetworkError" in probe.stderr
    path = run(["-c", CLI, "zoo", "path", "all-minilm-l6-v2"], env)
    assert path.returncode == 0 and path.stdout.strip() == str(user_cache), path.stderr
    pull = run(["-c", CLI, "zoo", "pull", "all-minilm-l6-v2"], env)
    assert pull.returncode == 0 and pull.stdout.strip() == str(user_cache), pull.stderr
    load = run(["-c", textwrap.dedent("""
        from transformers import AutoModel, AutoTokenizer
        from minilm_deploy.sources import resolve_model
        folder = resolve_model("zoo:all-minilm-l6-v2")
        model = AutoModel.from_pretrained(folder, attn_implementation="eager")
        out = model(**AutoTokenizer.from_pretrained(folder)(["offline"], return_tensors="pt")).last_hidden_state
        print(tuple(out.shape))
    """)], env)
    assert load.returncode == 0 and load.stdout.strip().endswith("(1, 4, 384)"), load.stderr[-2000:]  # [CLS] off ##line [SEP]


@pytest.mark.slow
def test_two_processes_pull_a_real_entry_at_once(tmp_cache, tmp_path):
    env = {**os.environ, "MINILM_CACHE": str(tmp_cache), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", CLI, "zoo", "pull", "all-minilm-l6-v2"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    folder = tmp_cache / "models" / "all-minilm-l6-v2"
    assert outs[0][0].strip() == outs[1][0].strip() == str(folder)
    assert [p.name for p in (tmp_cache / "models").iterdir()] == ["all-minilm-l6-v2"]  # no temporary folders left
    assert [p.name for p in (tmp_cache / "archives").iterdir()] == [registry.get("all-minilm-l6-v2").archives[0].sha256]
    assert (folder / ".complete").is_file()
    assert (folder / "model.safetensors").stat().st_size == 90_868_376
