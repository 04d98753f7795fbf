"""glibc's malloc during a CPU training loop: freed memory kept for the next step instead of given back.

A training step frees and makes again the same large tensors every step (activations, attention scores, the
word embedding's gradient). glibc serves an allocation above its mmap threshold (128 KiB at first, raised to at
most 32 MiB as such blocks are freed) with a fresh `mmap` and gives it back with `munmap` when freed, and it trims
the heap's top above its trim threshold; every page of memory got again is then a page fault that the kernel
fills with zeros. Measured on an AMX Xeon (bf16, `python -m bench.cpu_training --ways cpu-training,glibc-heap`,
bench/results/cpu_training_amx_bf16*_heap.md): distilling a 3x384 student from all-MiniLM-L6-v2 (256k tokens, batch
32 x 64) took 3.7-4.1 million minor page faults with glibc as it comes and 0.3 million with the heap kept, and ran
1.06x (1 thread) and 1.04x (2 threads) faster; fine-tuning all-MiniLM-L6-v2 1.03x and 1.06x; peak memory the same.
In float32 the step is longer and the gain within noise (1.01x, distillation, 1 thread).
jemalloc and tcmalloc, which Intel recommends preloading for PyTorch on CPUs, keep freed memory by design; this
needs no preload and no dependency.

`kept_heap("cpu")` turns mmap off (every block from the heap, which glibc still extends with mmap where it cannot
grow) and trimming off, and on leaving gives the free memory back (`malloc_trim`) and sets glibc's defaults again
(from then on its mmap threshold stays where it was instead of adapting). Elsewhere than on a CPU, or with another
C library, it does nothing. Nothing computed changes: only where freed memory goes. One cost: glibc reuses a freed
block for a request of the same size only once a freed neighbour makes room for the 64-byte alignment PyTorch asks
for, so a loop that makes and frees one large tensor between long-lived small allocations grows the heap by that
tensor for a few rounds before it settles (tests/test_cpu_heap.py); glibc already does so below its mmap threshold.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Iterator

M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
M_MMAP_MAX = -4
DEFAULT_TRIM_THRESHOLD = 128 * 1024  # glibc's defaults
DEFAULT_MMAP_MAX = 65536
NEVER_TRIM = 2**31 - 1  # mallopt takes an int

_depth = 0  # kept_heap blocks entered and not left (nested ones change nothing)


@functools.cache
def glibc() -> ctypes.CDLL | None:
    """This process's C library if it is glibc (it has `gnu_get_libc_version`, `mallopt`, `malloc_trim`), else None."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not all(hasattr(libc, name) for name in ("gnu_get_libc_version", "mallopt", "malloc_trim")):
        return None
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    return libc


def kept() -> bool:
    """Whether a `kept_heap` block is in force."""
    return _depth > 0


def _set(libc: ctypes.CDLL, mmap_max: int, trim_threshold: int) -> None:
    if not (libc.mallopt(M_MMAP_MAX, mmap_max) and libc.mallopt(M_TRIM_THRESHOLD, trim_threshold)):
        raise RuntimeError("glibc's mallopt refused a setting")  # glibc accepts both for any int: a bug here


@contextlib.contextmanager
def kept_heap(device_type: str) -> Iterator[bool]:
    """On a CPU with glibc: freed memory stays with the process until the block ends (yields True); else nothing
    (yields False)."""
    global _depth
    libc = glibc() if device_type == "cpu" else None
    if libc is None:
        yield False
        return
    if _depth == 0:
        _set(libc, 0, NEVER_TRIM)
    _depth += 1
    try:
        yield True
    finally:
        _depth -= 1
        if _depth == 0:
            _set(libc, DEFAULT_MMAP_MAX, DEFAULT_TRIM_THRESHOLD)
            libc.malloc_trim(0)
