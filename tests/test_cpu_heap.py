"""cpu_heap.kept_heap: freed memory reused without page faults inside the block, given back after it."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest
import torch

from minilm_deploy import cpu_heap

needs_glibc = pytest.mark.skipif(cpu_heap.glibc() is None, reason="glibc's mallopt is not in this process")
BLOCK = 64 * 2**20  # bytes: above glibc's largest mmap threshold (32 MiB), so outside the block it is mmap'd
PAGES = BLOCK // resource.getpagesize()
# glibc reuses a freed block of the same size only once freed neighbours make room for the alignment PyTorch asks
# for (64 bytes): a loop like faults_per_round's grows the heap for its first few rounds
ROUNDS = 16


def faults_per_round(rounds: int = ROUNDS) -> list[int]:
    """Minor page faults in each of `rounds` rounds of making, writing and freeing a BLOCK-sized tensor."""
    faults = []
    for _ in range(rounds):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(BLOCK // 4)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return faults


def resident_pages() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1])


@needs_glibc
def test_freed_memory_is_reused_inside_and_given_back_after() -> None:
    with cpu_heap.kept_heap("cpu") as kept:
        assert kept and cpu_heap.kept()
        inside = faults_per_round()
        held = resident_pages()
    assert not cpu_heap.kept()
    assert max(inside[-4:]) < PAGES // 20, (inside, PAGES)  # the pages freed are the pages reused
    assert resident_pages() < held - PAGES // 2  # malloc_trim gave the freed block's pages back
    assert faults_per_round(1)[0] > PAGES // 2  # so they fault anew


@needs_glibc
def test_only_the_outermost_block_gives_memory_back_exception_or_not() -> None:
    with pytest.raises(ValueError), cpu_heap.kept_heap("cpu"):
        faults_per_round(4)
        held = resident_pages()  # at least one freed BLOCK among them
        with cpu_heap.kept_heap("cpu"):
            pass
        assert cpu_heap.kept() and resident_pages() > held - PAGES // 2
        raise ValueError
    assert not cpu_heap.kept() and resident_pages() < held - PAGES // 2


def test_nothing_changes_off_the_cpu() -> None:
    with cpu_heap.kept_heap("cuda") as kept:
        assert not kept and not cpu_heap.kept()
