"""Zoo model entries (filled in by the zoo-models work)."""

from minilm_deploy.zoo.registry import ZooEntry

MODEL_ENTRIES: tuple[ZooEntry, ...] = ()
