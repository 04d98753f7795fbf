"""Carry zoo entries from this cache to a machine that reaches no registry (a lent GPU: 64 MiB may travel).

    .venv/bin/python -m bench.zoo_carry pack .gpu models/all-minilm-l6-v2 corpora/corpus-en datasets/rotten-tomatoes
    python3 -m bench.zoo_carry unpack .gpu /tmp/minilm-cache      # there; then MINILM_CACHE=/tmp/minilm-cache

`pack` copies each entry's folder, stores float32 safetensors as float16 (half the bytes; every weight rounded to
11 significant bits, a relative change of at most 2**-11 = 4.9e-4: the carried model is close to, not equal to, the
zoo's) and gzips text files over 1 MB. `unpack` rebuilds a cache the library reads as it is (float32 weights, the
entries' completion markers), so the zoo names resolve there without a download. manifest.json says what was done.
Only this project's own zoo cache goes in: nothing is unpickled on either side.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
from pathlib import Path

import numpy as np

from minilm_deploy.paths import cache_root
from minilm_deploy.zoo.archives import COMPLETE_MARKER

MANIFEST = "manifest.json"
GZIP_OVER = 1 << 20


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    packing = sub.add_parser("pack")
    packing.add_argument("out", type=Path)
    packing.add_argument("entries", nargs="+", help="paths under the cache: models/NAME, corpora/NAME, datasets/NAME")
    unpacking = sub.add_parser("unpack")
    unpacking.add_argument("carried", type=Path)
    unpacking.add_argument("cache", type=Path)
    args = parser.parse_args()
    if args.command == "pack":
        manifest = pack(args.entries, args.out, cache_root())
        size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
        print(f"zoo_carry: {len(manifest['entries'])} entries in {args.out}, {size / 2**20:.1f} MiB")
    else:
        unpack(args.carried, args.cache)
        print(f"zoo_carry: unpacked into {args.cache}")


if __name__ == "__main__":
    main()
