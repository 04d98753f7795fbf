"""The `minilm` app: commands, help with examples, version, and the one top-level error handler."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from minilm_deploy import __version__
from minilm_deploy.cli.main import app, main

COMMANDS = ["distill", "finetune", "eval", "export", "bench", "serve", "run", "zoo"]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "minilm_deploy", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False,
    )


def test_help_lists_every_command() -> None:
    proc = _run("--help")
    assert proc.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in proc.stdout


@pytest.mark.parametrize("args", [[c] for c in COMMANDS if c != "zoo"] + [["zoo", s] for s in ("list", "pull", "path")])
def test_every_command_has_help_with_an_example(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*args, "--help"]) == 0
    out = capsys.readouterr().out
    marker = "Examples:" if "Examples:" in out else "Example:"
    assert marker in out and "minilm " in out.split(marker)[1]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"minilm-deploy {__version__}"


def test_usage_error_exits_2_without_traceback() -> None:
    proc = _run("zoo", "list", "--no-such-flag")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "No such option" in proc.stderr


def test_known_error_is_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    env = {"MINILM_CACHE": str(tmp_path)}
    proc = _run("zoo", "pull", "no-such-model", env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minilm: error: unknown zoo name 'no-such-model'")
    assert "minilm zoo list" in lines[0]
    debug = _run("--debug", "zoo", "pull", "no-such-model", env=env)
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    assert not any(tmp_path.iterdir()) or not (tmp_path / "models").exists()


def test_path_of_an_entry_not_pulled_says_how_to_pull(tmp_path: Path) -> None:
    proc = _run("zoo", "path", "all-minilm-l6-v2", env={"MINILM_CACHE": str(tmp_path)})
    assert proc.returncode == 2
    assert "minilm zoo pull all-minilm-l6-v2" in proc.stderr


def test_zoo_list_json_names_licences(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["zoo", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["entries"]
    assert {r["name"] for r in rows} >= {"all-minilm-l6-v2", "rotten-tomatoes"}
    assert all(r["license"] for r in rows)


def test_app_name() -> None:
    assert app.info.name == "minilm"
