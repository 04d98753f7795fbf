"""Run a test's check in a fresh interpreter: for checks that send signals, or that would kill the process when
they fail (a SIGINT raised inside the test session's own process, with every library earlier tests loaded,
crashed pytest with SIGSEGV in CI: see test_openvino_signal_stack.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def in_a_fresh_process(test_file: str, check: str, root: Path) -> None:
    """`check(root)` of the test module `test_file` (its `__file__`) in a new interpreter; fails with its stderr
    and exit status (negative: the signal that killed it)."""
    module = f"tests.{Path(test_file).stem}"
    # Ctrl-C handled as in a terminal, even when the tests run in the background (`make test &`, nohup), where the
    # shell starts them with SIGINT ignored and an ignored SIGINT stays ignored in every child
    code = (f"import signal; signal.signal(signal.SIGINT, signal.default_int_handler); from pathlib import Path; "
            f"from {module} import {check}; {check}(Path({str(root)!r}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
