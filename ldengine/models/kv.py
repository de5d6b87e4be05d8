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

from typing import Any

PrefixLayers = list  # [(keys, values)] per layer, each [1, kv_heads, prefix_len, head_dim]


def cache_layers(cache: Any) -> PrefixLayers:
    """The (keys, values) tensors of every layer of a transformers ``Cache``."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def expanded_cache(layers: PrefixLayers, batch: int, config: Any) -> Any:
    """A new ``DynamicCache`` holding the prefix once per batch row.

    ``expand`` is a view; the copy happens in the cache's first ``torch.cat``,
    so the stored prefix tensors stay as they were (and keep their autograd
    graph when training through the prefix).
    """
    from transformers import DynamicCache

    data = [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in layers]
    return DynamicCache(ddp_cache_data=data, config=config)
