"""LoRA on the policy: only adapters train, and the published (merged) weights behave like the adapted
model when loaded into a plain one."""

import torch

from esc.models import load_model
from esc.weights import load_into, publish
from learner.lora import add_lora, policy_state


def test_merged_weights_reproduce_the_adapted_model(tmp_path):
    model, tokenizer = load_model("tiny-random", seed=0)
    lora = add_lora(model, rank=4)
    trainable = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():  # move the adapters away from their zero start, as training would
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    ids = torch.tensor([tokenizer("I feel lonely lately")["input_ids"]])
    with torch.no_grad():
        adapted = lora(input_ids=ids).logits
    base_before = {k: v.clone() for k, v in lora.get_base_model().state_dict().items() if "lora_" not in k}
    path = publish(policy_state(lora), tmp_path, version=1)
    for name, weight in lora.get_base_model().state_dict().items():
        if name in base_before:  # publishing never writes the base weights (they are shared file pages)
            assert torch.equal(weight, base_before[name]), name
    plain, _ = load_model("tiny-random", seed=1)  # other random weights: everything must come from the file
    load_into(plain, path)
    with torch.no_grad():
        torch.testing.assert_close(plain(input_ids=ids).logits, adapted, atol=1e-4, rtol=1e-4)
        # the training model stays unmerged: its adapters still train
        torch.testing.assert_close(lora(input_ids=ids).logits, adapted)
