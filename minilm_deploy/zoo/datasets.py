"""Zoo dataset and corpus entries (filled in by the datasets work)."""

from minilm_deploy.zoo.registry import ZooEntry

DATASET_ENTRIES: tuple[ZooEntry, ...] = ()
