"""The oneDNN output layer (esc/backends/onednn_head.py) on a stand-in model with a tied output layer."""

import pytest
import torch

from esc.backends.onednn_head import ONEDNN_ROWS, OneDNNHead, can_use, use_onednn_head

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")


class Tied(torch.nn.Module):
    """Embeddings and an output layer sharing one weight, with transformers' accessors."""

    def __init__(self, vocab=300, width=24):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(vocab, width)
        self.head = torch.nn.Linear(width, vocab, bias=False)
        self.head.weight = self.embed.weight

    def get_output_embeddings(self):
        return self.head

    def set_output_embeddings(self, head):
        self.head = head


def test_it_holds_the_model_own_weight_and_keeps_the_state_dict_and_the_tie():
    model = Tied()
    keys = list(model.state_dict())
    assert use_onednn_head(model)
    assert isinstance(model.head, OneDNNHead)
    assert model.head.weight is model.embed.weight
    assert list(model.state_dict()) == keys
    assert not use_onednn_head(model)  # once is enough


@pytest.mark.parametrize("rows", [1, 3, 4, 8, 32, 33, 64])
def test_every_row_count_gives_what_f_linear_gives(rows, monkeypatch):
    model = Tied()
    use_onednn_head(model)
    calls = []
    onednn = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", lambda *a: calls.append(1) or onednn(*a))
    x = torch.randn(rows, 24)
    with torch.inference_mode():
        got = model.head(x)
    assert got.shape == (rows, 300)
    assert torch.allclose(got, x @ model.embed.weight.T, atol=1e-5)
    assert bool(calls) == (rows in ONEDNN_ROWS)


def test_a_three_dimensional_input_keeps_its_shape_and_follows_the_weight():
    model = Tied()
    use_onednn_head(model)
    x = torch.randn(2, 3, 24)  # 6 rows: oneDNN
    with torch.inference_mode():
        assert model.head(x).shape == (2, 3, 300)
        model.embed.weight.mul_(2.0)  # a version swap writes the weight in place
        assert torch.allclose(model.head(x), x @ model.embed.weight.T, atol=1e-5)
        last = torch.randn(8, 5, 24)[:, -1:, :]  # the last position of a prefill: a strided view
        assert torch.allclose(model.head(last), last @ model.embed.weight.T, atol=1e-5)


def test_with_gradients_on_it_is_plain_and_differentiable():
    model = Tied()
    use_onednn_head(model)
    x = torch.randn(8, 24, requires_grad=True)
    model.head(x).sum().backward()
    assert x.grad is not None and model.embed.weight.grad is not None


def test_other_dtypes_or_a_bias_are_left_alone():
    assert not can_use(Tied().to(torch.bfloat16))
    biased = Tied()
    biased.head = torch.nn.Linear(24, 300)
    assert not can_use(biased)
    model = Tied().to(torch.bfloat16)
    assert not use_onednn_head(model) and type(model.head) is torch.nn.Linear
