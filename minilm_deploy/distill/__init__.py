"""MiniLM task-agnostic distillation (`minilm distill`).

- `recipe`: the `distill:` section (student, loss, train, assistants, vocab).
- `losses`: pure functions: relation log-probabilities and KL, in float32, padding-aware.
- `capture`: Q/K/V of one layer through forward hooks on the projections, with early stop.
- `objective`: which relations (MiniLM v1 attention + value, MiniLMv2 Q-Q/K-K/V-V), heads, weights.
- `data`: raw text → fixed-length blocks and a seeded, resumable order.
- `trainer`: the AdamW loop (accumulation, DDP, bf16, NaN stop, metrics); `checkpoint`: atomic,
  pickle-free checkpoints; `distributed`: torchrun facts.
- `pipeline.run_distill(recipe, output=, resume=)`: teacher → [assistants] → student, HF folders.
"""
