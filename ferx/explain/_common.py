"""What every gradient-based method needs: targets, clean gradients, a safe memory format
(:mod:`ferx.memory_format`)."""

from __future__ import annotations

import operator
from contextlib import contextmanager
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from ferx.memory_format import contiguous_for_backward, evaluating, fast_forward


def as_batch(x: torch.Tensor, model: nn.Module | None = None) -> torch.Tensor:
    """``x`` as an N x C x H x W batch (a C x H x W image gains its batch axis), checked against ``model`` when
    given: a float tensor of the model's weights' dtype, on the model's device, with the channels the model reads
    (one message naming the problem, not an error from deep inside a convolution)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected the model input as a torch.Tensor, not {type(x).__module__}.{type(x).__name__} "
                        "(ferx.data.to_model_input makes one from uint8 images)")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"expected an N x C x H x W (or C x H x W) model input, got shape {tuple(x.shape)}")
    if model is not None:
        _check_input(model, x)
    if x.is_inference():  # made under torch.inference_mode: a copy autograd may use (gradient_safe)
        with torch.inference_mode(False):
            return x.clone(memory_format=torch.contiguous_format)
    return x.detach().contiguous()  # a backward may run on it: see ferx.memory_format


def _check_input(model: nn.Module, x: torch.Tensor) -> None:
    name = getattr(model, "ferx_name", type(model).__name__)
    weight = next(model.parameters(), None)
    if not x.is_floating_point():
        raise TypeError(f"expected a normalised float model input, got {x.dtype} (uint8 images? "
                        "ferx.data.to_model_input(images, loaded.input_spec) scales and normalises them)")
    if weight is not None and x.device != weight.device:
        raise ValueError(f"the input is on {x.device} and {name} on {weight.device}: move one to the other's "
                         "device (x.to(device))")
    if weight is not None and x.dtype != weight.dtype:
        raise TypeError(f"the input is {x.dtype} and {name}'s weights {weight.dtype}: convert it "
                        f"(x.to({weight.dtype}))")
    if getattr(model, "ferx_name", None) is not None:
        from ferx.models import get_model_info

        # the channels this model was built for: the registry's, unless it was built with others
        # (create_model("lanmsff", in_chans=3) reads RGB; its ferx_config says so)
        channels = (getattr(model, "ferx_config", None) or {}).get("in_chans",
                                                                    get_model_info(model.ferx_name).input_spec.channels)
        if x.shape[1] != channels:
            raise ValueError(f"{name} reads {channels}-channel images, the input has {x.shape[1]} channels "
                             f"(shape {tuple(x.shape)}): ferx.data.to_model_input(images, loaded.input_spec) makes "
                             "the model's input")


def _class_index(value, name: str) -> int:
    """A class index given as any integer (Python's, numpy's, a 0-d integer tensor: ``run.preds[i]``)."""
    try:
        if isinstance(value, (bool, np.bool_)) or getattr(value, "dtype", None) in (torch.bool, np.bool_):
            raise TypeError  # True is an int to Python, and was class 1
        return operator.index(value)
    except TypeError:
        hint = f" (a class's index: loaded.classes.index({value!r}))" if isinstance(value, str) else ""
        raise TypeError(f"{name}: a class index (int) expected, not {value!r}{hint}") from None


def per_image(value, n: int, name: str) -> list:
    """``None``, one class index for every image, or one per image (``None`` in it: the predicted class) -> a
    list of length n. An index may be any integer type (numpy's, a 0-d tensor's)."""
    if value is None:
        return [None] * n
    if isinstance(value, str) or not hasattr(value, "__iter__") or getattr(value, "ndim", 1) == 0:
        return [_class_index(value, name)] * n  # a generator is one per image, as a list is
    value = [None if v is None else _class_index(v, name) for v in value]
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
    """Eval mode, parameters frozen and contiguous (:func:`ferx.memory_format.contiguous_for_backward`), gradients
    on (even inside a caller's ``torch.no_grad`` or ``torch.inference_mode``) for the duration of one explanation.
    Frozen parameters: backward then computes only the
    activation/input gradients a method needs (no weight gradients: faster) and leaves no ``.grad``
    on any parameter. Restores ``requires_grad``, the training flag and the memory format on exit.
    """
    flags = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    with contiguous_for_backward(model), evaluating(model):
        with torch.inference_mode(False):
            for p, _, _ in flags:
                p.requires_grad_(False)
        try:
            with torch.inference_mode(False), torch.enable_grad():  # also inside a caller's inference_mode
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
