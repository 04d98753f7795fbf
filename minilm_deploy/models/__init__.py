"""Encoders: loading (`teacher`), the per-architecture attention table (`adapters`), student
construction and initialisation (`student`), vocabulary pruning (`vocab`)."""
