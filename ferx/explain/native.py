"""The networks' own attention — read from the forward pass, not computed post hoc.

A native map shows what the network *weights*, not what its decision *depends on*; ferx labels
these maps ``kind="native"`` and scores them with the same faithfulness test as post-hoc maps.

Which maps a model has is declared in the model registry (``ModelInfo.native_maps``, e.g.
LANMSFF's MassAtt spatial maps with their channel weights, Conv-cut's self-attention heat-map);
``forward_attention(x)`` returns them in one shape for every model
(:class:`ferx.models.AttentionOutput`). This module knows no model by name. A model that declares
no maps (mini-Xception) raises :class:`NoNativeAttention`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from ferx.explain._common import as_batch
from ferx.explain.maps import ExplanationMap, make_map
from ferx.explain.methods import ExplanationMethod, register_method
from ferx.memory_format import fast_inference
from ferx.models import get_model_info


class NoNativeAttention(ValueError):
    """The model has no attention of its own to show."""


@dataclass
class NativeAttention:
    """One image's logits and native maps, from a single forward pass."""

    logits: np.ndarray  # K
    maps: list[ExplanationMap]
    channel_weights: dict[str, np.ndarray] = field(default_factory=dict)  # block -> C values in (0, 1)
    elapsed_s: float = 0.0  # the whole pass (prediction and all maps)


def has_native_attention(model: nn.Module) -> bool:
    name = getattr(model, "ferx_name", None)
    return name is not None and bool(get_model_info(name).native_maps)


def native_attention(model: nn.Module, x: torch.Tensor) -> list[NativeAttention]:
    """Logits and native maps for every image of ``x`` (N x C x H x W, normalised), one pass, no grad."""
    name = getattr(model, "ferx_name", type(model).__name__)
    if not has_native_attention(model):
        raise NoNativeAttention(f"{name} has no native attention maps (use a post-hoc method such as gradcam)")
    declared = get_model_info(name).native_maps
    x = as_batch(x, model)
    size = x.shape[-1]
    start = time.perf_counter()
    with fast_inference(model, x) as xi:
        out = model.forward_attention(xi)
    elapsed = time.perf_counter() - start
    results = []
    for i in range(x.shape[0]):
        maps, channels = [], {}
        for native in declared:
            maps.append(make_map(out["maps"][native.name][i].float().cpu().numpy(), size, method=native.name,
                                 kind="native", model=name, target=None, signed=False, elapsed_s=elapsed,
                                 params=out["params"].get(native.name, {})))
            if native.channel_weights:
                channels[native.channel_weights] = out["channel_weights"][native.channel_weights][i].float().cpu().numpy()
        results.append(NativeAttention(out["logits"][i].float().cpu().numpy(), maps, channels, elapsed))
    return results


def _native_maps(model, x, *, targets=None, contrast=None, options=None) -> list[ExplanationMap]:
    """Every native map of every image (the target and contrast do not change what a network attends to)."""
    return [m for result in native_attention(model, x) for m in result.maps]


register_method(ExplanationMethod(
    "native", "native", "Native attention", signed=False, class_agnostic=True, cost="light", run=_native_maps,
    reading="The network's own attention, computed as part of its prediction (each model declares its maps)."))
