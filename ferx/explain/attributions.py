"""Pixel attributions through Captum: Integrated Gradients, Saliency, SmoothGrad, InputXGradient, Occlusion,
GuidedBackprop (and GradientSHAP, by name only: not offered in the app).

Every method explains the target logit (or logit(target) - logit(contrast) for a contrastive
map) with respect to the normalised model input, then collapses channels to one H x W map:

* signed methods (IG, InputXGradient, Occlusion, GuidedBackprop, GradientSHAP) sum the channels
  and keep the sign: positive = evidence for the target, negative = against it;
* Saliency is |gradient| by definition (Simonyan et al.), the maximum over channels; unsigned. SmoothGrad
  averages it over noisy copies of the image (Captum's NoiseTunnel); unsigned too.

Baseline (IG, Occlusion, GradientSHAP): ``"black"`` (:data:`ATTRIBUTION_BASELINE`) — pixel value 0 pushed
through the model's own normalisation — or ``"blur"`` (the image under a Gaussian blur of sigma size/16) or
``"mean"`` (every pixel mid-gray, 127.5). It is recorded in each map's ``params``.

Internal batching: IG evaluates its ``n_steps`` path points ``internal_batch_size`` at a time;
Occlusion ``perturbations_per_eval`` windows at a time. GuidedBackprop overrides the gradient of
``nn.ReLU`` modules only (ferx's networks use ReLU modules everywhere; Conv-cut's ConvNeXt
backbone uses GELU, which guided backprop leaves alone — recorded as ``guided_relus``).

Each method is one :func:`register_captum` call at the bottom of this module: the Captum call,
the parameters it records, and its record in :mod:`ferx.explain.methods`.
"""

from __future__ import annotations

import functools
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn as nn

from ferx.explain._common import ContrastModel, as_batch, gradient_safe, per_image, resolve_targets
from ferx.explain._libraries import captum_attr
from ferx.explain.maps import ExplanationMap, make_map
from ferx.explain.methods import ExplanationMethod, MethodOptions, get_method, list_methods, register_method

BLUR_SIGMA = 1 / 16  # the blur baseline's Gaussian sigma, a fraction of the input's side (4 px at 64 x 64)
# what the pixels a method or the deletion test removes become: name -> description (input side ``size``)
BASELINES = {
    "blur": lambda size: f"blur: the image under a Gaussian blur of sigma {size * BLUR_SIGMA:g} px (input {size}x{size})",
    "black": lambda size: "black: pixel value 0",
    "mean": lambda size: "mean: every pixel mid-gray (127.5)",
}
ATTRIBUTION_BASELINE = "black"  # IG, Occlusion, GradientSHAP: the reference input an attribution departs from
DELETION_BASELINE = "blur"  # the deletion/insertion test (ferx.explain.faithfulness): what removed pixels become


def describe_baseline(kind: str, size: int) -> str:
    return BASELINES[kind](size) if kind in BASELINES else kind


@dataclass(frozen=True)
class Settings:
    """Every knob of :func:`attribution_maps`; each method reads the ones it has."""

    baseline: str
    n_steps: int
    internal_batch_size: int
    window: int
    stride: int
    perturbations_per_eval: int
    n_samples: int
    seed: int


@dataclass(frozen=True)
class _Captum:
    attribute: Callable[..., torch.Tensor]  # (captum.attr, forward, x, target, reference image or None, settings)
    params: Callable[[Settings, nn.Module], dict]  # what the map records in ``params``
    uses_baseline: bool


_CAPTUM: dict[str, _Captum] = {}


def register_captum(name: str, title: str, reading: str, attribute, *, signed: bool = True, cost: str = "light",
                    uses_baseline: bool = False, params=lambda settings, model: {}, aliases: tuple[str, ...] = (),
                    offered: bool = True) -> None:
    """One Captum method. ``attribute(attr, forward, x, target, ref, settings)`` (``attr``: the
    ``captum.attr`` module) returns N x C x H x W attributions; signed maps sum the channels, unsigned
    ones take the maximum of |value|."""
    _CAPTUM[name] = _Captum(attribute, params, uses_baseline)
    units = ("attribution to the target's logit: + for it, − against it" if signed
             else "|gradient| of the target's logit, arbitrary units")
    register_method(ExplanationMethod(name, "captum", title, signed=signed, class_agnostic=False, cost=cost,
                                      reading=reading, run=functools.partial(_run, name), aliases=aliases,
                                      offered=offered, units=units))


