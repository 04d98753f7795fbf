"""Issue 18, root cause 4: output paths. Checked before any work starts (a file on the way, an unwritable
place), and any operating-system error at write time is one line `minilm: error: cannot write PATH: reason`
with exit code 1, through the CLI's one mapping."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import yaml

from minilm_deploy.cli.main import main
from minilm_deploy.errors import InputError
from minilm_deploy.paths import check_writable, os_error_line


def test_os_errors_become_one_line_with_the_path_and_what_to_do() -> None:
    full = OSError(errno.ENOSPC, "No space left on device", "/data/out/model.onnx")
    assert os_error_line(full) == "cannot write /data/out/model.onnx: no space left on device; free some disk space and run it again"
    denied = PermissionError(errno.EACCES, "Permission denied", "/srv/x")
    assert os_error_line(denied).startswith("cannot write /srv/x: permission denied; choose a folder")
    assert os_error_line(OSError(errno.EIO, "Input/output error")) == "cannot access a file: input/output error"


def test_check_writable_names_the_file_in_the_way(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(InputError, match=r"a-file is a file, not a folder; choose another --output"):
        check_writable(blocker / "out" / "deeper")
    with pytest.raises(InputError, match="it is a file, not a folder"):
        check_writable(blocker)
    check_writable(tmp_path / "new" / "folder")  # nothing in the way: fine, and nothing created
    assert not (tmp_path / "new").exists()


def _commands(tmp_path: Path, model: Path, out: Path) -> dict[str, list[str]]:
    task = tmp_path / "task.csv"
    task.write_text("text,label\n" + "".join(f"the film was {'good' if i % 2 else 'bad'},{i % 2}\n" for i in range(20)))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"the film number {i} was good" for i in range(40)) + "\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"name": "t", "teacher": str(model), "output_dir": str(out), "seed": 1,
                                      "distill": {"corpus": str(corpus), "student": {"layers": 1, "hidden": 16},
                                                  "train": {"steps": 2, "batch_size": 2, "max_length": 16}}}))
    return {
        "export": ["export", str(model), "--output", str(out)],
        "finetune": ["finetune", str(model), "--task", str(task), "--set", "eval_splits=[]", "--output", str(out)],
        "distill": ["distill", str(recipe)],
    }


@pytest.mark.parametrize("command", ["export", "finetune", "distill"])
def test_an_output_below_a_regular_file_is_refused_before_any_work(tmp_path, tiny_bert_session_dir, capsys, command):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    args = _commands(tmp_path, tiny_bert_session_dir, blocker / "out")[command]
    capsys.readouterr()
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "blocker is a file, not a folder" in err[0], err
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("command", ["export", "finetune", "distill"])
def test_an_output_the_system_refuses_is_one_line(tmp_path, tiny_bert_session_dir, capsys, command):
    """/proc refuses new folders even to root: the write fails in the operating system, mapped to one line."""
    args = _commands(tmp_path, tiny_bert_session_dir, Path("/proc/minilm-test-out"))[command]
    capsys.readouterr()
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code in (1, 2) and len(err) == 1 and err[0].startswith("minilm: error: cannot write /proc"), err
    assert not Path("/proc/minilm-test-out").exists()


def test_a_ctrl_c_while_the_temporary_folder_is_made_leaves_nothing_behind(tmp_path, monkeypatch) -> None:
    import signal
    import tempfile

    from minilm_deploy import paths

    real = tempfile.mkdtemp

    def interrupted(*args, **kwargs):  # Ctrl-C comes after the folder is made, before its name is returned
        made = real(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)
        return made

    monkeypatch.setattr(paths.tempfile, "mkdtemp", interrupted)
    ran = []
    with pytest.raises(KeyboardInterrupt), paths.atomic_directory(tmp_path / "out"):
        ran.append(True)
    assert not ran and list(tmp_path.iterdir()) == []
