"""Per-model preprocessing, driven by the model's :class:`~ferx.models.InputSpec`.

Works on batches of uint8 tensors (N x H x W gray or N x H x W x 3 RGB) on any device, so
training can keep a whole packed split on the GPU and preprocess there.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ferx.models import InputSpec

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL's convert("L")


def to_model_input(images: torch.Tensor | np.ndarray, spec: InputSpec) -> torch.Tensor:
    """uint8 N x H x W (x 3) -> float N x C x size x size, scaled and normalised for the model."""
    x = _scaled(images, spec)
    mean = x.new_tensor(spec.mean).view(1, -1, 1, 1)
    std = x.new_tensor(spec.std).view(1, -1, 1, 1)
    return (x - mean) / std


def model_pixels(images: torch.Tensor | np.ndarray, spec: InputSpec) -> np.ndarray:
    """What :func:`to_model_input` makes of ``images`` before normalising, as uint8 pixels: N x size x size
    (one channel) or N x size x size x 3. Scoring these pixels is scoring ``images``, up to rounding."""
    px = (_scaled(images, spec) * 255).round_().clamp_(0, 255).to(torch.uint8)
    return (px[:, 0] if px.shape[1] == 1 else px.permute(0, 2, 3, 1)).cpu().numpy()


def _scaled(images: torch.Tensor | np.ndarray, spec: InputSpec) -> torch.Tensor:
    """uint8 images -> float N x C x size x size in 0..1: the model's channels and size."""
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {x.dtype}")
    # a batch: N x H x W gray or N x H x W x 3 RGB. One image (H x W, or H x W x 3, whose rows would be taken for
    # a batch of images 3 pixels wide) is refused, not misread
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] != 3) or (x.ndim == 3 and x.shape[-1] == 3):
        one = x.ndim == 2 or (x.ndim == 3 and x.shape[-1] == 3)
        raise ValueError(f"expected a batch of images, N x H x W (gray) or N x H x W x 3 (RGB), got shape "
                         f"{tuple(x.shape)}" + (": one image? pass images[None]" if one else ""))
    x = x.float().div_(255)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    elif x.shape[-1] == 3 and spec.channels == 1:
        # colour to gray: the weighted sum of the channels, as three products of contiguous planes (the same
        # floats as summing over a channel axis, test_data): a 190-px crop to a 64-px gray input takes 0.22 ms
        # instead of 0.41 on one thread
        x = (x[..., 0] * LUMA[0] + x[..., 1] * LUMA[1] + x[..., 2] * LUMA[2]).unsqueeze(1)
    else:
        x = x.permute(0, 3, 1, 2)
    if x.shape[1] == 1 and spec.channels == 3:
        x = x.expand(-1, 3, -1, -1)  # gray faces replicated to RGB
    if x.shape[-2:] != (spec.size, spec.size):
        downscale = x.shape[-1] > spec.size
        x = F.interpolate(x, size=(spec.size, spec.size), mode="bilinear", align_corners=False, antialias=downscale)
    return x