def _run(method: str, model, x, *, targets=None, contrast=None, options=None) -> list[ExplanationMap]:
    steps = {} if options is None else {"n_steps": options.ig_steps}
    return attribution_maps(model, x, method, targets=targets, contrast=contrast, **steps)


def canonical_attribution(method: str) -> str:
    name = get_method(method).name
    if name not in _CAPTUM:
        raise ValueError(f"{method!r} is not a Captum attribution; choose from {', '.join(list_methods('captum'))}")
    return name


def pixel_baseline(x: torch.Tensor, spec, kind: str = ATTRIBUTION_BASELINE) -> torch.Tensor:
    """A reference image in the model's normalised space, one of :data:`BASELINES`: ``black`` (pixel 0),
    ``mean`` (pixel 127.5) or ``blur`` (``x`` under a Gaussian blur of sigma = :data:`BLUR_SIGMA` x size)."""
    if kind == "blur":
        return gaussian_blur(x, sigma=x.shape[-1] * BLUR_SIGMA)
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
                     baseline: str = ATTRIBUTION_BASELINE, n_steps: int = MethodOptions.ig_steps, internal_batch_size: int = 32,
                     window: int | None = None, stride: int | None = None, perturbations_per_eval: int = 64,
                     n_samples: int = 16, seed: int = 0) -> list[ExplanationMap]:
    """One Captum attribution map per image of ``x`` (N x C x H x W, normalised model input).

    ``targets`` default to the predicted classes. IG: ``n_steps`` (Gauss-Legendre),
    ``internal_batch_size``. Occlusion: square ``window`` (default size/8) moved by ``stride``
    (default window/2), ``perturbations_per_eval`` at a time. GradientSHAP: ``n_samples``.
    """
    method = canonical_attribution(method)
    captum, signed = _CAPTUM[method], get_method(method).signed
    x = as_batch(x, model)
    n, size = x.shape[0], x.shape[-1]
    name = getattr(model, "ferx_name", type(model).__name__)
    window = window or max(2, size // 8)
    settings = Settings(baseline, n_steps, internal_batch_size, window, stride or max(1, window // 2),
                        perturbations_per_eval, n_samples, seed)
    contrasts = per_image(contrast, n, "contrast")
    attr = captum_attr()  # the first call imports Captum: not timed
    start = time.perf_counter()
    with gradient_safe(model), warnings.catch_warnings():
        # Captum warns that it sets requires_grad on inputs and hooks ReLUs: expected, not news
        warnings.simplefilter("ignore", UserWarning)
        targets = resolve_targets(model, x, targets)
        ref = pixel_baseline(x, _spec_of(model), baseline) if captum.uses_baseline else None
        out = torch.empty_like(x)
        # contrastive maps explain one scalar per image through a wrapper: group images by (target, contrast)
        for key in sorted(set(zip(targets, contrasts)), key=str):
            idx = [i for i, k in enumerate(zip(targets, contrasts)) if k == key]
            target, other = key
            forward = model if other is None else ContrastModel(model, target, other)
            captum_target = target if other is None else 0
            refi = None if ref is None else ref[idx]
            out[idx] = captum.attribute(attr, forward, x[idx], captum_target, refi, settings).detach()
    elapsed = (time.perf_counter() - start) / n
    maps = (out.sum(1) if signed else out.abs().amax(1)).float().cpu().numpy()
    params = captum.params(settings, model)
    return [make_map(maps[i], size, method=method, kind="attribution", model=name, target=targets[i],
                     contrast=contrasts[i], signed=signed, elapsed_s=elapsed, params=params)
            for i in range(n)]


def _occlusion(attr, forward, x, target, ref, s: Settings) -> torch.Tensor:
    c = x.shape[1]
    return attr.Occlusion(forward).attribute(x, sliding_window_shapes=(c, s.window, s.window),
                                             strides=(c, s.stride, s.stride), baselines=ref, target=target,
                                             perturbations_per_eval=s.perturbations_per_eval)


def _gradient_shap(attr, forward, x, target, ref, s: Settings) -> torch.Tensor:
    refs = torch.cat([ref, gaussian_blur(x, x.shape[-1] * BLUR_SIGMA)])
    with torch.random.fork_rng():  # reproducible noise without touching the caller's RNG
        torch.manual_seed(s.seed)
        return attr.GradientShap(forward).attribute(x, baselines=refs, target=target, n_samples=s.n_samples)


def _smoothgrad(attr, forward, x, target, ref, s: Settings) -> torch.Tensor:
    sigma = 0.15 * float(x.max() - x.min())  # Smilkov et al.: noise of 10-20 % of the input range
    with torch.random.fork_rng():  # reproducible noise without touching the caller's RNG
        torch.manual_seed(s.seed)
        return attr.NoiseTunnel(attr.Saliency(forward)).attribute(x, nt_type="smoothgrad", nt_samples=s.n_samples,
                                                                  nt_samples_batch_size=s.n_samples, stdevs=sigma,
                                                                  target=target, abs=True)


register_captum(
    "integrated_gradients", "Integrated Gradients",
    "Integrated Gradients (signed): each pixel's contribution along a path from a baseline image; red adds "
    "evidence for the target, blue removes it.",
    lambda attr, f, x, t, ref, s: attr.IntegratedGradients(f).attribute(x, baselines=ref, target=t, n_steps=s.n_steps,
                                                                        internal_batch_size=s.internal_batch_size),
    cost="heavy", uses_baseline=True, aliases=("ig",),
    params=lambda s, model: {"n_steps": s.n_steps, "internal_batch_size": s.internal_batch_size,
                             "baseline": s.baseline})
register_captum(
    "saliency", "Saliency",
    "Saliency: |gradient| of the target score per pixel; where a small change would matter most.",
    lambda attr, f, x, t, ref, s: attr.Saliency(f).attribute(x, target=t, abs=True),
    signed=False, params=lambda s, model: {"abs": True, "channel_reduction": "max"})
register_captum(
    "input_x_gradient", "Input × Gradient",
    "Input × Gradient (signed): gradient times pixel value; red for, blue against.",
    lambda attr, f, x, t, ref, s: attr.InputXGradient(f).attribute(x, target=t), aliases=("inputxgradient", "ixg"))
register_captum(
    "occlusion", "Occlusion",
    "Occlusion (signed): score drop when a patch is covered; red = covering it hurts the target.",
    _occlusion, cost="heavy", uses_baseline=True,
    params=lambda s, model: {"window": s.window, "stride": s.stride, "baseline": s.baseline,
                             "perturbations_per_eval": s.perturbations_per_eval})
register_captum(
    "guided_backprop", "Guided Backprop",
    "Guided Backprop (signed): gradients with negative signals stopped at ReLUs; edges, not evidence — fails "
    "sanity checks, read with care.",
    lambda attr, f, x, t, ref, s: attr.GuidedBackprop(f).attribute(x, target=t), aliases=("guidedbackprop", "gbp"),
    params=lambda s, model: {"guided_relus": sum(isinstance(m, nn.ReLU) for m in model.modules())})
register_captum(
    "gradient_shap", "GradientSHAP",
    "GradientSHAP (signed): expected gradients over noisy baselines; red for, blue against.",
    _gradient_shap, cost="heavy", uses_baseline=True, aliases=("gradientshap",), offered=False,
    params=lambda s, model: {"n_samples": s.n_samples, "baseline": f"{s.baseline} and the image's blur",
                             "seed": s.seed})
register_captum(
    "smoothgrad", "SmoothGrad",
    "SmoothGrad: Saliency averaged over noisy copies of the image (Captum's NoiseTunnel); the same question as "
    "Saliency with less pixel noise.",
    _smoothgrad, signed=False, cost="heavy", aliases=("noisetunnel",),
    params=lambda s, model: {"n_samples": s.n_samples, "noise": "15 % of the input range", "abs": True,
                             "channel_reduction": "max", "seed": s.seed})
