"""Where do a model's maps fall on the face, across a dataset? Grad-CAM and native attention side by side.

For every face of a packed split (or ``per_class`` faces of each true class, the first ones in
split order), every map of :data:`MAPS` — Grad-CAM of the *predicted* class (what the decision
used, as in the Compare tab) and each native attention map the model declares — is broken down
into facial regions (:mod:`ferx.explain.regions`: share of positive mass per region). Dataset
faces carry no landmarks, so the regions come from the mean-face template
(:data:`ferx.faces.MEAN_FACE`, the mean MTCNN landmarks of FER-2013 faces) placed on the model's
input. :func:`region_table` averages the shares per model, map and true class, with each region's
area share as the "(area)" row: "is attention an explanation?" answered with the same numbers
for both kinds of map. Per-face shares are cached (``ferx.cache``) by checkpoint, split and selection.
"""

from __future__ import annotations

import hashlib
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np
import pandas as pd

from ferx.cache import atomic_path, cache_key, cached
from ferx.data.labels import in_canonical_order
from ferx.explain.methods import map_title
from ferx.explain.regions import REGIONS, positive_mass, region_labels
from ferx.paths import cache_dir as default_cache_dir

REGIONS_VERSION = 1
MAPS = ("gradcam", "native")  # the post-hoc map and the model's own attention (every native map it declares)
AREA_ROW = "(area)"


def _shares(values: np.ndarray, onehot: np.ndarray, signed: bool) -> np.ndarray:
    """N x H x W maps -> N x R shares of positive mass (:func:`ferx.explain.regions.positive_mass`)."""
    pos = positive_mass(values.reshape(len(values), -1), signed)
    total = pos.sum(1, keepdims=True)
    return np.where(total > 0, (pos @ onehot) / np.where(total > 0, total, 1), np.nan)


def template_labels(size: int) -> np.ndarray:
    """The region (index into :data:`REGIONS`) of every pixel of a ``size`` x ``size`` model input, the
    mean-face template placed on it (flattened)."""
    from ferx.faces import MEAN_FACE

    return region_labels(MEAN_FACE * size, size).ravel()


def template_areas(size: int) -> dict[str, float]:
    """Each region's share of a ``size``-px input (the level a map that ignores the face reaches)."""
    labels = template_labels(size)
    return dict(zip(REGIONS, np.bincount(labels, minlength=len(REGIONS)) / labels.size))


