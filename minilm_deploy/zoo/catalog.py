"""Every zoo entry, by name: the models and datasets of DESIGN.md section 3."""

from __future__ import annotations

from minilm_deploy.zoo.datasets import DATASET_ENTRIES
from minilm_deploy.zoo.models import MODEL_ENTRIES
from minilm_deploy.zoo.registry import ZooEntry

CATALOG: dict[str, ZooEntry] = {e.name: e for e in (*MODEL_ENTRIES, *DATASET_ENTRIES)}
