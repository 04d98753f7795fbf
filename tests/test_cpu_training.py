"""Training on a CPU (`models.cpu_training`): under bf16 the attention that backward runs through goes to float32
SDPA (its bf16 CPU backward is slow); dropout, in the modules and on the attention probabilities, draws its mask 16
bits an element; forwards without gradients keep their kernels; the model's settings are restored and never saved."""

from __future__ import annotations

import contextlib
import copy
import json
import math
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel, MPNetConfig, MPNetModel

from minilm_deploy.models import cpu_training
from minilm_deploy.models.cpu_training import (
    NAME,
    FastDropout,
    dropout_attention,
    fast_dropout,
    fast_dropouts,
    keep_mask,
    training_attention,
)
from minilm_deploy.training import training_autocast


def tiny_bert(attn: str = "sdpa", dropout: float = 0.0) -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                        max_position_embeddings=32, attn_implementation=attn, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout)
    return BertModel(config).train()


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1, 50, (3, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0  # padding, so the mask reaches the kernel
    return ids, mask


def step(model: BertModel, context) -> torch.Tensor:
    ids, mask = batch()
    with context:
        out = model(input_ids=ids, attention_mask=mask).last_hidden_state
    (out.float() * torch.linspace(-1.0, 1.0, out.shape[-1])).sum().backward()  # not invariant to the layer norm
    return out


def test_plain_autocast_runs_the_attention_in_bf16(sdpa_calls) -> None:
    """Why the module exists: without it, the student's SDPA (and so its slow backward) runs in bf16."""
    step(tiny_bert(), torch.autocast("cpu", dtype=torch.bfloat16))
    assert [dtype for dtype, _ in sdpa_calls] == [torch.bfloat16] * 2


def test_training_autocast_runs_the_differentiated_attention_in_float32(sdpa_calls) -> None:
    model = tiny_bert()  # without dropout: SDPA (flash attention on a CPU), in float32
    step(model, training_autocast(model, "cpu", True))
    assert [dtype for dtype, _ in sdpa_calls] == [torch.float32] * 2  # one per layer
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.encoder.parameters())
    assert model.config._attn_implementation == "sdpa"  # restored


@pytest.mark.parametrize("bf16", [True, False])
def test_with_attention_dropout_the_attention_runs_explicitly_with_the_fast_dropout(
        sdpa_calls, dropout_attention_calls, monkeypatch: pytest.MonkeyPatch, bf16: bool) -> None:
    """No torch dropout kernel runs in a CPU training step (SDPA would take its math path and draw serially)."""
    torch_dropouts: list[float] = []
    real = torch.nn.functional.dropout
    monkeypatch.setattr(torch.nn.functional, "dropout", lambda x, p=0.5, *a, **k: torch_dropouts.append(p) or real(x, p, *a, **k))
    model = tiny_bert(dropout=0.1)
    step(model, training_autocast(model, "cpu", bf16))
    assert sdpa_calls == [] and torch_dropouts == []
    assert dropout_attention_calls == [(torch.bfloat16 if bf16 else torch.float32, 0.1)] * 2
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.encoder.parameters())
    assert model.config._attn_implementation == "sdpa"
    assert {type(m) for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {torch.nn.Dropout}  # restored
    step(model, contextlib.nullcontext())  # outside the block: torch's own dropout again
    assert len(torch_dropouts) == 2 * 2 + 1 and len(sdpa_calls) == 2  # 2 dropout modules a layer + the embeddings'


def test_without_gradients_the_bf16_kernel_is_kept(sdpa_calls) -> None:
    model = tiny_bert()
    ids, mask = batch()
    with torch.no_grad(), training_autocast(model, "cpu", True):
        model(input_ids=ids, attention_mask=mask)
    assert [dtype for dtype, _ in sdpa_calls] == [torch.bfloat16] * 2


def test_the_results_match_float32_training_within_bf16_error() -> None:
    reference, fast = tiny_bert(), tiny_bert()
    ref_out = step(reference, training_autocast(reference, "cpu", False))
    out = step(fast, training_autocast(fast, "cpu", True))
    assert torch.allclose(out.float(), ref_out, atol=0.1)
    for (name, p), q in zip(reference.named_parameters(), fast.parameters(), strict=True):
        if p.grad is None or p.grad.norm() < 1e-6:  # the unused pooler; the key bias, which softmax ignores
            continue
        cosine = torch.nn.functional.cosine_similarity(p.grad.flatten(), q.grad.flatten(), dim=0)
        assert cosine > 0.98, name


def test_without_bf16_and_dropout_the_attention_is_torch_sdpa_in_float32(sdpa_calls) -> None:
    model = tiny_bert()
    step(model, training_autocast(model, "cpu", False))
    assert [dtype for dtype, _ in sdpa_calls] == [torch.float32] * 2


def test_on_another_device_nothing_is_switched() -> None:
    model = tiny_bert(dropout=0.1)
    with cpu_training.training_kernels(model, "cuda"):
        assert model.config._attn_implementation == "sdpa"
        assert not any(isinstance(m, FastDropout) for m in model.modules())


def test_a_model_with_another_attention_is_left_alone() -> None:
    model = tiny_bert("eager")
    with training_attention(model):
        assert model.config._attn_implementation == "eager"
    mpnet = MPNetModel(MPNetConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                   intermediate_size=64))  # its own attention (relative positions), eager masks
    with training_attention(mpnet):
        assert mpnet.config._attn_implementation == "eager"
    with training_attention(torch.nn.Linear(2, 2)):  # not a transformers model: nothing to switch
        pass


