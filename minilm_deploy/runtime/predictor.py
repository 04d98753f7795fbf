"""`Predictor`: texts in, labels and scores (or embeddings) out, over any registered backend.

    p = Predictor.load("runs/quickstart/export", backend="auto", device="cpu", threads=2)
    p.predict(["a fine film", "a dull one"]).labels      # ['positive', 'negative']
    p.predict([("a question", "an answer")])              # sentence pairs

Tokenisation happens inside, with dynamic padding (to the longest text of the batch) and truncation
at the artifact's `max_length`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from minilm_deploy.errors import InputError, MinilmError
from minilm_deploy.runtime.backends import BACKENDS, Runner, runner_class
from minilm_deploy.runtime.model_folder import ModelFolder, inspect_model

DEVICES = ("cpu", "cuda")
TextInput = Sequence[str] | Sequence[tuple[str, str]]


@dataclass
class Predictions:
    task: str
    labels: list[str] | None = None  # classification: the arg-max label per text
    scores: np.ndarray | None = None  # classification: (B, C) probabilities; regression: (B,)
    embeddings: np.ndarray | None = None  # embedding: (B, H) mean-pooled

    def __len__(self) -> int:
        return len(next(x for x in (self.labels, self.scores, self.embeddings) if x is not None))

    # The field the task always carries (a Predictions of another task lacks it: a bug, not a user error).
    @property
    def label_list(self) -> list[str]:
        assert self.labels is not None, f"a {self.task} prediction has no labels"
        return self.labels

    @property
    def score_array(self) -> np.ndarray:
        assert self.scores is not None, f"a {self.task} prediction has no scores"
        return self.scores

    @property
    def embedding_array(self) -> np.ndarray:
        assert self.embeddings is not None, f"a {self.task} prediction has no embeddings"
        return self.embeddings

    def take(self, index: Sequence[int] | np.ndarray) -> Predictions:
        """The predictions at `index`, in that order."""
        idx = np.asarray(index, dtype=np.int64)
        pick = lambda x: None if x is None else x[idx]  # noqa: E731
        labels = None if self.labels is None else [self.labels[i] for i in idx]
        return Predictions(self.task, labels=labels, scores=pick(self.scores), embeddings=pick(self.embeddings))

    @staticmethod
    def concat(parts: Sequence[Predictions]) -> Predictions:
        first = parts[0]
        join = lambda xs: None if xs[0] is None else np.concatenate(xs)  # noqa: E731
        labels = None if first.labels is None else [lab for p in parts for lab in p.labels or ()]
        return Predictions(first.task, labels=labels, scores=join([p.scores for p in parts]),
                           embeddings=join([p.embeddings for p in parts]))

    def to_records(self, label_names: Sequence[str] = ()) -> list[dict[str, Any]]:
        """One JSON-ready dict per input text."""
        if self.task == "classification":
            return [
                {"label": lab, "score": float(s.max()), "scores": dict(zip(label_names, map(float, s), strict=True))}
                for lab, s in zip(self.label_list, self.score_array, strict=True)
            ]
        if self.task == "regression":
            return [{"score": float(s)} for s in self.score_array]
        return [{"embedding": [float(v) for v in e]} for e in self.embedding_array]


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def choose_backend(source: ModelFolder, device: str) -> str:
    """`auto`: the engine on a GPU; on a CPU the backend `--profile auto` picked (or the OpenVINO IR of an
    openvino export), else the ONNX model, else the PyTorch weights."""
    if source.engine_file is not None and device == "cuda":
        return "tensorrt"
    from minilm_deploy.runtime.backends.openvino_runner import openvino_missing

    picked = (source.manifest.get("auto") or {}).get("backend") or ("openvino" if source.openvino_file else None)
    if device == "cpu" and picked and not (picked == "openvino" and openvino_missing() and source.model_file):
        return str(picked)
    return "onnxruntime" if source.model_file is not None else "torch"


def cpu_class_warning(source: ModelFolder) -> str | None:
    """An artifact whose backend was picked on another CPU class: say so, with the command to pick again."""
    from minilm_deploy.hardware import cpu_class

    auto = source.manifest.get("auto") or {}
    here = cpu_class()
    if not auto or auto.get("cpu_class") in (None, here):
        return None
    return (f"{source.path}: its backend ({auto.get('chosen')}) was picked on a {auto['cpu_class']} CPU and this one is "
            f"{here}; the fastest path may differ here: {_export_again(source, 'auto')}")


def saturation_warning(source: ModelFolder, backend: str) -> str | None:
    """An INT8 artifact with 8-bit weights run where INT8 products saturate (hardware.int8_saturates): say so."""
    from minilm_deploy.hardware import cpu_class, int8_saturates

    profile = source.manifest.get("profile") or {}
    int8 = (backend == "onnxruntime" and source.precision == "int8") or (
        backend == "openvino" and (source.manifest.get("openvino") or {}).get("precision") == "int8")
    if not int8 or (profile.get("quantization") or {}).get("reduce_range") is True or not int8_saturates():
        return None
    return (f"{source.path}: its INT8 weights use all 8 bits, which this CPU ({cpu_class()}, no VNNI or AMX) can "
            f"saturate, losing accuracy; export it again on this CPU class (quantization.reduce_range: auto picks "
            f"7-bit weights here): {_export_again(source, profile.get('name', 'onnx-cpu-int8') + ' --int8')}")


def _export_again(source: ModelFolder, profile: str) -> str:
    model = (source.manifest.get("source") or {}).get("path", "MODEL")
    return f"minilm export {model} --profile {profile} --task TASK --overwrite -o {source.path}"


class Predictor:
    def __init__(self, source: ModelFolder, runner: Runner, tokenizer: Any, max_length: int) -> None:
        self.source, self.runner, self.tokenizer, self.max_length = source, runner, tokenizer, max_length

    @classmethod
    def load(
        cls, path: Path | str, backend: str = "auto", device: str = "cpu", threads: int | None = None,
        max_length: int | None = None,
    ) -> Predictor:
        if device not in DEVICES:
            raise InputError(f"device {device!r} is unknown; choose one of: {', '.join(DEVICES)}")
        if backend != "auto" and backend not in BACKENDS:
            raise InputError(f"backend {backend!r} is unknown; choose one of: auto, {', '.join(BACKENDS)}")
        if threads is not None and threads < 0:
            raise InputError(f"threads must be >= 0 (0: the library default), got {threads}")
        source = inspect_model(path)
        if device == "cpu" and (warning := cpu_class_warning(source)):
            warnings.warn(warning, stacklevel=2)
        name = choose_backend(source, device) if backend == "auto" else backend
        if device == "cpu" and (warning := saturation_warning(source, name)):
            warnings.warn(warning, stacklevel=2)
        klass = runner_class(name)
        why = klass.unsupported(source, device)
        if why:
            raise InputError(why)
        limit = source.max_length if max_length is None else min(max_length, source.max_length)
        tokenizer = _load_tokenizer(source.tokenizer_dir)
        runner = klass(source, device=device, threads=threads or None)
        runner.activate()
        return cls(source, runner, tokenizer, limit)

    # -- the pieces, usable alone (the benchmark times `infer` on synthetic feeds) --------------
    @property
    def task(self) -> str:
        return self.source.task

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.source.label_names

    @property
    def info(self) -> dict[str, Any]:
        return {**self.runner.info, "task": self.task, "max_length": self.max_length,
                "precision": self.runner.info.get("precision", self.source.precision), "path": str(self.source.path)}

    def tokenize(self, texts: TextInput, text_pairs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """int64 feeds `{name: (B, T)}`, T = the longest text of the batch, at most `max_length`."""
        first, second = _split_pairs(texts, text_pairs)
        enc = self.tokenizer(first, second, padding="longest", truncation=True, max_length=self.max_length, return_tensors="np")
        return self._feeds({k: np.asarray(v, dtype=np.int64) for k, v in enc.items()})

    def synthetic_feeds(self, batch: int, seq_len: int, seed: int = 0) -> dict[str, np.ndarray]:
        """Random token ids of exactly (batch, seq_len), all attended: the latency grid's input."""
        if seq_len > self.max_length:
            raise InputError(f"sequence length {seq_len} exceeds the model's max_length {self.max_length}")
        vocab = len(self.tokenizer)
        ids = np.random.default_rng(seed).integers(min(1000, vocab // 2), vocab, size=(batch, seq_len), dtype=np.int64)
        return self._feeds({"input_ids": ids, "attention_mask": np.ones_like(ids)})

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.runner.infer(feeds)

    def predict(self, texts: TextInput, text_pairs: Sequence[str] | None = None, chunk_size: int = 0) -> Predictions:
        """Labels and scores, or embeddings, in input order.

        `chunk_size` > 0: run the texts sorted by length in chunks of at most that many, so a short
        text is not padded to the longest of a large batch (on CPU the padding costs more than the
        larger batch saves); the answers are the same up to float rounding.
        """
        if len(texts) == 0:
            raise InputError("no texts to predict; give at least one")
        if chunk_size and len(texts) > chunk_size:
            first, second = _split_pairs(texts, text_pairs)
            size = [len(a) + (len(second[i]) if second else 0) for i, a in enumerate(first)]
            order = np.argsort(size, kind="stable")
            parts = [
                self.predict([first[i] for i in idx], [second[i] for i in idx] if second else None)
                for idx in (order[k : k + chunk_size] for k in range(0, len(order), chunk_size))
            ]
            return Predictions.concat(parts).take(np.argsort(order, kind="stable"))
        feeds = self.tokenize(texts, text_pairs)
        return self.postprocess(self.infer(feeds))

    def postprocess(self, outputs: dict[str, np.ndarray]) -> Predictions:
        if self.task == "embedding":
            return Predictions("embedding", embeddings=outputs["sentence_embedding"].astype(np.float32))
        logits = outputs["logits"].astype(np.float32)  # (B, C)
        if self.task == "regression":
            return Predictions("regression", scores=logits.reshape(len(logits), -1)[:, 0])
        probs = _softmax(logits)
        names = self.label_names or tuple(str(i) for i in range(probs.shape[1]))
        return Predictions("classification", labels=[names[i] for i in probs.argmax(axis=1)], scores=probs)

    def close(self) -> None:
        if self.runner.active:
            self.runner.deactivate()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _feeds(self, enc: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # an artifact's recorded inputs, else what the tokenizer makes for its model (a Hugging Face folder, or a
        # peer's export in one, may take token_type_ids that synthetic feeds do not carry)
        names = self.source.input_names or tuple(dict.fromkeys([*enc, *getattr(self.tokenizer, "model_input_names", ())]))
        ids = enc["input_ids"]
        fill = {"attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        return {n: enc[n] if n in enc else fill[n] for n in names}


def _split_pairs(texts: TextInput, text_pairs: Sequence[str] | None) -> tuple[list[str], list[str] | None]:
    items = list(texts)
    if items and all(isinstance(t, (tuple, list)) and len(t) == 2 for t in items):
        if text_pairs is not None:
            raise InputError("give text pairs either as (text, pair) tuples or as text_pairs, not both")
        pairs = [(str(a), str(b)) for a, b in items]
        return [a for a, _ in pairs], [b for _, b in pairs]
    if not all(isinstance(t, str) for t in items):
        raise InputError("texts must be strings or (text, pair) tuples of strings")
    singles = [str(t) for t in items]
    if text_pairs is not None:
        if len(text_pairs) != len(items):
            raise InputError(f"{len(items)} texts but {len(text_pairs)} text pairs; give one pair per text")
        return singles, [str(p) for p in text_pairs]
    return singles, None


def _load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise MinilmError(f"{folder}: the tokenizer does not load ({type(exc).__name__}); re-export the model") from None