def region_shares(loaded, packed, *, preds: np.ndarray | None = None, per_class: int | None = 100,
                  batch_size: int = 64, hold: Callable[[], ContextManager] = nullcontext,
                  cache_dir: str | Path | None = None, progress: Callable[[float], None] | None = None) -> pd.DataFrame:
    """One row per face and map: ``model, map, sample, true, predicted, input_px`` (the side of the input the
    template was placed on) and the mass share of every region. ``preds``: an analysis run's prediction of
    every face of ``packed`` (``run.preds``), the class each Grad-CAM explains (a bf16 run's prediction is
    not always the fp32 one); None: the model's own prediction here.
    ``progress(fraction)`` is called after each batch (not when the shares come from the cache)."""
    from ferx.data.preprocess import to_model_input
    from ferx.explain.cam import cam_maps
    from ferx.explain.native import has_native_attention, native_attention

    idx = packed.per_class(per_class)
    targets = None if preds is None else np.asarray(preds, dtype=np.int64)[idx]
    model, spec = loaded.model, loaded.input_spec
    labels = template_labels(spec.size)  # the template on the model's input
    # the template's own pixels are in the key: shares of another template (a region reshaped) are not reused
    key = cache_key(REGIONS_VERSION, loaded.sha256, packed.fingerprint, spec.to_dict(), idx.tolist(), MAPS,
                    hashlib.sha256(labels.tobytes()).hexdigest(), *([] if targets is None else [targets.tolist()]))
    path = Path(cache_dir or default_cache_dir("regions")) / f"{key[:32]}.npz"
    onehot = np.eye(len(REGIONS))[labels]

    def build():
        rows_maps, shares, preds = [], [], []
        device = next(model.parameters()).device
        for start in range(0, len(idx), batch_size):
            batch = idx[start:start + batch_size]
            with hold():
                x = to_model_input(packed.images[batch], spec).to(device)
                chosen = None if targets is None else targets[start:start + batch_size].tolist()
                maps = {"gradcam": cam_maps(model, x, "gradcam", targets=chosen)}  # target: the predicted class
                if has_native_attention(model):
                    for native in native_attention(model, x):
                        for m in native.maps:
                            maps.setdefault(m.method, []).append(m)
            preds.append([m.target for m in maps["gradcam"]])
            shares.append({name: _shares(np.stack([m.values for m in ms]), onehot, ms[0].signed)
                           for name, ms in maps.items()})
            rows_maps = list(maps)
            if progress is not None:
                progress(min(start + batch_size, len(idx)) / len(idx))
        return {"names": np.array(rows_maps), "preds": np.concatenate(preds),
                **{f"s_{n}": np.concatenate([s[n] for s in shares]) for n in rows_maps}}

    def load(p):
        with np.load(p, allow_pickle=False) as z:
            if str(z["key"]) != key:
                raise ValueError("stale entry")
            return {k: z[k] for k in z.files if k != "key"}

    def save(value, p):
        with atomic_path(p) as tmp:
            np.savez(tmp, key=np.array(key), **value)

    data = cached(path, load, build, save, what="region shares")
    frames = []
    for name in data["names"]:
        f = pd.DataFrame(data[f"s_{name}"], columns=list(REGIONS))
        f.insert(0, "input_px", spec.size)
        f.insert(0, "predicted", [loaded.labels.classes[p] for p in data["preds"]])
        f.insert(0, "true", [packed.classes[t] for t in packed.targets[idx]])
        f.insert(0, "sample", idx)
        f.insert(0, "map", str(name))
        f.insert(0, "model", loaded.path.name if loaded.path is not None else loaded.display)
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def region_table(shares: pd.DataFrame) -> pd.DataFrame:
    """Mean mass share per model, map and true class (rows), region (columns); each map's "(area)"
    row holds the regions' area shares, the level a map that ignores the face would reach."""
    rank = {c: i for i, c in enumerate(in_canonical_order(shares["true"].unique()))}
    shares = shares.iloc[np.argsort(shares["true"].map(rank).to_numpy(), kind="stable")]  # classes in canonical order
    table = shares.groupby(["model", "map", "true"], sort=False)[list(REGIONS)].mean()
    sides = shares.groupby(["model", "map"], sort=False)["input_px"].first()
    extra = pd.DataFrame([{"model": model, "map": name, "true": AREA_ROW, **template_areas(int(side))}
                          for (model, name), side in sides.items()]).set_index(["model", "map", "true"])
    table = pd.concat([extra, table]).sort_index(level=["model", "map"], sort_remaining=False)
    # the faces a mean is over: a map with no positive mass has no shares (NaN) and is left out of it
    counts = shares[list(REGIONS)].notna().any(axis=1).groupby([shares["model"], shares["map"], shares["true"]],
                                                               sort=False).sum()
    table.insert(0, "faces", counts.reindex(table.index).fillna(0).astype(int))
    return table


def region_figure(table: pd.DataFrame):
    """A plotly heat-map per model and map: true class x region. The text is the mean share of positive
    mass; the colour compares it with the region's area share (log2 of mass / area: 0, white, is what a map
    spread evenly over the image gets; red, more than its area; blue, less)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    groups = list(dict.fromkeys((m, k) for m, k, _ in table.index))
    regions = [c for c in table.columns if c != "faces"]
    ncols = min(3, len(groups))
    nrows = -(-len(groups) // ncols)
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=[f"{m}<br>{map_title(k)}" for m, k in groups],
                        horizontal_spacing=0.05, vertical_spacing=0.28 / nrows)
    for i, (m, k) in enumerate(groups):
        row, col = divmod(i, ncols)
        row, col = row + 1, col + 1
        sub = table.loc[(m, k)]
        share = sub[regions].to_numpy(dtype=float)
        area = sub.loc[AREA_ROW, regions].to_numpy(dtype=float) if AREA_ROW in sub.index else np.ones(len(regions))
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.log2(share / area)
        fig.add_trace(go.Heatmap(z=np.clip(z, -2, 2), x=regions, y=list(sub.index), zmin=-2, zmax=2, zmid=0,
                                 colorscale="RdBu_r", showscale=i == 0,
                                 colorbar=dict(title="log2(mass/area)", tickvals=[-2, -1, 0, 1, 2],
                                               ticktext=["÷4", "÷2", "= area", "×2", "×4"]),
                                 text=np.vectorize(lambda v: "" if np.isnan(v) else f"{v:.0%}")(share),
                                 texttemplate="%{text}", textfont={"size": 9}, customdata=share,
                                 hovertemplate="%{y} · %{x}: %{customdata:.1%} of the positive mass<extra></extra>"),
                      row=row, col=col)
        fig.update_yaxes(autorange="reversed", row=row, col=col, showticklabels=col == 1)
    fig.update_layout(height=120 + 330 * nrows, width=max(560, 330 * ncols), margin=dict(l=10, r=10, t=100, b=10),
                      title=dict(text="Share of each map's positive mass per facial region (mean-face template), per "
                                      "true class; colour: the share against the region's area", font=dict(size=13)))
    return fig
