"""The sanity check of saliency maps: cascading model-parameter randomisation (Adebayo et al., 2018).

Some saliency maps barely depend on the model: they look the same after the network's learned
weights are replaced by random ones, so they show the image's edges, not what the model used.
:func:`cascading_randomization` randomises a copy of the model from the head down, one group of
layers more at each step, re-draws every method's map for the same class at every step, and
measures each map's similarity to the trained model's map — Spearman rank correlation
(:func:`ferx.explain.map_agreement`) and SSIM (scikit-image) of the min-max-scaled maps. A method
whose map still resembles the original as the layers become random (mean Spearman over the steps
that have reached it at least :data:`INDEPENDENT_SPEARMAN`) is flagged as *not depending on the model*.
A step reaches a map once it changes it at all: an early block's own attention is computed before
the layers randomised first, so it stays the same until the cascade gets down to its block.

The check never touches the model it is given (it works on a deep copy, seeded, so the same call
gives the same numbers).
"""

from __future__ import annotations

import copy
import textwrap
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ferx.explain._common import as_batch, resolve_targets
from ferx.explain.faithfulness import map_agreement
from ferx.explain.maps import ExplanationMap
from ferx.explain.methods import get_method, map_title

# a map whose rank correlation with the trained model's map stays at or above this, on average over
# the randomisation steps, does not depend on what the model learned (Adebayo et al. read it by eye;
# the number is ferx's, stated wherever the flag is shown)
INDEPENDENT_SPEARMAN = 0.5
DEFAULT_METHODS = ("native", "gradcam", "saliency")  # the model's own maps (where it has them), a CAM, a gradient
DEFAULT_STEPS = 6  # groups of layers randomised one after another


def applicable_methods(model: nn.Module, methods: Sequence[str] | None = None, name: str = "this model") -> list[str]:
    """``methods`` (default :data:`DEFAULT_METHODS`) less ``native`` when the model has no attention of its own;
    a ValueError naming the model (``name``) when nothing is left to check."""
    from ferx.explain.native import has_native_attention

    kept = [m for m in (methods or DEFAULT_METHODS) if m != "native" or has_native_attention(model)]
    if not kept:
        raise ValueError(f"{name} has no native attention: choose another method")
    return kept


@dataclass
class SanityStep:
    """The model after randomising ``layers`` (and every group above them); step 0 is the trained model."""

    index: int
    layers: list[str]
    maps: dict[str, ExplanationMap] = field(default_factory=dict)  # map name -> map

    @property
    def label(self) -> str:
        """How far down this step's randomisation reaches: its deepest layer (the cascade is cumulative,
        so every layer above it is random too), named to four levels: ``backbone.stages.2.blocks.20``."""
        if not self.layers:
            return "trained"
        return ".".join(self.layers[-1].split(".")[:4])


