"""Carry zoo entries from this cache to a machine that reaches no registry (a lent GPU: 64 MiB may travel).

    .venv/bin/python -m bench.zoo_carry pack .gpu models/all-minilm-l6-v2 corpora/corpus-en datasets/rotten-tomatoes
    python3 -m bench.zoo_carry unpack .gpu /tmp/minilm-cache      # there; then MINILM_CACHE=/tmp/minilm-cache

A pack over the 64 MiB (the base-size teacher: 210 MiB in float16) travels in parts, one per call on the machine
while it is still warm (it keeps /tmp between calls), and is joined there:

    .venv/bin/python -m bench.zoo_carry split .gpu/zoo-mpnet .gpu/parts --mib 56   # here: parts.json, part-000, ...
    # each call, carry [".gpu/parts/parts.json", ".gpu/parts/part-00K"]:  mkdir -p /tmp/parts && cp .gpu/parts/* /tmp/parts/
    python3 -m bench.zoo_carry join /tmp/parts /tmp/zoo-mpnet                     # there, once every part is in

`pack` copies each entry's folder, stores float32 safetensors as float16 (half the bytes; every weight rounded to
11 significant bits, a relative change of at most 2**-11 = 4.9e-4: the carried model is close to, not equal to, the
zoo's) and gzips text files over 1 MB. `unpack` rebuilds a cache the library reads as it is (float32 weights, the
entries' completion markers), so the zoo names resolve there without a download. manifest.json says what was done.
Only this project's own zoo cache goes in: nothing is unpickled on either side.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from minilm_deploy.paths import cache_root
from minilm_deploy.zoo.archives import COMPLETE_MARKER

MANIFEST = "manifest.json"
GZIP_OVER = 1 << 20
PARTS = "parts.json"


def _recast(source: Path, target: Path, old: type, new: type) -> None:
    """`source`'s safetensors with every `old`-typed tensor cast to `new` (others as they are), written to `target`."""
    from safetensors.numpy import load_file, save_file

    tensors = load_file(source)
    save_file({k: v.astype(new) if v.dtype == old else v for k, v in tensors.items()}, target, metadata={"format": "pt"})


