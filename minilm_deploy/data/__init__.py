"""Data: raw-text corpora for distillation, labelled tasks with splits, and metrics."""