@dataclass
class SanityCheck:
    model: str
    target: int
    steps: list[SanityStep]
    threshold: float = INDEPENDENT_SPEARMAN
    classes: Sequence[str] | None = None
    _frame: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    @property
    def target_label(self) -> str:
        return self.classes[self.target] if self.classes else str(self.target)

    @property
    def map_names(self) -> list[str]:
        return list(self.steps[0].maps)

    def frame(self) -> pd.DataFrame:
        """One row per map and step: similarity to the trained model's map (computed once)."""
        if self._frame is None:
            self._frame = self._similarities()
        return self._frame

    def _similarities(self) -> pd.DataFrame:
        from skimage.metrics import structural_similarity

        rows = []
        for name in self.map_names:
            original = self.steps[0].maps[name].values
            scale = float(np.abs(original).max()) or 1.0
            for step in self.steps:
                values = step.maps[name].values
                rows.append({"map": name, "step": step.index, "randomised": step.label,
                             # whether the randomisation so far changed this map at all (not: it depends only
                             # on layers below those randomised yet)
                             "changed": not np.allclose(values, original, rtol=1e-5, atol=1e-6 * scale),
                             "spearman": map_agreement(original, values)["spearman"],
                             "ssim": float(structural_similarity(_unit(original), _unit(values), data_range=1.0))})
        return pd.DataFrame(rows)

    def spearman_table(self) -> pd.DataFrame:
        """Maps (rows, in the order they were computed) x steps (columns, 0 = trained): Spearman with the
        trained map, to 2 decimals."""
        return self.frame().pivot(index="map", columns="step", values="spearman").reindex(self.map_names).round(2)

    def mean_similarity(self) -> pd.Series:
        """Per map: its mean Spearman with the trained map over the randomised steps that have reached it, from
        the first that changed it (all of them when none did: a map no weight changes is the same whatever the
        model). The mean, not the last step alone: a coarse map (mini-Xception's Grad-CAM is 4 x 4) correlates by
        chance at any one step (0.72 seen at one). Not over every step: LANMSFF-FERPlus's block-2 attention is
        computed before the layers randomised first, so it was the trained map itself (ρ 1.00) at 3 of 6 steps,
        then 0.14 at each step that randomised its block, and was flagged as not depending on the model (0.57)."""
        frame = self.frame()
        frame = frame[frame["step"] > 0]
        means = {}
        for name in self.map_names:
            rows = frame[frame["map"] == name]
            if rows["changed"].any():
                rows = rows[rows["step"] >= rows.loc[rows["changed"], "step"].min()]
            means[name] = float(rows["spearman"].mean())
        return pd.Series(means, name="spearman").rename_axis("map")

    def independent(self) -> dict[str, bool]:
        """Per map: True when it still resembles the trained model's map as the layers become random."""
        mean = self.mean_similarity()
        return {name: bool(mean[name] >= self.threshold) for name in self.map_names}

    def figure(self, size: float = 1.6, face: np.ndarray | None = None, photo: str | None = None):
        """A grid for people: one row per map, one column per step (trained first; the ``face`` crop
        before them when given), each map scaled to its own range (a signed map symmetric about 0, in
        the diverging colours ferx draws signed maps with), with its similarity to the trained map;
        flagged rows say so. ``photo`` (a file name) goes in the title."""
        from matplotlib.figure import Figure  # not pyplot's: requests draw at once, and nothing needs closing

        from ferx.explain.overlay import DEFAULT_CMAP, DEFAULT_SIGNED_CMAP

        # every text at 11 pt (the title 12, the numbers under the maps 10): the app shows the default check
        # (8 columns, 12.8 in, 1,280 px at 100 dpi) 958 px wide in a 1,024-px window, where the 6–8 pt it had came
        # out 6–8 px high; 11 pt is 11 px there, 10 pt 10
        text = 11
        frame, flags, mean = self.frame().set_index(["map", "step"]), self.independent(), self.mean_similarity()
        names = self.map_names
        first = 1 if face is not None else 0  # the face's column
        width = size * (len(self.steps) + first)
        fig = Figure(figsize=(width, size * len(names) + 1.0),
                     layout="constrained")  # room for the wrapped title, unlike tight_layout
        grid = fig.subplots(len(names), len(self.steps) + first, squeeze=False)
        axes = [row[first:] for row in grid]
        if face is not None:
            for r in range(len(names)):
                grid[r][0].imshow(face, cmap="gray" if face.ndim == 2 else None)
                grid[r][0].set_xticks([]), grid[r][0].set_yticks([])
            grid[0][0].set_title("face", fontsize=text)
        for r, name in enumerate(names):
            for c, step in enumerate(self.steps):
                ax = axes[r][c]
                m = step.maps[name]
                if m.signed:
                    top = float(np.abs(m.values).max()) or 1.0
                    ax.imshow(m.values, cmap=DEFAULT_SIGNED_CMAP, vmin=-top, vmax=top)
                else:
                    ax.imshow(m.values, cmap=DEFAULT_CMAP)
                ax.set_xticks([]), ax.set_yticks([])
                if np.ptp(m.values) <= 1e-9 * max(1.0, float(np.abs(m.values).max())):  # one colour: say why
                    ax.text(0.5, 0.5, f"flat: every\nvalue {float(m.values.flat[0]):.3g}", transform=ax.transAxes,
                            ha="center", va="center", fontsize=text,  # boxed: legible on any colour (a flat signed
                            bbox=dict(boxstyle="round", facecolor="white", alpha=0.85, linewidth=0))  # map is white)
                sim = frame.loc[(name, step.index)]
                # 10 pt: two negative numbers ("ρ -0.46 · SSIM -0.05") at 11 touched the next column's
                ax.set_xlabel(f"ρ {sim.spearman:.2f} · SSIM {sim.ssim:.2f}", fontsize=text - 1)
                if r == 0:  # a layer's name broken after its dots, in the column's width
                    ax.set_title("trained" if c == 0 else f"random down to\n{_wrap_dotted(step.label, 15)}",
                                 fontsize=text)
            flag = "\n(independent of\nthe model!)" if flags[name] else ""
            grid[r][0].set_ylabel(f"{textwrap.fill(map_title(name), 14)}\nmean ρ {mean[name]:.2f}{flag}",
                                  fontsize=text, color="crimson" if flags[name] else "black")
        title = (f"Sanity check, {self.model}{f', {photo}' if photo else ''}: layers randomised from the head down "
                 f"(class {self.target_label}); each map on its own colour range (dark = low, bright = high; signed "
                 f"maps blue < 0 < red); ρ = Spearman with the trained map; SSIM = structural similarity with it, "
                 f"both scaled to 0–1 (1: the same picture); flagged when the mean ρ over the steps that changed it "
                 f"≥ {self.threshold}")
        fig.suptitle(textwrap.fill(title, int(width * 10)), fontsize=text + 1)  # ~10 characters of 12 pt an inch
        return fig

    def to_dict(self) -> dict:
        flags = self.independent()
        return {"model": self.model, "target": self.target, "target_label": self.target_label,
                "threshold_spearman": self.threshold,
                "steps": [{"index": s.index, "randomised": s.layers} for s in self.steps],
                "similarity": self.frame().round(4).to_dict(orient="records"),
                "mean_spearman": {k: round(float(v), 4) for k, v in self.mean_similarity().items()},
                "independent_of_model": flags}