def pack(entries: list[str], out: Path, cache: Path) -> dict[str, list[str]]:
    """`entries` (relative paths under `cache`, e.g. models/all-minilm-l6-v2) into `out`; returns the manifest:
    per entry, the files stored as float16 and the files gzipped."""
    manifest: dict[str, list[str]] = {"fp16": [], "gzip": [], "entries": list(entries)}
    for entry in entries:
        source = cache / entry
        if not (source / COMPLETE_MARKER).is_file():
            raise SystemExit(f"zoo_carry: {source} is not a complete zoo entry; pull it first (`minilm zoo pull`)")
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            rel = path.relative_to(cache)
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".safetensors":
                _recast(path, target, np.float32, np.float16)
                manifest["fp16"].append(str(rel))
            elif path.stat().st_size > GZIP_OVER:
                with path.open("rb") as src, gzip.open(target.with_name(target.name + ".gz"), "wb", compresslevel=6) as dst:
                    shutil.copyfileobj(src, dst)
                manifest["gzip"].append(str(rel))
            else:
                shutil.copy2(path, target)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def unpack(carried: Path, cache: Path) -> None:
    """The cache `pack` described, rebuilt under `cache` (float32 weights, text un-gzipped)."""
    manifest = json.loads((carried / MANIFEST).read_text())
    for path in sorted(p for p in carried.rglob("*") if p.is_file() and p.name != MANIFEST):
        rel = path.relative_to(carried)
        target = cache / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if str(rel) in manifest["fp16"]:
            _recast(path, target, np.float16, np.float32)
        elif path.suffix == ".gz" and str(rel.with_suffix("")) in manifest["gzip"]:
            with gzip.open(path, "rb") as src, target.with_suffix("").open("wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            shutil.copy2(path, target)


class _PartWriter(io.RawIOBase):
    """A write-only stream cut into files of at most `size` bytes (`out`/part-000, part-001, ...), hashed as written."""

    def __init__(self, out: Path, size: int) -> None:
        self.out, self.size = out, size
        self.parts: list[dict[str, Any]] = []
        self._file: io.BufferedWriter | None = None
        self._hash = hashlib.sha256()
        self._left = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        view = memoryview(data)
        while view:
            if self._left == 0:
                self._roll()
            chunk, view = view[: self._left], view[self._left :]
            assert self._file is not None
            self._file.write(chunk)
            self._hash.update(chunk)
            self._left -= len(chunk)
        return len(data)

    def _roll(self) -> None:
        self._finish()
        name = f"part-{len(self.parts):03d}"
        self.parts.append({"name": name})
        self._file, self._hash, self._left = (self.out / name).open("wb"), hashlib.sha256(), self.size

    def _finish(self) -> None:
        if self._file is not None:
            self.parts[-1] |= {"bytes": self._file.tell(), "sha256": self._hash.hexdigest()}
            self._file.close()
            self._file = None

    def close(self) -> None:
        self._finish()
        super().close()


def split(folder: Path, out: Path, part_bytes: int) -> dict[str, Any]:
    """`folder` (a pack) as one tar cut into parts of at most `part_bytes` in `out`, with parts.json: each part's
    size and sha256. The parts go as they are: float16 weights do not compress."""
    if not folder.is_dir():
        raise SystemExit(f"zoo_carry: {folder} is not a folder; split the folder `pack` wrote")
    out.mkdir(parents=True, exist_ok=True)
    writer = _PartWriter(out, part_bytes)
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.add(folder, arcname=".")
    writer.close()
    index = {"folder": folder.name, "parts": writer.parts}
    (out / PARTS).write_text(json.dumps(index, indent=1) + "\n")
    return index


class _Joined(io.RawIOBase):
    """The parts read back, in order, as one stream (`join` checks them first)."""

    def __init__(self, paths: list[Path]) -> None:
        self._paths = list(paths)
        self._file: io.BufferedReader | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while True:
            if self._file is None:
                if not self._paths:
                    return 0
                self._file = self._paths.pop(0).open("rb")
            n = self._file.readinto(buffer)
            if n:
                return n
            self._file.close()
            self._file = None


def join(parts: Path, dest: Path) -> None:
    """The folder `split` cut, rebuilt under `dest` from the parts in `parts`, once every part is there and matches
    parts.json. Only regular files and folders inside `dest` are extracted (tarfile's "data" filter)."""
    if not (parts / PARTS).is_file():
        raise SystemExit(f"zoo_carry: {parts} has no {PARTS}; carry it with the parts `split` wrote")
    index = json.loads((parts / PARTS).read_text())
    missing = [p["name"] for p in index["parts"] if not (parts / p["name"]).is_file()]
    if missing:
        raise SystemExit(f"zoo_carry: {parts} lacks {', '.join(missing)} of {len(index['parts'])} parts; carry them first")
    for part in index["parts"]:
        with (parts / part["name"]).open("rb") as f:
            if hashlib.file_digest(f, "sha256").hexdigest() != part["sha256"]:
                raise SystemExit(f"zoo_carry: {parts / part['name']} does not match parts.json (sha256); carry it again")
    dest.mkdir(parents=True, exist_ok=True)
    stream = io.BufferedReader(_Joined([parts / p["name"] for p in index["parts"]]), buffer_size=1 << 20)
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        tar.extractall(dest, filter="data")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    packing = sub.add_parser("pack")
    packing.add_argument("out", type=Path)
    packing.add_argument("entries", nargs="+", help="paths under the cache: models/NAME, corpora/NAME, datasets/NAME")
    unpacking = sub.add_parser("unpack")
    unpacking.add_argument("carried", type=Path)
    unpacking.add_argument("cache", type=Path)
    splitting = sub.add_parser("split", help="a pack over the 64 MiB that may travel, cut into parts")
    splitting.add_argument("folder", type=Path)
    splitting.add_argument("out", type=Path)
    splitting.add_argument("--mib", type=int, default=56, help="largest part in MiB (default 56: with the working tree, under the 64 that travel)")
    joining = sub.add_parser("join", help="the parts split made, checked and rebuilt into a folder")
    joining.add_argument("parts", type=Path)
    joining.add_argument("dest", type=Path)
    args = parser.parse_args()
    if args.command == "pack":
        manifest = pack(args.entries, args.out, cache_root())
        size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
        print(f"zoo_carry: {len(manifest['entries'])} entries in {args.out}, {size / 2**20:.1f} MiB")
    elif args.command == "split":
        index = split(args.folder, args.out, args.mib << 20)
        print(f"zoo_carry: {args.folder} in {len(index['parts'])} parts of at most {args.mib} MiB in {args.out}")
    elif args.command == "join":
        join(args.parts, args.dest)
        print(f"zoo_carry: joined into {args.dest}")
    else:
        unpack(args.carried, args.cache)
        print(f"zoo_carry: unpacked into {args.cache}")


if __name__ == "__main__":
    main()
