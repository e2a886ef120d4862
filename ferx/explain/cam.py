"""The CAM family through pytorch-grad-cam, with target layers pre-wired per model.

``cam_maps(model, x, "gradcam")`` explains each image's predicted class; ``targets=`` any class,
``contrast=`` a second class for a contrastive map (the evidence for the target *over* the
contrast class: the gradient of logit(target) - logit(contrast)).

Target layers come from the model registry (``get_model_info(name).cam_target_layers``, the first
by default): LANMSFF ``block4.conv`` (8 x 8), mini-Xception ``blocks.3`` (4 x 4), Conv-cut
``attention`` — the output of the self-attention over the 14 x 14 ConvNeXt tokens, the last
layer that still has a spatial layout before DET pools it to 2 x 2. Any module can be named
(dotted path); its output is brought to N x C x H x W by :func:`to_nchw`, which also handles
ConvNeXt's channels-last tensors (``...blocks.k.norm`` / ``.mlp`` give N x H x W x C) and token
sequences (N x HW x C).

Two departures from calling the CAM objects directly, both for speed and comparability:

* Values are kept *raw* (ReLU applied, as every CAM does), not rescaled to [0, 1] per image, so a
  shared colour scale across models or classes means something. With several target layers the
  layer maps are each scaled to [0, 1] and averaged, as pytorch-grad-cam does.
* Gradients are taken only down to the first target layer: its output is detached into a leaf
  that requires grad, and parameters are frozen. Grad-CAM needs no more (d score / d activation),
  and the backward no longer runs through the backbone: Conv-cut Grad-CAM at batch 1 takes
  0.18 s instead of the 0.66 s of a plain ``GradCAM`` call (2 CPU cores, median of 5).

Hooks: each call builds its CAM object in a ``with`` block (pytorch-grad-cam's own cleanup) and
removes its own detaching hook; nothing stays registered, and no parameter keeps a ``.grad``. The CAM
object's hooks are removed once the target layers' activations are read, before the maps are made:
Score-CAM's masked passes are plain forward passes.
"""

from __future__ import annotations

import functools
import math
import time
from contextlib import contextmanager, nullcontext
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
from ferx.explain._common import ContrastTarget, LogitTarget, as_batch, check_classes, gradient_safe, per_image
from ferx.explain._libraries import grad_cam
from ferx.explain.maps import ExplanationMap, make_map, resize_map
from ferx.explain.methods import ExplanationMethod, get_method, register_method
from ferx.models import get_model_info

_CAM_CLASSES: dict[str, str] = {}  # name -> pytorch-grad-cam class name (imported at the first use)
GRADIENT_FREE: set[str] = set()  # methods that need no backward pass
BATCHED: set[str] = set()  # methods that score masked inputs, ``batch_size`` forward passes at a time


def register_cam(name: str, cam_class: str, title: str, reading: str, *, cost: str = "light",
                 class_agnostic: bool = False, gradient_free: bool = False, batched: bool = False,
                 offered: bool = True) -> None:
    """One pytorch-grad-cam class, by its name in ``pytorch_grad_cam``, as a ferx explanation method (maps
    are unsigned: ReLU'd CAMs)."""
    _CAM_CLASSES[name] = cam_class
    if gradient_free:
        GRADIENT_FREE.add(name)
    if batched:
        BATCHED.add(name)
    register_method(ExplanationMethod(name, "cam", title, signed=False, class_agnostic=class_agnostic, cost=cost,
                                      reading=reading, run=functools.partial(_run, name), offered=offered,
                                      units="ReLU'd weighted activation, arbitrary units"))


def _run(method: str, model, x, *, targets=None, contrast=None, options=None) -> list[ExplanationMap]:
    return cam_maps(model, x, method, targets=targets, contrast=contrast)


def to_nchw(t: torch.Tensor) -> torch.Tensor:
    """A target layer's output as N x C x H x W: NCHW unchanged, NHWC (ConvNeXt norm/MLP inside a
    block) permuted, N x L x C tokens with square L reshaped."""
    if t.ndim == 3:
        n, tokens, c = t.shape
        side = math.isqrt(tokens)
        if side * side != tokens:
            raise ValueError(f"cannot lay {tokens} tokens out on a square grid for a CAM")
        return t.transpose(1, 2).reshape(n, c, side, side)
    if t.ndim == 4 and t.shape[1] == t.shape[2] and t.shape[3] != t.shape[1]:
        return t.permute(0, 3, 1, 2)  # N x H x W x C
    return t


def resolve_target_layers(model: nn.Module, target_layers: Sequence[str | nn.Module] | str | None = None):
    """Module objects and their names; the registry's default when none are given."""
    if target_layers is None:
        target_layers = [get_model_info(model.ferx_name).cam_target_layers[0]]
    elif isinstance(target_layers, (str, nn.Module)):
        target_layers = [target_layers]
    modules, names = [], []
    for layer in target_layers:
        if isinstance(layer, nn.Module):
            modules.append(layer)
            names.append(next((n for n, m in model.named_modules() if m is layer), type(layer).__name__))
        else:
            try:
                modules.append(model.get_submodule(layer))
            except AttributeError:
                raise ValueError(f"{getattr(model, 'ferx_name', 'model')} has no module {layer!r} to use as a CAM "
                                 "target layer") from None
            names.append(layer)
    return modules, names


