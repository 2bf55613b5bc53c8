"""The prefix cache's bookkeeping, on a stand-in for a transformers KV cache (a list of token ids)."""

import torch

from esc.backends.prefix_cache import PrefixCache, shared_length, weights_fingerprint


class FakeKV:
    """Records which tokens it holds; `crop(-n)` drops the last n, like DynamicCache.crop."""

    def __init__(self, tokens):
        self.tokens = list(tokens)

    def crop(self, n):
        assert n < 0, "transformers 5 crops by a negative count of tokens to remove"
        self.tokens = self.tokens[:n]


def test_shared_length():
    assert shared_length([1, 2, 3], [1, 2, 4, 5]) == 2
    assert shared_length((1, 2), (1, 2)) == 2
    assert shared_length([7], [1]) == 0
    assert shared_length([], [1, 2]) == 0


def test_closest_entry_is_copied_and_cropped_to_what_is_shared():
    cache = PrefixCache(max_tokens=100, min_tokens=3)
    stored = FakeKV(range(10))
    cache.put(tuple(range(10)), stored)
    kv, n = cache.closest(tuple(range(6)) + (99, 98))
    assert n == 6 and kv.tokens == list(range(6))
    assert cache.entries[tuple(range(10))].tokens == list(range(10))  # the entry itself is untouched
    assert stored.tokens == list(range(10))  # nor is the object that was put
    assert cache.reused_tokens == 6


def test_the_longest_match_wins_and_short_matches_are_ignored():
    cache = PrefixCache(max_tokens=100, min_tokens=4)
    cache.put((1, 2, 3, 4, 5), FakeKV([1, 2, 3, 4, 5]))
    cache.put((1, 2, 3, 4, 5, 6, 7, 8), FakeKV([1, 2, 3, 4, 5, 6, 7, 8]))
    kv, n = cache.closest((1, 2, 3, 4, 5, 6, 7, 0))
    assert (n, kv.tokens) == (7, [1, 2, 3, 4, 5, 6, 7])
    assert cache.closest((1, 2, 3, 9)) == (None, 0)  # 3 shared tokens < min_tokens
    assert cache.closest((5, 5)) == (None, 0)


def test_oldest_entries_go_first_beyond_the_token_budget():
    cache = PrefixCache(max_tokens=10, min_tokens=1)
    cache.put((1, 1, 1, 1), FakeKV([1] * 4))
    cache.put((2, 2, 2, 2), FakeKV([2] * 4))
    cache.closest((1, 1, 1, 1))  # using an entry makes it the newest
    cache.put((3, 3, 3, 3), FakeKV([3] * 4))
    assert list(cache.entries) == [(1, 1, 1, 1), (3, 3, 3, 3)]
    cache.put(tuple(range(11)), FakeKV(range(11)))  # larger than the whole budget: not kept
    assert tuple(range(11)) not in cache.entries


def test_a_weight_change_empties_the_cache():
    model = torch.nn.Linear(2, 2)
    cache = PrefixCache(min_tokens=1)
    cache.check_weights(model)
    cache.put((1, 2), FakeKV([1, 2]))
    cache.check_weights(model)
    assert len(cache.entries) == 1  # same weights: kept
    before = weights_fingerprint(model)
    with torch.no_grad():
        model.bias.add_(0.0)  # any in-place write counts, even one that leaves the values equal
    assert weights_fingerprint(model) != before
    cache.check_weights(model)
    assert not cache.entries
