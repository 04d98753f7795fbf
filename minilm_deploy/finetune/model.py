"""Loading encoders with a task head, and fine-tuned task models, as standard Hugging Face models.

Any encoder folder works (a distilled student, the teacher, a hub model): the head is the
architecture's own `...ForSequenceClassification`, so `AutoModelForSequenceClassification`
loads the output with `id2label` set. Loading checks that the tokenizer fits the model's
vocabulary (a pruned student with an unpruned tokenizer would index past the embedding); every load goes
through `models/loading.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from minilm_deploy.errors import InputError
from minilm_deploy.models.loading import check_vocabulary, load_config, load_tokenizer, load_weights, quiet_transformers

TASK_ARCH_SUFFIX = "ForSequenceClassification"


@dataclass(frozen=True)
class TaskHead:
    """What the classifier predicts: class names in id order (empty for regression)."""

    kind: str  # "classification" | "regression"
    label_names: tuple[str, ...]

    @property
    def num_labels(self) -> int:
        return len(self.label_names) if self.kind == "classification" else 1

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}


def load_for_training(folder: Path, head: TaskHead):
    """(model, tokenizer): the encoder in `folder` with a fresh head for `head` (kept if it already fits)."""
    from transformers import AutoModelForSequenceClassification

    config = load_config(folder)
    tokenizer = load_tokenizer(folder)
    check_vocabulary(folder, tokenizer, config)
    same_head = config.num_labels == head.num_labels and list(config.id2label.values()) == list(head.label_names)
    config.num_labels = head.num_labels
    config.id2label = dict(enumerate(head.label_names)) if head.kind == "classification" else {0: "score"}
    config.label2id = {v: k for k, v in config.id2label.items()}
    config.problem_type = "single_label_classification" if head.kind == "classification" else "regression"
    if type(config) not in AutoModelForSequenceClassification._model_mapping:
        raise InputError(f"{folder}: {config.model_type} has no sequence-classification head in transformers")
    model = load_weights(AutoModelForSequenceClassification, folder, config=config, ignore_mismatched_sizes=not same_head)
    return model, tokenizer


def task_model_config(folder: Path):
    """The config of a fine-tuned task model, or a one-line error for a bare encoder."""
    config = load_config(folder)
    archs = getattr(config, "architectures", None) or []
    if not any(a.endswith(TASK_ARCH_SUFFIX) for a in archs):
        raise InputError(f"{folder}: not a fine-tuned task model (architectures: {archs or 'none'}); run `minilm finetune` on it first")
    return config


def load_task_model(folder: Path):
    """(model, tokenizer, head) for a fine-tuned task model (what `minilm finetune` writes)."""
    from transformers import AutoModelForSequenceClassification

    config = task_model_config(folder)
    tokenizer = load_tokenizer(folder)
    check_vocabulary(folder, tokenizer, config)
    regression = config.problem_type == "regression" or config.num_labels == 1
    names = () if regression else tuple(config.id2label[i] for i in range(config.num_labels))
    model = load_weights(AutoModelForSequenceClassification, folder)
    return model.eval(), tokenizer, TaskHead("regression" if regression else "classification", names)


def save_model(model, tokenizer, folder: Path) -> None:
    with quiet_transformers():
        model.save_pretrained(str(folder), safe_serialization=True)
        tokenizer.save_pretrained(str(folder))


def state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the weights (to restore the best epoch)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
