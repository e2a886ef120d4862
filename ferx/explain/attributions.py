"""Pixel attributions through Captum: Integrated Gradients, Saliency, InputXGradient, Occlusion,
GuidedBackprop (and GradientSHAP).

Every method explains the target logit (or logit(target) - logit(contrast) for a contrastive
map) with respect to the normalised model input, then collapses channels to one H x W map:

* signed methods (IG, InputXGradient, Occlusion, GuidedBackprop, GradientSHAP) sum the channels
  and keep the sign: positive = evidence for the target, negative = against it;
* Saliency is |gradient| by definition (Simonyan et al.), the maximum over channels; unsigned.

Baseline (IG, Occlusion, GradientSHAP): ``"black"`` by default — pixel value 0 pushed through the
model's own normalisation — or ``"blur"`` (the image under a Gaussian blur of sigma size/16) or
``"mean"`` (every pixel mid-gray, 127.5). It is recorded in each map's ``params``.

Internal batching: IG evaluates its ``n_steps`` path points ``internal_batch_size`` at a time;
Occlusion ``perturbations_per_eval`` windows at a time. GuidedBackprop overrides the gradient of
``nn.ReLU`` modules only (ferx's networks use ReLU modules everywhere; Conv-cut's ConvNeXt
backbone uses GELU, which guided backprop leaves alone — recorded as ``guided_relus``).
"""

from __future__ import annotations

import time
import warnings
from typing import Sequence

import torch
import torch.nn as nn
from captum.attr import (GradientShap, GuidedBackprop, InputXGradient, IntegratedGradients, Occlusion,
                         Saliency)

from ferx.explain._common import ContrastModel, as_batch, gradient_safe, per_image, resolve_targets
from ferx.explain.maps import ExplanationMap, make_map

ATTRIBUTION_METHODS = ("integrated_gradients", "saliency", "input_x_gradient", "occlusion", "guided_backprop",
                       "gradient_shap")
ALIASES = {"ig": "integrated_gradients", "inputxgradient": "input_x_gradient", "ixg": "input_x_gradient",
           "guidedbackprop": "guided_backprop", "gbp": "guided_backprop", "gradientshap": "gradient_shap"}
UNSIGNED = {"saliency"}
BASELINES = ("black", "blur", "mean")


def canonical_attribution(method: str) -> str:
    method = ALIASES.get(method, method)
    if method not in ATTRIBUTION_METHODS:
        raise ValueError(f"unknown attribution method {method!r}; choose from {', '.join(ATTRIBUTION_METHODS)}")
    return method


