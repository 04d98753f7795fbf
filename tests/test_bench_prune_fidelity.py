"""bench/prune_fidelity.py: the slot assignment of each layer's best heads, the fidelity measures and the LayerNorm
rescaling, on hand-made importances and a tiny MPNet."""

from __future__ import annotations

import pytest
import torch
import transformers

from bench import prune_fidelity
from minilm_deploy.models.prune import Importance


def _importance(heads: list[list[float]]) -> Importance:
    return Importance(embedding_channels=torch.zeros(4), channels=[torch.zeros(4)] * len(heads),
                      heads=[torch.tensor(h) for h in heads], neurons=[torch.zeros(8)] * len(heads))


def test_heads_with_the_same_position_column_share_a_slot_and_the_slots_columns_are_weighted_means() -> None:
    # 4 heads, columns over 3 buckets: heads 0 and 2 alike, heads 1 and 3 alike
    table = torch.tensor([[1.0, -1.0, 1.0, -1.0], [2.0, 0.0, 2.0, 0.0], [0.0, 3.0, 0.0, 3.0]])
    importance = _importance([[5.0, 4.0, 0.1, 0.2], [0.1, 0.2, 3.0, 6.0]])  # layer 0 keeps 0, 1; layer 1 keeps 2, 3
    heads, columns = prune_fidelity.slot_heads(importance, [0, 1], table, torch.ones(3) / 3, start=torch.tensor([1, 0]))
    assert [h.tolist() for h in heads] == [[1, 0], [3, 2]]  # slot 0 starts as head 1's column: heads 1 and 3 there
    torch.testing.assert_close(columns, table[:, [1, 0]])
    assert prune_fidelity.head_share(importance, [0, 1], heads) == pytest.approx(18.0 / 18.6)


def test_a_slot_column_is_the_importance_weighted_mean_of_its_heads_columns() -> None:
    table = torch.tensor([[0.0, 10.0, 4.0, 9.0]])  # one bucket
    importance = _importance([[3.0, 2.0, 0.0, 0.0], [0.0, 0.0, 1.0, 2.0]])  # layer 0 keeps 0, 1; layer 1 keeps 2, 3
    heads, columns = prune_fidelity.slot_heads(importance, [0, 1], table, torch.ones(1), start=torch.tensor([0, 1]))
    assert [h.tolist() for h in heads] == [[0, 1], [2, 3]]  # 4 is nearer 0, 9 nearer 10
    torch.testing.assert_close(columns, torch.tensor([[(3 * 0.0 + 1 * 4.0) / 4, (2 * 10.0 + 2 * 9.0) / 4]]))


def test_a_model_against_itself_has_perfect_fidelity_and_full_width_leaves_its_layernorms_alone() -> None:
    torch.manual_seed(0)
    model = transformers.MPNetModel(transformers.MPNetConfig(
        vocab_size=99, num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).eval()
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, 6:] = 0
    batches = [(torch.randint(5, 99, (3, 10)), mask)]
    scores = prune_fidelity.fidelity(model, model, torch.arange(32), batches)
    assert scores == {"token_cosine": 1.0, "pooled_cosine": 1.0, "relative_error": 0.0}
    before = {name: p.clone() for name, p in model.named_parameters()}
    prune_fidelity.rescale_norms(model, model, torch.arange(32), batches)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p, before[name])