def test_the_setting_is_restored_after_an_error_and_never_saved(tmp_path: Path) -> None:
    model = tiny_bert()
    with pytest.raises(RuntimeError), training_attention(model):
        assert model.config._attn_implementation == NAME
        model.save_pretrained(tmp_path)  # a checkpoint written while training
        raise RuntimeError("interrupted")
    assert model.config._attn_implementation == "sdpa"
    assert NAME not in json.dumps(json.loads((tmp_path / "config.json").read_text()))
    assert BertModel.from_pretrained(tmp_path).config._attn_implementation == "sdpa"


def test_dropout_modules_are_swapped_back_after_an_error_and_copies_keep_working() -> None:
    model = tiny_bert(dropout=0.1)
    with pytest.raises(RuntimeError), fast_dropouts(model):
        assert model.embeddings.dropout.__class__ is FastDropout
        copied = copy.deepcopy(model)  # e.g. an averaged copy made while training
        raise RuntimeError("interrupted")
    assert model.embeddings.dropout.__class__ is torch.nn.Dropout
    assert copied.embeddings.dropout(torch.ones(1000)).eq(0).any()  # a copy made inside still drops
    assert model.embeddings.dropout.p == 0.1 and model.state_dict().keys() == copied.state_dict().keys()


# --- the dropout itself ---------------------------------------------------------------------------------------------

