"""`learner.bf16`: frozen linear layers use bf16 copies of their weights under bf16 autocast only, the LM
head stays float32, and nothing that is saved or published changes (an update's gradient under bf16:
tests/unit/test_learner_step.py)."""

from __future__ import annotations

import torch

from esc.models import tiny_random_model
from learner.bf16 import COPY, train_in_bf16
from learner.lora import add_lora, policy_state

IDS = torch.tensor([[3, 9, 27, 14, 5, 61, 2, 8]])


def lora_model() -> torch.nn.Module:
    model = add_lora(tiny_random_model(64, seed=0), rank=4)
    with torch.no_grad():  # adapters away from their zero start, as after some training
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05, generator=torch.Generator().manual_seed(1))
    return model


def logits(model: torch.nn.Module, autocast: bool) -> torch.Tensor:
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        return model(input_ids=IDS).logits


def test_frozen_layers_get_copies_and_float32_passes_do_not_change():
    model = lora_model()
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    before_published = policy_state(model)
    plain, autocast = logits(model, False), logits(model, True)
    assert train_in_bf16(model) == 14  # 2 layers x (q, k, v, o, gate, up, down): LoRA's frozen bases
    assert train_in_bf16(model) == 14  # again: the same layers, not wrapped twice
    state = model.state_dict()
    assert state.keys() == before_state.keys()  # the copies are in no state dict
    assert all(torch.equal(state[k], v) and state[k].dtype == v.dtype for k, v in before_state.items())
    published = policy_state(model)
    assert all(torch.equal(published[k], v) for k, v in before_published.items())
    assert torch.equal(logits(model, False), plain)  # outside autocast: float32 as before
    under = logits(model, True)
    assert autocast.dtype == torch.bfloat16 and under.dtype == torch.float32
    torch.testing.assert_close(under, plain, atol=0.05, rtol=0.0)
    head, hidden = model.get_output_embeddings(), torch.randn(3, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        in_autocast = head(hidden)
    assert torch.equal(in_autocast, torch.nn.functional.linear(hidden, head.weight))  # float32 products


def test_under_autocast_the_copy_is_what_a_frozen_layer_multiplies_by():
    model = lora_model()
    train_in_bf16(model)
    first = model.get_base_model().model.layers[0].self_attn.q_proj.base_layer
    plain, under = logits(model, False), logits(model, True)
    getattr(first, COPY).zero_()
    assert torch.equal(logits(model, False), plain)  # float32 passes read the float32 weight
    assert not torch.allclose(logits(model, True), under, atol=1e-3)


def test_a_frozen_reference_gets_a_copy_of_every_layer_but_the_head():
    reference = tiny_random_model(64, seed=0).requires_grad_(False)
    assert train_in_bf16(reference) == 14
    head = reference.get_output_embeddings()
    assert not hasattr(head, COPY) and logits(reference, True).dtype == torch.float32