def pixel_baseline(x: torch.Tensor, spec, kind: str = "black") -> torch.Tensor:
    """A reference image in the model's normalised space: ``black`` (pixel 0), ``mean`` (pixel
    127.5) or ``blur`` (``x`` under a Gaussian blur of sigma = size / 16)."""
    if kind == "blur":
        return gaussian_blur(x, sigma=x.shape[-1] / 16)
    if kind not in BASELINES:
        raise ValueError(f"unknown baseline {kind!r}; choose from {', '.join(BASELINES)}")
    value = 0.0 if kind == "black" else 0.5
    mean = x.new_tensor(spec.mean).view(1, -1, 1, 1)
    std = x.new_tensor(spec.std).view(1, -1, 1, 1)
    return ((value - mean) / std).expand_as(x).contiguous()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of N x C x H x W, reflect-padded, radius 3 sigma."""
    radius = max(1, int(3 * sigma + 0.5))
    radius = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device) / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    y = torch.nn.functional.pad(x, (radius, radius, radius, radius), mode="reflect")
    y = torch.nn.functional.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return torch.nn.functional.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _spec_of(model: nn.Module):
    from ferx.models import get_model_info

    return get_model_info(model.ferx_name).input_spec


def attribution_maps(model: nn.Module, x: torch.Tensor, method: str = "integrated_gradients", *,
                     targets: int | Sequence[int] | None = None, contrast: int | Sequence[int] | None = None,
                     baseline: str = "black", n_steps: int = 32, internal_batch_size: int = 32,
                     window: int | None = None, stride: int | None = None, perturbations_per_eval: int = 64,
                     n_samples: int = 16, seed: int = 0) -> list[ExplanationMap]:
    """One Captum attribution map per image of ``x`` (N x C x H x W, normalised model input).

    ``targets`` default to the predicted classes. IG: ``n_steps`` (Gauss-Legendre),
    ``internal_batch_size``. Occlusion: square ``window`` (default size/8) moved by ``stride``
    (default window/2), ``perturbations_per_eval`` at a time. GradientSHAP: ``n_samples``.
    """
    method = canonical_attribution(method)
    x = as_batch(x)
    n, size = x.shape[0], x.shape[-1]
    name = getattr(model, "ferx_name", type(model).__name__)
    spec = _spec_of(model)
    contrasts = per_image(contrast, n, "contrast")
    start = time.perf_counter()
    with gradient_safe(model), warnings.catch_warnings():
        # Captum warns that it sets requires_grad on inputs and hooks ReLUs: expected, not news
        warnings.simplefilter("ignore", UserWarning)
        targets = resolve_targets(model, x, targets)
        ref = pixel_baseline(x, spec, baseline) if method in ("integrated_gradients", "occlusion", "gradient_shap") else None
        params: dict = {}
        if method == "integrated_gradients":
            params = {"n_steps": n_steps, "internal_batch_size": internal_batch_size, "baseline": baseline}
        elif method == "occlusion":
            window = window or max(2, size // 8)
            stride = stride or max(1, window // 2)
            params = {"window": window, "stride": stride, "baseline": baseline,
                      "perturbations_per_eval": perturbations_per_eval}
        elif method == "gradient_shap":
            params = {"n_samples": n_samples, "baseline": f"{baseline} and the image's blur", "seed": seed}
        elif method == "guided_backprop":
            params = {"guided_relus": sum(isinstance(m, nn.ReLU) for m in model.modules())}
        elif method == "saliency":
            params = {"abs": True, "channel_reduction": "max"}
        out = torch.empty_like(x)
        # contrastive maps explain one scalar per image through a wrapper: group images by (target, contrast)
        for key in sorted(set(zip(targets, contrasts)), key=str):
            idx = [i for i, k in enumerate(zip(targets, contrasts)) if k == key]
            target, other = key
            forward = model if other is None else ContrastModel(model, target, other)
            captum_target = target if other is None else 0
            xi = x[idx]
            refi = None if ref is None else ref[idx]
            out[idx] = _attribute(method, forward, xi, captum_target, refi, n_steps, internal_batch_size,
                                  window, stride, perturbations_per_eval, n_samples, seed).detach()
    elapsed = (time.perf_counter() - start) / n
    if method in UNSIGNED:
        maps = out.abs().amax(1)
    else:
        maps = out.sum(1)
    maps = maps.float().cpu().numpy()
    return [make_map(maps[i], size, method=method, kind="attribution", model=name, target=targets[i],
                     contrast=contrasts[i], signed=method not in UNSIGNED, elapsed_s=elapsed, params=params)
            for i in range(n)]


def _attribute(method, forward, x, target, ref, n_steps, internal_batch_size, window, stride,
               perturbations_per_eval, n_samples, seed) -> torch.Tensor:
    if method == "integrated_gradients":
        return IntegratedGradients(forward).attribute(x, baselines=ref, target=target, n_steps=n_steps,
                                                      internal_batch_size=internal_batch_size)
    if method == "saliency":
        return Saliency(forward).attribute(x, target=target, abs=True)
    if method == "input_x_gradient":
        return InputXGradient(forward).attribute(x, target=target)
    if method == "guided_backprop":
        return GuidedBackprop(forward).attribute(x, target=target)
    if method == "occlusion":
        c = x.shape[1]
        return Occlusion(forward).attribute(x, sliding_window_shapes=(c, window, window), strides=(c, stride, stride),
                                            baselines=ref, target=target,
                                            perturbations_per_eval=perturbations_per_eval)
    if method == "gradient_shap":
        refs = torch.cat([ref, gaussian_blur(x, x.shape[-1] / 16)])
        with torch.random.fork_rng():  # reproducible noise without touching the caller's RNG
            torch.manual_seed(seed)
            return GradientShap(forward).attribute(x, baselines=refs, target=target, n_samples=n_samples)
    raise AssertionError(method)
