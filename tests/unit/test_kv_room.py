"""RoomyLayer against transformers' DynamicLayer: the same keys and values after every operation a
decode batch does (prefill, steps past the room, rows leaving, cropping), with steps written in place."""

import pytest
import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from esc.backends.kv_room import ROOM, RoomyLayer, appendable, give_room, set_states

pytestmark = pytest.mark.unit


def _states(batch: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, length, 8, generator=g), torch.randn(batch, 3, length, 8, generator=g)


def _same(a: DynamicLayer, b: DynamicLayer) -> None:
    assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)


def test_steps_past_the_room_rows_leaving_and_cropping_keep_the_same_keys_and_values():
    plain, roomy = DynamicLayer(), RoomyLayer()
    for layer in (plain, roomy):
        layer.update(*_states(4, 7, seed=0))  # the prefill
    for step in range(2 * ROOM + 5):
        new = _states(len(plain.keys), 1, seed=step + 1)
        out_plain, out_roomy = plain.update(*new), roomy.update(*new)
        assert torch.equal(out_plain[0], out_roomy[0]) and torch.equal(out_plain[1], out_roomy[1])
        if step == ROOM // 2:  # a row leaves while the room is live
            for layer in (plain, roomy):
                layer.batch_select_indices(torch.tensor([0, 2, 3]))
            _same(plain, roomy)
        if step == ROOM + 3:
            for layer in (plain, roomy):
                layer.crop(-2)
            _same(plain, roomy)
    _same(plain, roomy)
    assert roomy.keys.shape == (3, 3, 7 + 2 * ROOM + 5 - 2, 8)


def test_a_step_writes_in_place_until_the_room_runs_out():
    layer = RoomyLayer()
    layer.update(*_states(2, 5, seed=0))
    layer.update(*_states(2, 1, seed=1))  # the first step makes room for ROOM more
    start = layer.keys.data_ptr()
    for step in range(ROOM):
        layer.update(*_states(2, 1, seed=step + 2))
        assert layer.keys.data_ptr() == start
    layer.update(*_states(2, 1, seed=99))  # one past the room: a new buffer
    assert layer.keys.data_ptr() != start and layer.keys.shape[-2] == 5 + 1 + ROOM + 1


def test_keys_replaced_from_outside_are_copied_before_the_next_write():
    plain, roomy = DynamicLayer(), RoomyLayer()
    for layer in (plain, roomy):
        layer.update(*_states(2, 4, seed=0))
        layer.update(*_states(2, 1, seed=1))
    other = _states(1, 5, seed=2)  # a row joins the way DecodeBatch.join stacks caches
    for layer in (plain, roomy):
        layer.keys, layer.values = torch.cat([layer.keys, other[0]]), torch.cat([layer.values, other[1]])
        layer.update(*_states(3, 1, seed=3))
    _same(plain, roomy)


def test_set_states_lets_go_of_the_old_buffers():
    layer = RoomyLayer()
    layer.update(*_states(2, 4, seed=0))
    layer.update(*_states(2, 1, seed=1))
    keys, values = _states(3, 5, seed=2)
    set_states(layer, keys, values)
    assert layer.keys is keys and layer._key_room is None and layer._value_room is None
    layer.update(*_states(3, 1, seed=3))
    assert torch.equal(layer.keys[:, :, :5], keys) and layer.keys.shape[-2] == 6


def test_give_room_turns_plain_layers_of_a_cache_and_keeps_their_tensors():
    cache = DynamicCache()
    cache.update(*_states(2, 4, seed=0), layer_idx=0)
    cache.update(*_states(2, 4, seed=1), layer_idx=1)
    keys = cache.layers[1].keys
    give_room(cache)
    assert all(type(layer) is RoomyLayer and appendable(layer) for layer in cache.layers)
    assert cache.layers[1].keys is keys