def binomial_sigmas(kept: int, n: int, p_keep: float) -> float:
    return abs(kept - n * p_keep) / math.sqrt(n * p_keep * (1 - p_keep))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_mask_keeps_each_element_with_probability_one_minus_p(p: float) -> None:
    torch.manual_seed(0)
    keep = keep_mask((257, 4099), p)  # an odd size: the last 64-bit draw is used in part
    assert keep.dtype == torch.bool and keep.shape == (257, 4099)
    assert binomial_sigmas(int(keep.sum()), keep.numel(), 1 - p) < 5
    lanes = keep.flatten()[: keep.numel() // 4 * 4].view(-1, 4)  # the four 16-bit parts of each 64-bit draw
    for lane in lanes.unbind(1):  # each part is uniform: torch's default int64 `random_` never sets the top bit
        assert binomial_sigmas(int(lane.sum()), lane.numel(), 1 - p) < 5


def test_keep_mask_resolution_is_one_in_65536() -> None:
    assert bool(keep_mask((10_000,), 0.0).all())
    torch.manual_seed(1)
    keep = keep_mask((4_000_000,), 2**-16)  # drops one element in 65536: about 61 here
    assert 20 < int((~keep).sum()) < 120


def test_fast_dropout_zeroes_and_scales_like_torch_dropout_and_its_gradient_matches() -> None:
    torch.manual_seed(2)
    x = torch.randn(64, 300, requires_grad=True)
    torch.manual_seed(3)
    y = fast_dropout(x, 0.25)
    torch.manual_seed(3)
    keep = keep_mask(x.shape, 0.25)  # the same draws
    assert torch.equal(y, torch.where(keep, x * (1 / 0.75), 0.0))  # as torch's dropout scales
    weights = torch.randn_like(x)
    (y * weights).sum().backward()
    assert torch.equal(x.grad, torch.where(keep, weights * (1 / 0.75), 0.0))
    assert binomial_sigmas(int(keep.sum()), keep.numel(), 0.75) < 5


def test_fast_dropout_is_repeatable_under_a_seed_and_new_at_every_call() -> None:
    x = torch.ones(10_000, dtype=torch.bfloat16)
    torch.manual_seed(4)
    first, second = fast_dropout(x, 0.1), fast_dropout(x, 0.1)
    torch.manual_seed(4)
    assert torch.equal(fast_dropout(x, 0.1), first) and not torch.equal(first, second)
    assert first.dtype == torch.bfloat16 and first.unique().tolist() == [0.0, torch.tensor(1 / 0.9, dtype=torch.bfloat16).item()]


def test_fast_dropout_edge_cases() -> None:
    x = torch.randn(100, requires_grad=True)
    assert fast_dropout(x, 0.1, training=False) is x and fast_dropout(x, 0.0) is x
    assert torch.equal(fast_dropout(x, 1.0), torch.zeros(100))  # torch's semantics, gradient included
    fast_dropout(x, 1.0).sum().backward()
    assert torch.equal(x.grad, torch.zeros(100))


@pytest.mark.parametrize("mask_kind", ["none", "bool", "additive"])
def test_dropout_attention_without_dropout_is_sdpa_and_with_it_applies_the_mask_to_the_probabilities(mask_kind: str) -> None:
    torch.manual_seed(5)
    q, k, v = (torch.randn(2, 3, 7, 4, requires_grad=True) for _ in range(3))
    attend = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    attend[0, ..., 5:] = False  # padding
    mask = {"none": None, "bool": attend, "additive": torch.where(attend, 0.0, -1e9)}[mask_kind]
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3)
    got = dropout_attention(q, k, v, mask, 0.0, 0.3)
    assert got.shape == (2, 7, 3, 4) and torch.allclose(got.transpose(1, 2), expected, atol=1e-5)
    grads = torch.autograd.grad(got.transpose(1, 2).pow(2).sum(), (q, k, v))
    for g, e in zip(grads, torch.autograd.grad(expected.pow(2).sum(), (q, k, v)), strict=True):
        assert torch.allclose(g, e, atol=1e-4)

    torch.manual_seed(6)
    dropped = dropout_attention(q, k, v, mask, 0.2, 0.3)
    torch.manual_seed(6)
    keep = keep_mask((2, 3, 7, 7), 0.2)
    scores = (q @ k.transpose(-1, -2)) * 0.3
    if mask is not None:
        scores = scores.masked_fill(~attend, -torch.inf) if mask.dtype == torch.bool else scores + mask
    by_hand = (torch.softmax(scores, -1) * keep / 0.8) @ v
    assert torch.allclose(dropped.transpose(1, 2), by_hand, atol=1e-5)


def test_dropout_attention_multiplies_in_the_inputs_dtype_and_normalises_in_float32() -> None:
    torch.manual_seed(7)
    q, k, v = (torch.randn(2, 3, 9, 8, dtype=torch.bfloat16) for _ in range(3))
    attend = torch.ones(2, 1, 1, 9, dtype=torch.bool)
    attend[1, ..., 6:] = False
    torch.manual_seed(8)
    got = dropout_attention(q, k, v, attend, 0.1, 0.5)
    torch.manual_seed(8)
    keep = keep_mask((2, 3, 9, 9), 0.1)
    scores = ((q @ k.transpose(-1, -2)).float() * 0.5).masked_fill(~attend, torch.finfo(torch.float32).min)
    by_hand = (torch.softmax(scores, -1) * keep.float() * (1 / 0.9)).to(torch.bfloat16) @ v  # bf16 products
    assert got.dtype == torch.bfloat16 and torch.equal(got.transpose(1, 2), by_hand)
    mixed = dropout_attention(q.float(), k, v, attend, 0.0, 0.5)  # inputs of two dtypes: the query's products
    assert mixed.dtype == torch.float32 and mixed.isfinite().all()
