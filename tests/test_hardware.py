"""CPU facts read once: the class figures are compared within, and where bf16 autocast pays."""

from __future__ import annotations

import pytest

from minilm_deploy import hardware


def test_cpu_class_is_the_most_capable_flag_present() -> None:
    sapphire = frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"})
    assert hardware.cpu_class(sapphire) == "amx"
    assert hardware.cpu_class(frozenset({"avx2", "avx512_vnni"})) == "avx512_vnni"
    assert hardware.cpu_class(frozenset({"avx", "avx2"})) == "avx2"
    assert hardware.cpu_class(frozenset()) not in {"amx", "avx512_vnni", "avx2"}  # the machine name, e.g. aarch64


def test_fast_bf16_needs_amx_or_avx512_bf16() -> None:
    assert hardware.cpu_has_fast_bf16(frozenset({"avx2", "amx_bf16"}))
    assert hardware.cpu_has_fast_bf16(frozenset({"avx512_bf16"}))
    assert not hardware.cpu_has_fast_bf16(frozenset({"avx2", "avx512_vnni"}))  # AMD Zen 3/4 without BF16: slower


@pytest.mark.parametrize(("flags", "expected"), [({"avx2", "amx_bf16"}, True), ({"avx2", "avx512_vnni"}, False)])
def test_auto_turns_bf16_on_only_where_the_cpu_has_it(monkeypatch, flags: set[str], expected: bool) -> None:
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags))
    assert hardware.bf16_autocast("auto", "cpu") is expected
    assert hardware.bf16_autocast(True, "cpu") is True and hardware.bf16_autocast(False, "cpu") is False


def test_this_machine_is_read_from_proc_cpuinfo() -> None:
    flags = hardware.cpu_flags()
    assert hardware.cpu_class() == hardware.cpu_class(flags)
    assert hardware.bf16_autocast("auto", "cpu") == hardware.cpu_has_fast_bf16(flags)
    assert isinstance(hardware.cpu_name(), str) and hardware.cpu_name()


@pytest.mark.parametrize(("flags", "machine", "expected"), [
    ({"avx", "avx2"}, "x86_64", True),  # AVX2 only: vpmaddubsw adds u8·s8 pairs in int16
    ({"avx2", "avx512bw"}, "x86_64", True),  # AVX-512 without VNNI saturates the same way
    ({"avx2", "avx512_vnni"}, "x86_64", False),
    ({"avx2", "avx_vnni"}, "AMD64", False),
    ({"avx2", "avx512_vnni", "amx_int8"}, "x86_64", False),
    (set(), "aarch64", False),  # Arm's int8 dot products accumulate in int32
])
def test_int8_saturates_on_x86_without_vnni_or_amx(flags: set[str], machine: str, expected: bool) -> None:
    assert hardware.int8_saturates(frozenset(flags), machine) is expected
