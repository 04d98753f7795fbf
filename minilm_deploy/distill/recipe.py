"""The `distill:` section of a recipe (owned by the distillation stage).

```yaml
distill:
  corpus: zoo:corpus-en          # raw text: zoo:NAME or a local .txt (one document per line), or a mixture:
  #   [{source: zoo:corpus-en, weight: 0.7}, {source: zoo:rotten-tomatoes, weight: 0.3}]  (a task: its training texts)
  student: {layers: 3, hidden: 384, heads: 12, ffn: null, init: random}
  loss: {kind: minilm, teacher_layer: -1, student_layer: -1, relation_heads: null,
         weights: {attention: 1.0, value: 1.0, hidden: 0.0, embedding: 0.0}}
  train: {steps: 300, batch: 32, seq_len: 128, lr: 5.0e-4, warmup: 0.1, ...}
  assistants: []                 # teacher → assistant(s) → student, in one command
  vocab: {prune: false, corpus: null, min_count: 1}
```
Layers are counted like the paper: `1..L`, or negative from the end (`-1` = the last layer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from minilm_deploy.models.student_spec import StudentSpec  # the student's shape: models' own type
from minilm_deploy.training import warmup_steps

LossKind = Literal["minilm", "attention", "minilmv2"]

# Relation parts each loss kind sums (an unweighted sum unless `weights` says otherwise).
LOSS_PARTS: dict[str, tuple[str, ...]] = {
    "minilm": ("attention", "value"),
    "attention": ("attention",),
    "minilmv2": ("query", "key", "value"),
}
# Hidden-state alignment parts (beyond the paper), off unless `weights` gives them a weight:
# hidden = token-level cosine distance of the last hidden states (DistilBERT's L_cos), embedding =
# MSE of the mean-pooled sentence embeddings. Any kind may add them.
ALIGNMENT_PARTS: tuple[str, ...] = ("hidden", "embedding")


@dataclass(frozen=True)
class LossSpec:
    kind: LossKind = "minilm"
    teacher_layer: int = -1  # 1..L, or negative from the end; an upper-middle layer suits large teachers
    student_layer: int = -1
    relation_heads: int | None = None  # re-split heads into N relation heads (MiniLMv2); v1 default: own heads
    # part name → weight: the kind's relation parts default to 1.0, the alignment parts to 0 (off);
    # a weight of 0 turns a part off (not computed)
    weights: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.teacher_layer == 0 or self.student_layer == 0:
            raise ValueError("loss.teacher_layer/student_layer count from 1 (or -1 for the last layer); 0 is not a layer")
        if self.relation_heads is not None and self.relation_heads < 1:
            raise ValueError(f"loss.relation_heads must be positive, got {self.relation_heads}")
        known = (*LOSS_PARTS[self.kind], *ALIGNMENT_PARTS)
        unknown = sorted(set(self.weights) - set(known))
        if unknown:
            raise ValueError(f"loss.weights: unknown part(s) {', '.join(unknown)} for kind {self.kind}; "
                             f"parts: {', '.join(known)}")
        negative = sorted(name for name, value in self.weights.items() if value < 0)
        if negative:
            raise ValueError(f"loss.weights: {', '.join(negative)} must be >= 0 (0 turns a part off)")
        if not self.active_parts():
            raise ValueError(f"loss.weights: every part is 0; give at least one of {', '.join(known)} a positive weight")

    def weight(self, part: str) -> float:
        return float(self.weights.get(part, 1.0 if part in LOSS_PARTS[self.kind] else 0.0))

    def active_parts(self) -> tuple[str, ...]:
        """The parts the loss sums, in order: the kind's relations, then alignment; weight 0 = off."""
        return tuple(p for p in (*LOSS_PARTS[self.kind], *ALIGNMENT_PARTS) if self.weight(p) > 0)


