"""A KV cache layer with room to grow, so a decode step writes its token in place.

transformers' `DynamicLayer` appends each step's keys and values with `torch.cat`, which copies the
whole cache of every layer at every step: at 16 rows and a 420-token context, taking it out made a step
1.3x faster (`docs/benchmarks.md`). A `RoomyLayer` keeps its keys and values as views of buffers
with ROOM spare positions; a step writes into the spare positions and moves the view's end, and only
when the room runs out does it copy into a new, larger buffer (once every ROOM steps).

Anything else that replaces `keys` or `values` (joining rows, cropping to fewer positions) leaves the
layer correct: a write goes in place only while `keys` and `values` are still the views of the buffers,
else the layer first copies into a new buffer, as `torch.cat` would have.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicLayer

ROOM = 64  # spare positions a buffer gets when it grows (16 rows x 64 positions of SmolLM2: 47 MB)


class RoomyLayer(DynamicLayer):
    """A `DynamicLayer` that appends in place while its buffers have room (same keys, values, masks)."""

    _key_room: torch.Tensor | None = None  # [B, heads, capacity, dim]; keys is its [:, :, :length] view
    _value_room: torch.Tensor | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized or self.keys.numel() == 0:
            return super().update(key_states, value_states, *args, **kwargs)
        length, new = self.keys.shape[-2], key_states.shape[-2]
        if not self._has_room(new):
            self._key_room = _with_room(self.keys, length + new + ROOM)
            self._value_room = _with_room(self.values, length + new + ROOM)
        self._key_room[:, :, length : length + new] = key_states
        self._value_room[:, :, length : length + new] = value_states
        self.keys = self._key_room[:, :, : length + new]
        self.values = self._value_room[:, :, : length + new]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep the rows at `indices`, and the room (the buffers are narrowed with them)."""
        if self._has_room(0):
            length = self.keys.shape[-2]
            self._key_room, self._value_room = self._key_room[indices], self._value_room[indices]
            self.keys = self._key_room[:, :, :length]
            self.values = self._value_room[:, :, :length]
        else:
            super().batch_select_indices(indices)

    def _has_room(self, new: int) -> bool:
        """Whether keys and values are still views of the buffers, with room for `new` more positions."""
        return all(
            room is not None
            and view.data_ptr() == room.data_ptr()
            and view.shape[:2] == room.shape[:2]
            and view.stride() == room.stride()
            and view.shape[-2] + new <= room.shape[-2]
            for view, room in ((self.keys, self._key_room), (self.values, self._value_room))
        )


def set_states(layer: Any, keys: torch.Tensor, values: torch.Tensor) -> None:
    """Replace a layer's keys and values, and let go of the buffers a `RoomyLayer` had (they would
    otherwise stay allocated, beside the new tensors, until its next write)."""
    layer.keys, layer.values = keys, values
    if isinstance(layer, RoomyLayer):
        layer._key_room = layer._value_room = None


def _with_room(states: torch.Tensor, capacity: int) -> torch.Tensor:
    """A [B, heads, capacity, dim] buffer whose first positions are a copy of `states`."""
    batch, heads, length, dim = states.shape
    room = states.new_empty((batch, heads, capacity, dim))
    room[:, :, :length] = states
    return room


def give_room(cache: Any) -> Any:
    """Turn the plain `DynamicLayer`s of `cache` into `RoomyLayer`s, in place (their tensors are kept)."""
    for i, layer in enumerate(cache.layers):
        if type(layer) is DynamicLayer:
            roomy = RoomyLayer.__new__(RoomyLayer)
            roomy.__dict__.update(layer.__dict__)
            cache.layers[i] = roomy
    return cache


def appendable(layer: Any) -> bool:
    """Layers holding plain [B, heads, length, dim] keys and values (no sliding window)."""
    return type(layer) in (DynamicLayer, RoomyLayer)
