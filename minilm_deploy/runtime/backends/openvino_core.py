"""The process's one OpenVINO Core.

Why one: OpenVINO's CPU plugin (2026.4 and earlier; `intel_cpu`'s `SigAltStackSetup`) gives the thread that
creates it an alternate signal stack of its own (for AMX's larger signal frames), remembering the one it found;
when the plugin is destroyed it puts the remembered one back only if its own is still current, then unmaps its
own. Every `ov.Core()` that compiles for the CPU makes a plugin, and a compiled model keeps its plugin alive. Two
plugins destroyed in the order they were made (first A, then B) leave the thread on A's stack, which is unmapped:
the next signal handled on that thread (a Ctrl-C; Python's handlers run on the alternate stack) kills the process
with SIGSEGV instead of raising KeyboardInterrupt. `minilm export --profile auto` compiles several candidates
and frees them in any order; so did the test session, which crashed on a later Ctrl-C test.

So everything this package reads and compiles goes through `openvino_core()`: one Core, whose CPU plugin is
made once and never destroyed.
"""

from __future__ import annotations

import threading
from typing import Any

_core: list[Any] = []  # the one Core, once made
_core_lock = threading.Lock()


def openvino_core() -> Any:
    """The process's one `openvino.Core`, its CPU plugin loaded at the first call and kept until exit (see the
    module docstring): read and compile every model through it, never through a new `ov.Core()`."""
    with _core_lock:  # two threads' first calls must not make two plugins
        if not _core:
            import openvino as ov

            core = ov.Core()
            core.get_property("CPU", "FULL_DEVICE_NAME")  # makes the CPU plugin (and its signal stack) here, once
            _core.append(core)
        return _core[0]