def _wrap_dotted(name: str, width: int) -> str:
    """A dotted layer name on lines of at most ``width`` characters where it can, broken after its dots."""
    lines = [""]
    for part in name.replace(".", ".\n").split("\n"):
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(lines)


def _unit(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    return np.zeros_like(values, dtype=np.float64) if hi <= lo else (values - lo) / (hi - lo)


def _layers(model: nn.Module) -> list[str]:
    """The model's parameterised layers from the head down (registration order is the forward order in ferx's models)."""
    return [name for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))][::-1]


def max_steps(model: nn.Module) -> int:
    """The most steps a check of ``model`` takes: one parameterised layer each (more are cut to this)."""
    return len(_layers(model))


def layer_groups(model: nn.Module, n_steps: int) -> list[list[str]]:
    """The model's parameterised layers from the head down, in ``n_steps`` consecutive groups (at most
    :func:`max_steps`)."""
    layers = _layers(model)
    return [list(g) for g in np.array_split(np.array(layers, dtype=object), min(n_steps, len(layers))) if len(g)]


def _randomise(module: nn.Module) -> None:
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()  # the layer's own initialisation (BatchNorm: its running statistics too)
    else:
        for p in module.parameters(recurse=False):
            nn.init.normal_(p, std=0.02)


def _maps(model: nn.Module, x: torch.Tensor, methods: Sequence[str], target: int) -> dict[str, ExplanationMap]:
    out = {}
    for method in methods:
        for m in get_method(method)(model, x, targets=[target]):
            out[m.method] = m
    return out


def cascading_randomization(model: nn.Module, x: torch.Tensor, methods: Sequence[str], *, target: int | None = None,
                            n_steps: int = DEFAULT_STEPS, seed: int = 0, name: str | None = None,
                            classes: Sequence[str] | None = None,
                            progress: Callable[[float, str], None] | None = None,
                            copy_model: bool = True) -> SanityCheck:
    """Maps of one image ``x`` (1 x C x H x W, the model's input) by ``methods`` on the trained model,
    then after randomising the top layer group, the top two, ... down to every layer (``n_steps``
    groups). ``target`` defaults to the trained model's prediction and stays fixed. ``progress(fraction,
    what)`` is told before each step. ``copy_model=False``: ``model`` is a copy the caller gives away, randomised
    in place (the app copies a shared model and lets others use it during the check)."""
    x = as_batch(x, model)
    if x.shape[0] != 1:
        raise ValueError(f"the sanity check takes one image (1 x C x H x W), not a batch of {x.shape[0]}")
    target = resolve_targets(model, x, target)[0]
    report = progress or (lambda fraction, what: None)
    report(0.0, "maps of the trained model")
    steps = [SanityStep(0, [], _maps(model, x, methods, target))]
    with torch.inference_mode(False):  # weights autograd can use, also inside a caller's inference_mode
        work = copy.deepcopy(model) if copy_model else model  # the caller's model is never changed
    modules = dict(work.named_modules())
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        groups = layer_groups(work, n_steps)
        for i, group in enumerate(groups, start=1):
            report(i / (len(groups) + 1), f"step {i}: random down to {group[-1]}")
            with torch.inference_mode(False):
                for layer in group:
                    _randomise(modules[layer])
            steps.append(SanityStep(i, list(group), _maps(work, x, methods, target)))
    finally:
        torch.random.set_rng_state(generator_state)  # the check leaves torch's random stream as it found it
    return SanityCheck(name or type(model).__name__, target, steps, classes=classes)
