"""One loading path for model folders, used by every command (distill, finetune, eval, export, serve, bench).

Every known failure is one line naming the file and the fix, raised before transformers is asked:
- no config.json, or one that is not a JSON object;
- weights: safetensors only (`model.safetensors`, or shards listed by `model.safetensors.index.json`).
  A folder with only pickle weights (`pytorch_model.bin`, …) is refused without reading them:
  unpickling can run code. The message says how to convert them once, where the file is trusted;
- a truncated or corrupt safetensors file (an interrupted copy): its size against what its own
  header says, checked in microseconds without reading the tensors;
- a tokenizer that does not load, has no padding token, or has more tokens than the model's
  vocabulary (a tokenizer of another model: ids past the embedding table).
"""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from minilm_deploy.errors import InputError

CONFIG = "config.json"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.ckpt")
MAX_HEADER = 100 << 20  # safetensors' own limit on the JSON header


def convert_hint(folder: Path) -> str:
    return (f"convert them once where you trust the file: python -c \"from transformers import AutoModel; "
            f"AutoModel.from_pretrained('{folder}').save_pretrained('{folder}', safe_serialization=True)\"")


def read_config(folder: Path) -> dict[str, Any]:
    """config.json as a dict; a missing or unreadable one is one line."""
    file = Path(folder) / CONFIG
    if not file.is_file():
        raise InputError(f"{folder}: no {CONFIG}; give a Hugging Face model folder (config.json, model.safetensors, tokenizer)")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{file}: not valid JSON ({exc}); restore the model's config.json") from None
    if not isinstance(data, dict) or "model_type" not in data:
        raise InputError(f"{file}: not a Hugging Face model config (no model_type); restore the model's config.json")
    return data


def weight_files(folder: Path) -> list[Path]:
    """The folder's safetensors files, each checked against its header; pickle-only folders are refused."""
    folder = Path(folder)
    index = folder / SAFETENSORS_INDEX
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise InputError(f"{index}: not a safetensors index (no weight_map); restore it") from None
        files = [folder / name for name in names]
        for file in files:
            if not file.is_file():
                raise InputError(f"{file}: missing, but {SAFETENSORS_INDEX} lists it; the folder is incomplete: copy it again")
    elif (folder / SAFETENSORS).is_file():
        files = [folder / SAFETENSORS]
    else:
        pickles = [name for name in PICKLE_WEIGHTS if (folder / name).is_file()]
        if pickles:
            raise InputError(f"{folder}: only pickle weights ({', '.join(pickles)}); minilm loads safetensors only, "
                             f"because unpickling can run code: {convert_hint(folder)}")
        raise InputError(f"{folder}: no {SAFETENSORS}; the model folder is incomplete")
    for file in files:
        check_safetensors(file)
    return files


def check_safetensors(file: Path) -> None:
    """A safetensors file is an 8-byte header length, a JSON header, then the tensors' bytes: the header says
    where the last tensor ends, so a truncated file is caught without reading the tensors."""
    size = file.stat().st_size
    damaged = f"{file}: not a complete safetensors file"
    with open(file, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise InputError(f"{damaged} ({size} bytes); copy it again")
        (length,) = struct.unpack("<Q", head)
        if length > min(MAX_HEADER, size - 8):
            raise InputError(f"{damaged} (header of {length:,} bytes in a {size:,}-byte file); copy it again")
        try:
            header = json.loads(handle.read(length))
            end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, IndexError):
            raise InputError(f"{damaged} (unreadable header); copy it again") from None
    expected = 8 + length + end
    if size < expected:
        raise InputError(f"{file}: truncated ({size:,} of {expected:,} bytes): an interrupted copy or download; copy it again")


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' load reports and progress bars: a command's stderr is for its own lines."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_config(folder: Path) -> Any:
    """The transformers config of a checked folder."""
    from transformers import AutoConfig

    read_config(folder)
    try:
        with quiet_transformers():
            return AutoConfig.from_pretrained(str(folder))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{Path(folder) / CONFIG}: transformers cannot read it ({_first_line(exc)}); "
                         "restore the model's config.json") from None


def load_weights(auto_class: Any, folder: Path, **kwargs: Any) -> Any:
    """`auto_class.from_pretrained(folder, use_safetensors=True, **kwargs)` after the folder's checks; any
    failure left is one line."""
    weight_files(folder)
    try:
        with quiet_transformers():
            return auto_class.from_pretrained(str(folder), use_safetensors=True, **kwargs)
    except Exception as exc:  # transformers raises OSError, ValueError, SafetensorError, RuntimeError (shapes), …
        raise InputError(f"{folder}: cannot load the model ({_first_line(exc)}); check the folder is a complete, "
                         "uncorrupted model of a supported architecture") from None


def load_tokenizer(folder: Path, *, fast: bool = False) -> Any:
    """The folder's tokenizer, with a padding token (and a fast one when `fast`)."""
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except Exception as exc:  # OSError, ValueError, TypeError, the tokenizers library's own Exception
        raise InputError(f"{folder}: no usable tokenizer in this folder ({_first_line(exc)}); save the model's "
                         "tokenizer next to it (tokenizer.json, tokenizer_config.json)") from None
    if tokenizer.pad_token_id is None:
        raise InputError(f"{folder}: the tokenizer has no padding token; set pad_token in tokenizer_config.json")
    if fast and not getattr(tokenizer, "is_fast", False):
        raise InputError(f"{folder}: a fast tokenizer (tokenizer.json) is needed; save one with the model")
    return tokenizer


def check_vocabulary(folder: Path, tokenizer: Any, config: Any) -> None:
    """Every token id the tokenizer can produce must have a row in the model's embedding table."""
    vocab = int(getattr(config, "vocab_size", 0) or 0)  # a transformers config
    if vocab and len(tokenizer) > vocab:
        raise InputError(f"{folder}: the tokenizer has {len(tokenizer)} tokens but the model's vocabulary has {vocab}; "
                         "the tokenizer does not belong to this model: save the matching tokenizer into the folder")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
