"""Reusing the key/value cache of the fixed prompt prefix across selections.

The prefix (task rules and manual text, hundreds of tokens) is the same for
every selection of a game, so it is run once and its keys and values are kept;
each selection then runs only its suffix (query, options, answer cue).

Why the stored prefix is never mutated: ``expanded_cache`` builds a fresh
``DynamicCache`` from the stored tensors, and ``DynamicLayer.update`` grows a
layer with ``torch.cat``, which allocates new tensors instead of writing into
the stored ones. ``tests/test_models.py`` checks this.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch
    from transformers import DynamicCache, PretrainedConfig

PrefixLayers = list  # [(keys, values)] per layer, each [1, kv_heads, prefix_len, head_dim]


class KVLayer(Protocol):
    """A layer of a transformers ``Cache`` as read here: its keys and values."""
    keys: torch.Tensor
    values: torch.Tensor


class KVCache(Protocol):
    """A transformers ``Cache`` as read here (a model's output cache): its layers."""
    @property
    def layers(self) -> list[KVLayer]: ...


class _LayerWrapper(Protocol):
    """What makes a layer with room for more tokens (``_RoomyLayer``)."""
    def around(self, layer: KVLayer, extra: int) -> KVLayer: ...


def cache_layers(cache: KVCache) -> PrefixLayers:
    """The (keys, values) tensors of every layer of a transformers ``Cache``."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def expanded_cache(layers: PrefixLayers, batch: int, config: PretrainedConfig) -> DynamicCache:
    """A new ``DynamicCache`` holding the prefix once per batch row.

    ``expand`` is a view; the copy happens in the cache's first ``torch.cat``,
    so the stored prefix tensors stay as they were (and keep their autograd
    graph when training through the prefix).
    """
    from transformers import DynamicCache

    data = [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in layers]
    return DynamicCache(ddp_cache_data=data, config=config)


def with_room(cache: KVCache, extra: int) -> KVCache:
    """Give every layer of a ``DynamicCache`` room for ``extra`` more tokens.

    A ``DynamicLayer`` grows by ``torch.cat``, which copies the whole cache for
    every generated token; at a batch of 16 on a CPU those copies were most of
    a decoding step. The layers become ``_RoomyLayer``s that write new tokens
    into a buffer allocated once and return views of it.
    """
    cache.layers[:] = [_RoomyLayer.around(layer, extra) for layer in cache.layers]
    return cache


def _roomy_layer_class() -> _LayerWrapper:
    from transformers.cache_utils import DynamicLayer

    class RoomyLayer(DynamicLayer):
        dtype: torch.dtype  # where the layer's tensors live (DynamicLayer sets them on its first update)
        device: torch.device
        keys: torch.Tensor
        values: torch.Tensor
        _k: torch.Tensor    # the key and value buffers, with room for more tokens
        _v: torch.Tensor
        _length: int        # tokens held in the buffers

        @classmethod
        def around(cls, layer: KVLayer, extra: int) -> RoomyLayer:
            import torch

            new = cls()
            new.dtype, new.device, new.is_initialized = layer.keys.dtype, layer.keys.device, True
            batch, heads, length, dim = layer.keys.shape
            new._k = torch.empty(batch, heads, length + extra, dim, dtype=new.dtype, device=new.device)
            new._v = torch.empty_like(new._k)
            new._k[:, :, :length], new._v[:, :, :length] = layer.keys, layer.values
            new._length = length
            new.keys, new.values = new._k[:, :, :length], new._v[:, :, :length]
            return new

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object,
                   **kwargs: object) -> tuple:
            end = self._length + key_states.shape[-2]
            if end > self._k.shape[-2]:  # out of room: grow as a DynamicLayer does
                import torch
                self._k = torch.cat([self._k[:, :, :self._length], key_states], dim=-2)
                self._v = torch.cat([self._v[:, :, :self._length], value_states], dim=-2)
            else:
                self._k[:, :, self._length:end] = key_states
                self._v[:, :, self._length:end] = value_states
            self._length = end
            self.keys, self.values = self._k[:, :, :end], self._v[:, :, :end]
            return self.keys, self.values

    return RoomyLayer


class _Lazy:
    """Builds the layer class on first use (transformers is imported only then)."""
    cls: _LayerWrapper | None = None

    def around(self, layer: KVLayer, extra: int) -> KVLayer:
        if _Lazy.cls is None:
            _Lazy.cls = _roomy_layer_class()
        return _Lazy.cls.around(layer, extra)


_RoomyLayer = _Lazy()