@contextmanager
def _gradients_stop_at(layers: list[nn.Module]):
    """Detach the output of whichever target layer runs first into a leaf that requires grad, so
    the backward pass stops there (later target layers stay connected to it)."""
    state = {"cut": False}

    def cut(module, inputs, output):
        if state["cut"] or not torch.is_grad_enabled() or not isinstance(output, torch.Tensor):
            return None
        state["cut"] = True
        return output.detach().requires_grad_(True)

    handles = [layer.register_forward_hook(cut) for layer in layers]  # before grad-cam's hooks: they see the leaf
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def cam_maps(model: nn.Module, x: torch.Tensor, method: str = "gradcam", *,
             targets: int | Sequence[int] | None = None, contrast: int | Sequence[int] | None = None,
             target_layers: Sequence[str | nn.Module] | str | None = None,
             batch_size: int = 64) -> list[ExplanationMap]:
    """One CAM per image of ``x`` (N x C x H x W, normalised model input).

    ``targets``: class per image (or one for all); default the predicted class. ``contrast``:
    explain target *over* this class. ``batch_size`` is ScoreCAM's forward batch.
    """
    if method not in _CAM_CLASSES:
        raise ValueError(f"unknown CAM method {method!r}; choose from {', '.join(_CAM_CLASSES)}")
    agnostic = get_method(method).class_agnostic
    x = as_batch(x, model)
    n, size = x.shape[0], x.shape[-1]
    layers, layer_names = resolve_target_layers(model, target_layers)
    targets_in = per_image(targets, n, "targets")
    contrasts = per_image(contrast, n, "contrast")
    check_classes(model, *targets_in, *contrasts)
    cam_class = getattr(grad_cam(), _CAM_CLASSES[method])  # the first call imports pytorch-grad-cam: not timed
    start = time.perf_counter()
    with gradient_safe(model):
        stop = _gradients_stop_at(layers) if method not in GRADIENT_FREE else nullcontext()
        with stop, cam_class(model, layers, reshape_transform=to_nchw) as cam:
            if method in BATCHED:
                cam.batch_size = batch_size
            try:
                with torch.set_grad_enabled(cam.uses_gradients):
                    logits = cam.activations_and_grads(x)
                resolved = [int(p) if t is None else t for t, p in zip(targets_in, logits.argmax(1).tolist())]
                cam_targets = [LogitTarget(t) if c is None else ContrastTarget(t, c)
                               for t, c in zip(resolved, contrasts)]
                if cam.uses_gradients:
                    sum(target(out) for target, out in zip(cam_targets, logits)).backward()
                activations = [a.float().numpy() for a in cam.activations_and_grads.activations[:len(layers)]]
                grads = [g.float().numpy() for g in cam.activations_and_grads.gradients]
                # unhooked before the maps: Score-CAM's masked passes (one per channel) would each append their
                # activations to the hooks' list, kept until the end (Conv-cut: 512 of 7 x 7 x 512, 51 MB)
                cam.activations_and_grads.release()
                per_layer = []
                for i, layer in enumerate(layers):
                    layer_map = cam.get_cam_image(x, layer, cam_targets, activations[i],
                                                  grads[i] if grads else None, eigen_smooth=False)
                    per_layer.append(np.maximum(layer_map, 0))
                del logits
            except IndexError as err:  # BaseCAM.__exit__ would swallow an IndexError and print it
                raise ValueError(f"{method} failed: {err}") from err
    elapsed = (time.perf_counter() - start) / n
    name = getattr(model, "ferx_name", type(model).__name__)
    results = []
    for i in range(n):
        if len(per_layer) == 1:
            raw = per_layer[0][i]
        else:  # layers of different resolution and scale: each to [0, 1] at input size, then the mean
            scaled = [resize_map(m[i], size) for m in per_layer]
            raw = np.mean([s / (s.max() + 1e-12) for s in scaled], axis=0)
        results.append(make_map(
            raw, size, method=method, kind="cam", model=name, signed=False, elapsed_s=elapsed,
            target=None if agnostic else resolved[i], contrast=None if agnostic else contrasts[i],
            params={"target_layers": layer_names, "activation_shape": list(activations[0].shape[1:]),
                    **({"batch_size": batch_size} if method in BATCHED else {}),
                    **({"class_agnostic": True} if agnostic else {})}))
    return results


register_cam("gradcam", "GradCAM", "Grad-CAM",
             "Grad-CAM: feature maps of the last conv block weighted by the gradient of the target score; the top of "
             "its colour bar = regions whose features raise it.")
register_cam("gradcam++", "GradCAMPlusPlus", "Grad-CAM++",
             "Grad-CAM++: like Grad-CAM with higher-order gradient weights; better with several evidence regions.")
register_cam("hirescam", "HiResCAM", "HiResCAM",
             "HiResCAM: gradient × activation per location (no averaging); faithful to the last conv layer.")
register_cam("gradcam_elementwise", "GradCAMElementWise", "Grad-CAM element-wise",
             "Grad-CAM element-wise: ReLU of gradient × activation per location and channel, summed over channels; "
             "keeps evidence that channel-averaged weights cancel out.")
register_cam("xgradcam", "XGradCAM", "XGrad-CAM", "XGrad-CAM: Grad-CAM with activation-normalised weights.",
             offered=False)
register_cam("layercam", "LayerCAM", "LayerCAM",
             "LayerCAM: positive gradients × activations per location; sharper than Grad-CAM.")
register_cam("eigencam", "EigenCAM", "Eigen-CAM",
             "Eigen-CAM: first principal component of the feature maps; class-agnostic.",
             class_agnostic=True, gradient_free=True)
register_cam("scorecam", "ScoreCAM", "Score-CAM",
             "Score-CAM: masks the input with each feature map and weighs it by the score change (no gradients; "
             "slow).", cost="heavy", gradient_free=True, batched=True)
register_cam("eigengradcam", "EigenGradCAM", "Eigen-Grad-CAM",
             "Eigen-Grad-CAM: principal component of gradient × activations.", offered=False)