@dataclass(frozen=True)
class TrainSpec:
    RENAMED: ClassVar[dict[str, str]] = {"batch": "batch_size", "seq_len": "max_length", "clip": "max_grad_norm"}  # one release
    steps: int | None = None  # optimizer steps; or give `tokens` (a budget in input tokens)
    tokens: int | None = None
    batch_size: int = 32  # sequences per optimizer step, over all processes and accumulation steps
    max_length: int = 128  # tokens per sequence: the corpus is packed into blocks of this length
    lr: float = 5e-4
    warmup: float = 0.1  # a fraction of the steps (< 1) or a number of steps (>= 1)
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0  # 0 disables clipping
    grad_accum: int = 1
    seed: int | None = None  # default: the recipe's seed
    bf16: bool | Literal["auto"] = "auto"  # autocast to bf16: auto = CUDA with bf16, or a CPU with AMX/AVX512-BF16
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 10

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.tokens is None):
            raise ValueError("train: give exactly one budget, steps or tokens")
        for name in ("batch_size", "max_length", "grad_accum", "checkpoint_every", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be at least 1, got {getattr(self, name)}")
        if (self.steps is not None and self.steps < 0) or (self.tokens is not None and self.tokens < 0):
            raise ValueError("train.steps / train.tokens must be >= 0 (0 writes the initialised student untrained)")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"train.batch_size={self.batch_size} must be a multiple of train.grad_accum={self.grad_accum}")
        if self.max_length < 8:
            raise ValueError(f"train.max_length must be at least 8, got {self.max_length}")
        if self.lr <= 0 or self.warmup < 0 or self.weight_decay < 0 or self.max_grad_norm < 0:
            raise ValueError("train.lr must be positive; warmup, weight_decay and max_grad_norm non-negative")

    def total_steps(self) -> int:
        if self.steps is not None:
            return self.steps
        assert self.tokens is not None
        per_step = self.batch_size * self.max_length
        return -(-self.tokens // per_step)

    def warmup_steps(self) -> int:
        return warmup_steps(self.warmup, self.total_steps())


@dataclass(frozen=True)
class AssistantSpec:
    """A teacher-assistant stage: distilled from the previous teacher, then teaches the next stage."""

    student: StudentSpec
    train: TrainSpec | None = None  # default: the main `train`
    loss: LossSpec | None = None  # default: the main `loss`


@dataclass(frozen=True)
class VocabSpec:
    """Keep only the tokens that occur in a corpus (plus special tokens); shrinks embeddings and tokenizer."""

    prune: bool = False
    corpus: str | None = None  # default: the distillation corpus
    min_count: int = 1
    max_documents: int | None = None

    def __post_init__(self) -> None:
        if self.min_count < 1:
            raise ValueError(f"vocab.min_count must be at least 1, got {self.min_count}")


@dataclass(frozen=True)
class CorpusPart:
    """One source of a corpus mixture; `weight` is its share of the distillation tokens (normalised)."""

    source: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.weight > 0:
            raise ValueError(f"corpus weight of {self.source} must be positive, got {self.weight}")


@dataclass(frozen=True)
class DistillRecipe:
    corpus: str | tuple[CorpusPart, ...] = "zoo:corpus-en"
    student: StudentSpec = field(default_factory=StudentSpec)
    loss: LossSpec = field(default_factory=LossSpec)
    train: TrainSpec = field(default_factory=lambda: TrainSpec(steps=100))
    assistants: tuple[AssistantSpec, ...] = ()
    vocab: VocabSpec = field(default_factory=VocabSpec)
    max_documents: int | None = None  # read at most this many corpus documents per source (after a seeded shuffle)

    def __post_init__(self) -> None:
        if not isinstance(self.corpus, str):
            if not self.corpus:
                raise ValueError("corpus: give a source, or a list of {source, weight}")
            sources = [part.source for part in self.corpus]
            if len(set(sources)) != len(sources):
                raise ValueError(f"corpus: a source is listed twice: {sources}")

    def corpus_parts(self) -> tuple[CorpusPart, ...]:
        return (CorpusPart(self.corpus),) if isinstance(self.corpus, str) else self.corpus
