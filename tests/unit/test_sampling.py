"""The batched sampler: greedy rows, the nucleus, the sampled frequencies, and per-row seeds."""

import math

import pytest
import torch

from esc.backends import sampling
from esc.backends.base import SamplingParams
from esc.backends.sampling import nucleus_order, sample_tokens, uniform_draws

PROBS = [0.5, 0.3, 0.15, 0.05]
LOGITS = torch.tensor([[math.log(p) for p in PROBS]])


def _draw_many(params: SamplingParams, n: int = 4000) -> list[int]:
    generator = torch.Generator().manual_seed(0)
    logits = LOGITS.expand(n, -1)
    draws = torch.rand(n, generator=generator)
    return sample_tokens(logits, [params] * n, draws).tolist()


def test_temperature_zero_takes_the_argmax_whatever_the_draw():
    logits = torch.tensor([[0.1, 2.0, 0.3], [5.0, 1.0, 0.0]])
    greedy = SamplingParams(temperature=0.0)
    for draw in (0.0, 0.5, 0.999):
        assert sample_tokens(logits, [greedy] * 2, torch.tensor([draw, draw])).tolist() == [1, 0]


def test_sampled_frequencies_follow_the_softmax():
    tokens = _draw_many(SamplingParams(temperature=1.0, top_p=1.0))
    for token, p in enumerate(PROBS):
        assert tokens.count(token) / len(tokens) == pytest.approx(p, abs=0.03)


def test_top_p_keeps_only_the_nucleus_renormalised():
    tokens = _draw_many(SamplingParams(temperature=1.0, top_p=0.7))  # 0.5 + 0.3 reach 0.7: tokens 0 and 1
    assert set(tokens) == {0, 1}
    assert tokens.count(0) / len(tokens) == pytest.approx(0.5 / 0.8, abs=0.03)


def test_a_low_temperature_sharpens_towards_the_top_token():
    tokens = _draw_many(SamplingParams(temperature=0.25, top_p=1.0))
    assert tokens.count(0) / len(tokens) > 0.85


def test_rows_mix_params_and_the_draw_edges_stay_in_the_vocabulary():
    params = [SamplingParams(temperature=0.0), SamplingParams(temperature=1.0, top_p=0.5)]
    logits = LOGITS.expand(2, -1)
    assert sample_tokens(logits, params, torch.tensor([0.9999999, 0.9999999])).tolist() == [0, 0]
    assert sample_tokens(LOGITS, params[1:], torch.tensor([0.0])).tolist() == [0]
    top = SamplingParams(temperature=1.0, top_p=1.0)
    assert sample_tokens(LOGITS, [top], torch.tensor([0.9999999])).tolist() == [3]


def test_a_seeded_row_draws_the_same_number_whatever_its_neighbours():
    alone = uniform_draws([torch.Generator().manual_seed(7)])
    mixed = uniform_draws([None, torch.Generator().manual_seed(7), torch.Generator().manual_seed(1)])
    assert mixed[1] == alone[0] and mixed[2] != alone[0]


def test_the_nucleus_is_found_among_the_top_k_when_it_fits_and_by_a_full_sort_when_not():
    probs = torch.tensor([[0.05, 0.6, 0.1, 0.2, 0.05], [0.2, 0.2, 0.2, 0.2, 0.2]])
    top_p = torch.tensor([[0.7], [0.7]])
    # row 0's two largest (0.6 + 0.2) reach 0.7, but row 1's (0.4) do not: its whole vocabulary, sorted,
    # and row 0's two, padded with probability 0
    head, order = nucleus_order(probs, top_p, widths=(2,))
    assert head.shape == (2, 5) and order[0, :2].tolist() == [1, 3]
    assert head[0].tolist() == pytest.approx([0.6, 0.2, 0, 0, 0])
    assert sorted(order[1].tolist()) == [0, 1, 2, 3, 4]
    head, order = nucleus_order(probs[:1], top_p[:1], widths=(2,))
    assert head[0].tolist() == pytest.approx([0.6, 0.2]) and order.tolist() == [[1, 3]]
    # a second width of 4 holds row 1's nucleus (four of 0.2 reach 0.7): no sort, row 0 padded to 4
    head, order = nucleus_order(probs, top_p, widths=(2, 4))
    assert head.shape == (2, 4) and head[0].tolist() == pytest.approx([0.6, 0.2, 0, 0])
    assert head[1].tolist() == pytest.approx([0.2] * 4)


def test_a_flat_row_is_sorted_alone_and_the_draws_are_those_of_a_full_sort(monkeypatch):
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 3000, generator=generator) * 4
    logits[2] = torch.randn(3000, generator=generator) * 0.1  # flat: its nucleus needs most of the vocabulary
    params = [SamplingParams(temperature=0.7, top_p=0.95) for _ in range(4)]
    draws = torch.tensor([0.3, 0.9, 0.999999, 0.5])
    sorted_rows, sort = [], torch.sort
    monkeypatch.setattr(sampling.torch, "sort", lambda x, **kw: sorted_rows.append(len(x)) or sort(x, **kw))
    monkeypatch.setattr(sampling, "NUCLEUS_K", (64, 512))
    staged = sample_tokens(logits, params, draws)
    assert sorted_rows == [1]  # only the flat row
    monkeypatch.setattr(sampling, "NUCLEUS_K", ())
    assert staged.tolist() == sample_tokens(logits, params, draws).tolist()
    for row in range(4):  # each token is where its draw falls in its row's own nucleus
        one = sample_tokens(logits[row : row + 1], params[row : row + 1], draws[row : row + 1])
        assert one.item() == staged[row].item()


def test_sampling_through_the_top_k_draws_exactly_what_a_full_sort_draws(monkeypatch):
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 5000, generator=generator) * 4
    params = [SamplingParams(temperature=0.7, top_p=p) for p in (0.5, 0.9, 0.95, 0.99, 0.8, 1.0)]
    draws = torch.rand(6, generator=generator)
    calls, sort = [], torch.sort
    monkeypatch.setattr(sampling.torch, "sort", lambda *a, **kw: calls.append(1) or sort(*a, **kw))
    monkeypatch.setattr(sampling, "NUCLEUS_K", (1024,))
    nucleus_rows = sample_tokens(logits[:5], params[:5], draws[:5])  # every nucleus within 1024
    assert not calls
    monkeypatch.setattr(sampling, "NUCLEUS_K", ())  # every row through the full sort
    full = sample_tokens(logits, params, draws)
    assert calls and nucleus_rows.tolist() == full[:5].tolist()


@pytest.mark.parametrize("top_p", [0.9, 1.0])  # 1.0: every place is kept, the padding's too
def test_a_draw_at_the_very_top_takes_the_nucleus_s_last_token_never_the_padding(monkeypatch, top_p):
    logits = torch.tensor([[-200.0, 9.0, 8.0, -200.0, -200.0, -200.0], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    params = [SamplingParams(temperature=1.0, top_p=top_p), SamplingParams(temperature=1.0, top_p=0.9)]
    monkeypatch.setattr(sampling, "NUCLEUS_K", (2,))  # row 0 found among its 2 largest, row 1 sorted
    head, order = nucleus_order(torch.softmax(logits, -1), torch.tensor([[top_p], [0.9]]), (2,))
    assert head.shape == (2, 6) and order[0, 2:].tolist() == [0] * 4  # row 0 padded
    picked = sample_tokens(logits, params, torch.tensor([1.0, 0.0]))  # 1.0: the total itself
    assert picked[0].item() == 2  # the second of row 0's nucleus {1, 2}, not the padding's id 0
