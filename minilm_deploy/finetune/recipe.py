"""The `finetune:` section of a recipe (owned by the fine-tuning stage).

```yaml
finetune:
  task: zoo:rotten-tomatoes        # zoo:NAME, a local CSV/TSV/JSONL file or folder, or a hub dataset
  text_column: ""                  # local files: the column names when they are not recognised ones
  pair_column: ""                  #   (text, sentence, review, ... / label, class, target, ...)
  label_column: ""
  models: [teacher, student]       # roles (<run_dir>/student, the recipe's teacher) or model specs
  max_length: 128                  # truncation; batches are padded to their longest example only
  batch_size: 32
  lr: 1.0e-4                        # 5e-5 stayed at chance on a few hundred examples where 1e-4 learns
  warmup: 0.1                      # linear warm-up over this share of the steps (>= 1: this many steps), then linear decay
  weight_decay: 0.01
  epochs: 3                        # or steps: N (> 0 wins over epochs)
  seeds: [1, 2, 3]                 # each seed trains once; metrics.json reports mean ± std
  eval_splits: [test]              # cross-lingual: [test, test-fr, test-nl, test-de]
  freeze_embeddings: false         # true: word embeddings stay fixed (multilingual zero-shot transfer)
  bf16: auto                       # autocast training (and distill's soft targets) to bf16: auto = CUDA with bf16, or a CPU with AMX/AVX512-BF16
  checkpoint_every: 200            # steps between checkpoints in <output>.partial/ (0: only on SIGTERM); --resume continues
  distill:                         # optional task distillation from a fine-tuned teacher
    teacher: ""                    # "" = <run_dir>/teacher-task
    temperature: 2.0
    weight: 0.5
    augment: 0                     # > 0: this many word-swapped copies of each training text, labelled by the
    augment_rate: 0.4              #   teacher only (TinyBERT's augmentation); the share of words swapped
    hidden: 0.0                    # > 0: the weight of hidden-state distillation (TinyBERT's intermediate layers):
    hidden_layers: []              #   the teacher layer matched to each student layer (1-based); [] = the layers
                                   #   the student was copied from (its run.json), else evenly spaced
```
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

ROLES = ("teacher", "student")  # model roles a recipe can name; anything else is a model spec


@dataclass(frozen=True)
class TaskDistillRecipe:
    """Soft targets from a fine-tuned teacher: loss = (1 - weight) * hard + weight * T² · KL(teacher_T ‖ student_T),
    the hard part over the labelled rows of a batch only (augmented copies have soft targets alone); with `hidden`,
    + hidden * the relative error of the student's hidden states against the teacher's (`finetune.hidden`)."""

    teacher: str = ""  # a fine-tuned task model (folder, zoo:NAME, hub id); "" = <run_dir>/teacher-task
    temperature: float = 2.0
    weight: float = 0.5
    augment: int = 0  # word-swapped copies of each training text, soft targets only (`finetune.augment`)
    augment_rate: float = 0.4  # the chance that a swappable word is swapped (TinyBERT's p_t)
    hidden: float = 0.0  # the weight of hidden-state distillation (the teacher runs at every step; same vocabulary)
    hidden_layers: tuple[int, ...] = ()  # the teacher layer (1-based) matched to each student layer; () = derived

    def __post_init__(self) -> None:
        if self.augment < 0:
            raise ValueError(f"distill.augment must be >= 0 (copies of each training text), got {self.augment}")
        if not 0.0 < self.augment_rate <= 1.0:
            raise ValueError(f"distill.augment_rate must be in (0, 1], got {self.augment_rate}")
        if self.temperature <= 0:
            raise ValueError(f"distill.temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"distill.weight must be in [0, 1], got {self.weight}")
        if self.hidden < 0:
            raise ValueError(f"distill.hidden must be >= 0 (the weight of hidden-state distillation), got {self.hidden}")
        if any(b <= a for a, b in zip(self.hidden_layers, self.hidden_layers[1:], strict=False)) or min(self.hidden_layers, default=1) < 1:
            raise ValueError(f"distill.hidden_layers must be increasing teacher layers counted from 1, got {list(self.hidden_layers)}")


@dataclass(frozen=True)
class FinetuneRecipe:
    RENAMED: ClassVar[dict[str, str]] = {"warmup_ratio": "warmup"}  # the old name works for one release
    task: str = "zoo:rotten-tomatoes"
    text_column: str = ""  # "" = detected (text, sentence, review, ...); name it for other files
    pair_column: str = ""  # the second text of a pair task
    label_column: str = ""  # "" = detected (label, class, target, ...)
    models: tuple[str, ...] = ("teacher", "student")  # outputs: <run_dir>/<role>-task
    max_length: int = 128
    batch_size: int = 32
    eval_batch_size: int = 128
    lr: float = 1e-4  # small encoders on small tasks: 5e-5 can stay at chance (issue 18)
    warmup: float = 0.1  # a fraction of the steps (< 1) or a number of steps (>= 1), as in distill.train
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0  # 0 = no clipping
    freeze_embeddings: bool = False  # keep the word embeddings fixed (large multilingual vocabularies: faster,
    #                                  and words unseen in training stay aligned across languages)
    bf16: bool | Literal["auto"] = "auto"  # training and the distillation teacher's forwards under bf16 autocast
    #                                         (the loss in float32; evaluation always in float32)
    checkpoint_every: int = 200  # optimizer steps between checkpoints (0: only when stopped by SIGTERM)
    epochs: int = 3
    steps: int = 0  # > 0: train exactly this many optimizer steps (evaluating at each epoch end and at the last step)
    seeds: tuple[int, ...] = ()  # () = the recipe's top-level seed
    metric: str = ""  # model selection metric on the dev split; "" = the task's own (accuracy, pearson, ...)
    keep_best: bool = True  # restore the epoch with the best dev metric; False = keep the last
    dev_split: str = "dev"
    dev_fraction: float = 0.1  # the task has no dev split: hold out this share of train (seed 0)
    train_limit: int = 0  # > 0: train on a fixed sample (seed 0) of this many examples
    dev_limit: int = 0  # > 0: select on a fixed sample of this many dev examples
    eval_splits: tuple[str, ...] = ("test",)  # evaluated after training (missing ones fail before training)
    distill: TaskDistillRecipe | None = None

    def task_columns(self) -> dict[str, Any]:
        """The column overrides `load_task` takes (only those given)."""
        named = {"text_column": self.text_column, "pair_column": self.pair_column, "label_column": self.label_column}
        return {k: v for k, v in named.items() if v}

    def __post_init__(self) -> None:
        positive = {"max_length": self.max_length, "batch_size": self.batch_size, "eval_batch_size": self.eval_batch_size}
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.max_length < 8:
            raise ValueError(f"max_length must be >= 8 (room for special tokens), got {self.max_length}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0 (a fraction of the steps below 1, else a number of steps), got {self.warmup}")
        if self.epochs < 1 and self.steps < 1:
            raise ValueError("give epochs >= 1 or steps >= 1")
        if min(self.steps, self.train_limit, self.dev_limit, self.checkpoint_every) < 0 or self.weight_decay < 0 or self.max_grad_norm < 0:
            raise ValueError("steps, train_limit, dev_limit, checkpoint_every, weight_decay and max_grad_norm must be >= 0")
        if not 0.0 < self.dev_fraction < 1.0:
            raise ValueError(f"dev_fraction must be in (0, 1), got {self.dev_fraction}")
        if not self.models:
            raise ValueError("models: name at least one model (teacher, student or a model spec)")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {list(self.seeds)}")
