"""What every gradient-based method needs: targets, clean gradients, a safe memory format
(:mod:`ferx.memory_format`)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

import torch
import torch.nn as nn

from ferx.memory_format import contiguous_for_backward, evaluating, fast_forward


def as_batch(x: torch.Tensor) -> torch.Tensor:
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"expected an N x C x H x W (or C x H x W) model input, got shape {tuple(x.shape)}")
    return x.detach().contiguous()  # a backward may run on it: see ferx.memory_format


def per_image(value, n: int, name: str) -> list:
    """``None``, one int for every image, or one per image -> a list of length n."""
    if value is None or isinstance(value, int):
        return [value] * n
    value = [None if v is None else int(v) for v in value]
    if len(value) != n:
        raise ValueError(f"{name}: {len(value)} given for {n} images")
    return value


def check_classes(model: nn.Module, *classes) -> None:
    k = getattr(model, "num_classes", None)
    for c in classes:
        if c is not None and k is not None and not 0 <= c < k:
            raise ValueError(f"class index {c} out of range: the model has {k} classes (0..{k - 1})")


def predicted_classes(model: nn.Module, x: torch.Tensor) -> list[int]:
    """The class each image of ``x`` is predicted (in eval mode: a model in training mode keeps its mode and its
    batch-norm statistics)."""
    with evaluating(model), torch.no_grad():
        return model(x).argmax(1).tolist()


def resolve_targets(model: nn.Module, x: torch.Tensor, targets: int | Sequence[int] | None) -> list[int]:
    """Explicit targets, or the predicted class of each image."""
    targets = per_image(targets, x.shape[0], "targets")
    if any(t is None for t in targets):
        predicted = predicted_classes(model, x)
        targets = [p if t is None else t for t, p in zip(targets, predicted)]
    check_classes(model, *targets)
    return targets


def fast_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return fast_forward(model, x).float()


@contextmanager
def gradient_safe(model: nn.Module):
    """Eval mode, parameters frozen and contiguous (:func:`ferx.memory_format.contiguous_for_backward`)
    for the duration of one explanation. Frozen parameters: backward then computes only the
    activation/input gradients a method needs (no weight gradients: faster) and leaves no ``.grad``
    on any parameter. Restores ``requires_grad``, the training flag and the memory format on exit.
    """
    flags = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    with contiguous_for_backward(model), evaluating(model):
        with torch.inference_mode(False):
            for p, _, _ in flags:
                p.requires_grad_(False)
        try:
            with torch.enable_grad():
                yield model
        finally:
            for p, flag, grad in flags:
                p.requires_grad_(flag)
                p.grad = grad  # frozen parameters gained none; put back whatever a caller had


class LogitTarget:
    """pytorch-grad-cam target: the logit of ``category`` (the usual Grad-CAM target)."""

    def __init__(self, category: int):
        self.category = category

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return output[..., self.category]


class ContrastTarget:
    """pytorch-grad-cam target: logit(a) - logit(b), the evidence for class a *over* class b."""

    def __init__(self, category: int, contrast: int):
        self.category, self.contrast = category, contrast

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return output[..., self.category] - output[..., self.contrast]


class ContrastModel(nn.Module):
    """``model`` whose single output is logit(a) - logit(b) per image (for Captum's contrastive maps)."""

    def __init__(self, model: nn.Module, category: int, contrast: int):
        super().__init__()
        self.model, self.category, self.contrast = model, category, contrast

    def forward(self, x):
        logits = self.model(x)
        return (logits[:, self.category] - logits[:, self.contrast])[:, None]
