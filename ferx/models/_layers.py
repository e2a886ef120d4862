"""Small layers shared by the model files."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class SepConv(nn.Module):
    """Keras ``SeparableConv2D``: depthwise kxk (no bias) then pointwise 1x1, nothing in between."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1,
                 padding: int | None = None, bias: bool = True):
        super().__init__()
        padding = dilation * (k // 2) if padding is None else padding
        self.dw = nn.Conv2d(cin, cin, k, stride, padding, dilation, groups=cin, bias=False)
        self.pw = nn.Conv2d(cin, cout, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


def pad_tf_same(x: torch.Tensor, k: int, s: int, value: float = 0.0) -> torch.Tensor:
    """Pad like TensorFlow's 'same' for a k x k window with stride s (extra row/column at the
    bottom/right), so that the output is ceil(size / s)."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x
