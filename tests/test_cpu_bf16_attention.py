"""bf16 training on a CPU: the attention that backward runs through goes to float32 SDPA (its bf16 CPU
backward is slow); forwards without gradients keep bf16; the model's setting is restored and never saved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel, MPNetConfig, MPNetModel

from minilm_deploy.models.cpu_bf16_attention import NAME, training_attention
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


@pytest.mark.parametrize("dropout", [0.0, 0.1])  # without dropout the CPU runs flash attention, with it the math path
def test_training_autocast_runs_the_differentiated_attention_in_float32(sdpa_calls, dropout: float) -> None:
    model = tiny_bert(dropout=dropout)
    step(model, training_autocast(model, "cpu", True))
    assert [dtype for dtype, _ in sdpa_calls] == [torch.float32] * 2  # one per layer
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.encoder.parameters())
    assert model.config._attn_implementation == "sdpa"  # restored


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


def test_without_bf16_nothing_changes(sdpa_calls) -> None:
    model = tiny_bert()
    step(model, training_autocast(model, "cpu", False))
    assert [dtype for dtype, _ in sdpa_calls] == [torch.float32] * 2
    with training_autocast(model, "cpu", False):
        assert model.config._attn_implementation == "sdpa"


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
