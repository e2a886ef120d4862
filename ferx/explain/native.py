"""The networks' own attention — read from the forward pass, not computed post hoc.

A native map shows what the network *weights*, not what its decision *depends on*; ferx labels
these maps ``kind="native"`` and scores them with the same faithfulness test as post-hoc maps.

* LANMSFF: MassAtt of blocks 2 and 4. The spatial map M_s (32 x 32 and 8 x 8, in (0, 1)) scales
  every position of the block's features; the channel map M_c (72 and 84 values in (0, 1)) scales
  every channel. M_s is returned as a map, M_c as ``channel_weights``.
* Conv-cut: the self-attention over the 14 x 14 backbone tokens. The heat-map is the attention
  each location *receives*: the attention weights averaged over the 8 heads and over all 196
  query tokens (each query's weights sum to 1, so the map sums to 1; uniform attention is 1/196
  everywhere). Averaging over queries answers "which locations does the layer read from", the
  question a face overlay can show; per-query maps would be 196 maps per head.
* mini-Xception has no attention: :class:`NoNativeAttention` is raised.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from ferx.explain._common import as_batch
from ferx.memory_format import fast_inference
from ferx.explain.maps import ExplanationMap, make_map


class NoNativeAttention(ValueError):
    """The model has no attention of its own to show."""


@dataclass
class NativeAttention:
    """One image's logits and native maps, from a single forward pass."""

    logits: np.ndarray  # K
    maps: list[ExplanationMap]
    channel_weights: dict[str, np.ndarray] = field(default_factory=dict)  # block -> C values in (0, 1)
    elapsed_s: float = 0.0  # the whole pass (prediction and all maps)

    @property
    def probs(self) -> np.ndarray:
        e = np.exp(self.logits - self.logits.max())
        return e / e.sum()


def has_native_attention(model: nn.Module) -> bool:
    return hasattr(model, "forward_attention")


def native_attention(model: nn.Module, x: torch.Tensor) -> list[NativeAttention]:
    """Logits and native maps for every image of ``x`` (N x C x H x W, normalised), one pass, no grad."""
    if not has_native_attention(model):
        raise NoNativeAttention(f"{getattr(model, 'ferx_name', type(model).__name__)} has no native attention maps "
                                "(use a post-hoc method such as gradcam)")
    x = as_batch(x)
    name = getattr(model, "ferx_name", type(model).__name__)
    size = x.shape[-1]
    start = time.perf_counter()
    with fast_inference(model, x) as xi:
        out = model.forward_attention(xi)
    elapsed = time.perf_counter() - start
    results = []
    for i in range(x.shape[0]):
        maps, channels = [], {}
        common = dict(kind="native", model=name, target=None, signed=False, elapsed_s=elapsed)
        if "heatmap" in out:  # Conv-cut
            heads = out["attention"].shape[1]
            maps.append(make_map(out["heatmap"][i].float().cpu().numpy(), size, method="convcut_attention",
                                 params={"aggregation": f"mean over {heads} heads and all queries (attention received)",
                                         "tokens": list(out["heatmap"].shape[-2:])}, **common))
        for block in ("block2", "block4"):  # LANMSFF
            if block in out:
                maps.append(make_map(out[block]["spatial"][i].float().cpu().numpy(), size,
                                     method=f"massatt_{block}_spatial", params={"block": block}, **common))
                channels[block] = out[block]["channel"][i].float().cpu().numpy()
        results.append(NativeAttention(out["logits"][i].float().cpu().numpy(), maps, channels, elapsed))
    return results
