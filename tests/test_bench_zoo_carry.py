"""bench/zoo_carry.py: a zoo cache packed for a machine without registries unpacks into one the library reads,
with float32 weights within float16 rounding and text files byte for byte."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from bench import zoo_carry


def test_pack_then_unpack_gives_back_the_cache(tmp_path: Path) -> None:
    cache, carried, rebuilt = tmp_path / "cache", tmp_path / "carried", tmp_path / "rebuilt"
    model, corpus = cache / "models" / "tiny", cache / "corpora" / "text"
    for folder in (model, corpus):
        folder.mkdir(parents=True)
        (folder / ".complete").write_text("ok\n")
    weights = {"w": np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32),
               "ids": np.arange(8, dtype=np.int64)}
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    (model / "config.json").write_text('{"hidden_size": 32}')
    text = "".join(f"line {i} of the corpus\n" for i in range(80_000))  # over 1 MB: gzipped
    (corpus / "corpus.txt").write_text(text)

    manifest = zoo_carry.pack(["models/tiny", "corpora/text"], carried, cache)
    assert manifest["fp16"] == ["models/tiny/model.safetensors"] and manifest["gzip"] == ["corpora/text/corpus.txt"]
    assert load_file(carried / "models/tiny/model.safetensors")["w"].dtype == np.float16
    assert (carried / "corpora/text/corpus.txt.gz").stat().st_size < len(text) / 4

    zoo_carry.unpack(carried, rebuilt)
    back = load_file(rebuilt / "models/tiny/model.safetensors")
    assert back["w"].dtype == np.float32 and np.array_equal(back["ids"], weights["ids"])
    assert np.abs(back["w"] - weights["w"]).max() <= 2**-11 * np.abs(weights["w"]).max()
    assert (rebuilt / "corpora/text/corpus.txt").read_text() == text
    assert (rebuilt / "models/tiny/.complete").read_text() == "ok\n" and (rebuilt / "models/tiny/config.json").is_file()


def test_an_incomplete_entry_is_refused(tmp_path: Path) -> None:
    (tmp_path / "models" / "half").mkdir(parents=True)
    with pytest.raises(SystemExit, match="not a complete zoo entry"):
        zoo_carry.pack(["models/half"], tmp_path / "out", tmp_path)


def _folder(root: Path) -> Path:
    folder = root / "pack"
    (folder / "models" / "m").mkdir(parents=True)
    (folder / "models" / "m" / "weights.bin").write_bytes(np.random.default_rng(1).bytes(300_000))
    (folder / "manifest.json").write_text('{"entries": ["models/m"]}\n')
    return folder


def test_split_then_join_gives_back_the_folder_byte_for_byte(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    index = zoo_carry.split(folder, tmp_path / "parts", 100_000)
    sizes = [part["bytes"] for part in index["parts"]]
    assert len(sizes) >= 3 and max(sizes) <= 100_000 and all(size == 100_000 for size in sizes[:-1])
    zoo_carry.join(tmp_path / "parts", tmp_path / "joined")
    for path in (Path("models/m/weights.bin"), Path("manifest.json")):
        assert (tmp_path / "joined" / path).read_bytes() == (folder / path).read_bytes()


def test_join_refuses_a_missing_or_altered_part_and_writes_nothing(tmp_path: Path) -> None:
    zoo_carry.split(_folder(tmp_path), tmp_path / "parts", 100_000)
    part = tmp_path / "parts" / "part-001"
    data = part.read_bytes()
    part.unlink()
    with pytest.raises(SystemExit, match="lacks part-001 of"):
        zoo_carry.join(tmp_path / "parts", tmp_path / "joined")
    part.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(SystemExit, match="part-001 does not match"):
        zoo_carry.join(tmp_path / "parts", tmp_path / "joined")
    assert not (tmp_path / "joined").exists()


def test_split_of_a_missing_folder_and_join_without_parts_json_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="is not a folder"):
        zoo_carry.split(tmp_path / "absent", tmp_path / "parts", 100_000)
    assert not (tmp_path / "parts").exists()
    (tmp_path / "parts").mkdir()
    with pytest.raises(SystemExit, match="has no parts.json"):
        zoo_carry.join(tmp_path / "parts", tmp_path / "joined")
    assert not (tmp_path / "joined").exists()
