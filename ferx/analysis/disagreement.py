"""Where two models disagree, do they also look at different places?

For faces of one packed split, each model's Grad-CAM of *its own* predicted class (what its decision
used: the run's prediction, bf16 where the run was) is computed at the face's size and cached (by
checkpoint, split, the faces chosen and their classes). Two
models' maps are compared with :func:`ferx.explain.faithfulness.map_agreement`: Spearman rank
correlation of their pixels and the overlap (IoU) of their top 10 % pixels.

* :func:`disagreement_frame`: the faces the two models label differently (both most confident
  first, up to ``limit``), both predictions and both agreement scores, sortable by :data:`SORTS`;
* :func:`class_agreement`: over ``per_class`` faces of each true class, how often the models agree on
  the label and how much their maps agree, per class;
* :func:`pair_tile`: a face and both maps on one scale — each map as its share of its own mass per
  pixel (Grad-CAM's raw magnitude differs between networks), the colour bar shared.
"""

from __future__ import annotations

import functools
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np
import pandas as pd

from ferx.analysis.runs import ModelRun
from ferx.analysis.tables import _check_aligned, predicted_names
from ferx.cache import atomic_path, cache_key, cached
from ferx.data.labels import in_canonical_order
from ferx.explain.faithfulness import TOP_K
from ferx.paths import cache_dir as default_cache_dir

MAPS_VERSION = 1
SORTS = {"both most confident": ("min_confidence", False), "maps least alike": ("spearman", True),
         "least top-10 % overlap": ("top_k_iou", True), "maps most alike": ("spearman", False)}


def gradcam_maps(loaded, packed, ids, targets, *, batch_size: int = 64,
                 hold: Callable[[], ContextManager] = nullcontext, cache_dir: str | Path | None = None) -> np.ndarray:
    """Grad-CAM of class ``targets[i]`` for face ``ids[i]`` of ``packed`` — the run's prediction, which a map
    computed in fp32 beside a bf16 run would not always explain: len(ids) x S x S (S: the packed face size),
    cached by checkpoint, split, ids and targets."""
    from ferx.data.preprocess import to_model_input
    from ferx.explain.cam import cam_maps
    from ferx.explain.maps import resize_map

    ids, targets = np.asarray(ids, dtype=np.int64), np.asarray(targets, dtype=np.int64)
    size = packed.images.shape[1]
    key = cache_key(MAPS_VERSION, loaded.sha256, packed.fingerprint, loaded.input_spec.to_dict(), ids.tolist(),
                    targets.tolist())
    path = Path(cache_dir or default_cache_dir("maps")) / f"{key[:32]}.npz"

    def build() -> np.ndarray:
        out = np.zeros((len(ids), size, size), np.float32)
        device = loaded.device
        for start in range(0, len(ids), batch_size):
            batch = ids[start:start + batch_size]
            with hold():
                x = to_model_input(packed.images[batch], loaded.input_spec).to(device)
                maps = cam_maps(loaded.model, x, "gradcam", targets=targets[start:start + batch_size].tolist())
            for i, m in enumerate(maps):
                out[start + i] = resize_map(m.values, (size, size))
        return out

    def load(p: Path) -> np.ndarray:
        with np.load(p, allow_pickle=False) as z:
            if str(z["key"]) != key or z["maps"].shape != (len(ids), size, size):
                raise ValueError("stale entry")
            return z["maps"].astype(np.float32)

    def save(maps: np.ndarray, p: Path) -> None:
        with atomic_path(p) as tmp:
            np.savez_compressed(tmp, key=np.array(key), maps=maps.astype(np.float16))

    return cached(path, load, build, save, what="Grad-CAM maps")


def agreement_scores(maps_a: np.ndarray, maps_b: np.ndarray, top_k: float = TOP_K) -> pd.DataFrame:
    """Per face: Spearman rank correlation and top-``top_k`` IoU of two models' maps."""
    from ferx.explain.faithfulness import map_agreement

    rows = [map_agreement(a, b, top_k) for a, b in zip(maps_a, maps_b)]
    return pd.DataFrame({"spearman": [r["spearman"] for r in rows], "top_k_iou": [r["top_k_iou"] for r in rows]},
                        dtype=float)  # an IoU of a constant map, None: NaN (blank; last in a sort)


def disagreeing(a: ModelRun, b: ModelRun, limit: int | None = 200) -> np.ndarray:
    """Sample ids the two models label differently, those both are surest of first."""
    _check_aligned(a, b)
    ids = np.flatnonzero(predicted_names(a) != predicted_names(b))
    both = np.minimum(a.confidence, b.confidence)[ids]
    return ids[np.argsort(-both, kind="stable")][:limit]


def _pair_frame(a: ModelRun, b: ModelRun, ids: np.ndarray, scores: pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame({
        "true": np.asarray(a.dataset_classes)[a.targets[ids]], f"pred_{a.name}": predicted_names(a)[ids],
        f"confidence_{a.name}": a.confidence[ids], f"pred_{b.name}": predicted_names(b)[ids],
        f"confidence_{b.name}": b.confidence[ids], "min_confidence": np.minimum(a.confidence, b.confidence)[ids],
        "spearman": scores["spearman"].to_numpy(), "top_k_iou": scores["top_k_iou"].to_numpy(),
        "path": a.paths[ids]}, index=pd.Index(ids, name="sample"))
    return frame


def _both_maps(loaded_a, loaded_b, a: ModelRun, b: ModelRun, packed, ids, hold,
               options) -> tuple[np.ndarray, np.ndarray]:
    """Both models' maps of ``ids``, each of its run's prediction; ``hold(loaded)`` is entered around each batch
    of that model."""
    return tuple(gradcam_maps(m, packed, ids, run.preds[ids], hold=functools.partial(hold, m) if hold else nullcontext,
                              **options) for m, run in ((loaded_a, a), (loaded_b, b)))


def disagreement_frame(loaded_a, loaded_b, a: ModelRun, b: ModelRun, packed, *, limit: int = 200,
                       sort: str = "both most confident", hold=None,
                       **options) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The faces the models disagree on (up to ``limit``), with both predictions and map agreement,
    sorted by one of :data:`SORTS`; and both models' maps (rows in the frame's order). ``hold(loaded)``
    is entered around each batch of a model (the app's lock); ``options`` go to :func:`gradcam_maps`."""
    if sort not in SORTS:
        raise ValueError(f"sort by one of {', '.join(SORTS)}, not {sort!r}")
    if a.name == b.name:
        raise ValueError("choose two different models to compare")
    ids = disagreeing(a, b, limit)
    if not len(ids):
        raise ValueError(f"{a.name} and {b.name} agree on every face")
    ids_sorted = np.sort(ids)  # the cache key does not depend on the order asked for
    maps_a, maps_b = _both_maps(loaded_a, loaded_b, a, b, packed, ids_sorted, hold, options)
    frame = _pair_frame(a, b, ids_sorted, agreement_scores(maps_a, maps_b))
    column, ascending = SORTS[sort]
    order = np.argsort(frame[column].to_numpy() * (1 if ascending else -1), kind="stable")
    return frame.iloc[order], maps_a[order], maps_b[order]


def class_agreement(loaded_a, loaded_b, a: ModelRun, b: ModelRun, packed, *, per_class: int = 20, hold=None,
                    **options) -> pd.DataFrame:
    """Per true class (over ``per_class`` faces of each): how often the labels agree, and the mean map
    agreement (Spearman, top-10 % IoU) on all of them, on the faces they agree on and on the others."""
    _check_aligned(a, b)
    ids = packed.per_class(per_class)
    frame = _pair_frame(a, b, ids, agreement_scores(*_both_maps(loaded_a, loaded_b, a, b, packed, ids, hold, options)))
    frame["labels agree"] = frame[f"pred_{a.name}"] == frame[f"pred_{b.name}"]
    rows = []
    groups = dict(list(frame.groupby("true", sort=False)))
    for true, group in [(c, groups[c]) for c in in_canonical_order(groups)] + [("(all)", frame)]:
        same, differ = group[group["labels agree"]], group[~group["labels agree"]]
        rows.append({"true": true, "faces": len(group), "labels agree": group["labels agree"].mean(),
                     "spearman": group["spearman"].mean(), "top-10 % IoU": group["top_k_iou"].mean(),
                     "spearman (labels agree)": same["spearman"].mean(),
                     "spearman (labels differ)": differ["spearman"].mean()})
    return pd.DataFrame(rows).set_index("true")


def pair_tile(face: np.ndarray, map_a: np.ndarray, map_b: np.ndarray, *, names: tuple[str, str] = ("A", "B"),
              lines: tuple[str, str, str] = ("", "", ""), size: int = 160, cmap: str | None = None) -> np.ndarray:
    """One square tile that reads on its own: the face (``lines[0]``, up to 2 lines, under it) beside model A's map, and
    under them the colour bar beside model B's map; each map titled with its model's name (``names``) and
    ``lines[1]`` / ``lines[2]`` (e.g. its label). Both maps on one scale: each map's share of its own
    positive mass per pixel, the top at the larger 99th percentile of the two. Returns uint8 H x W x 3."""
    import cv2
    from PIL import Image, ImageDraw

    from ferx.explain.overlay import DEFAULT_CMAP, MapScale, colormap, overlay

    cmap = cmap or DEFAULT_CMAP

    def share(m):
        m = np.clip(m, 0, None)
        return m / m.sum() if m.sum() > 0 else m

    sa, sb = share(map_a), share(map_b)
    top = float(max(np.percentile(sa, 99), np.percentile(sb, 99), 1e-12))
    scale = MapScale(0.0, top, False, 99.0)
    rgb = face if face.ndim == 3 else np.repeat(face[..., None], 3, 2)
    big = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_CUBIC)
    maps = [overlay(big, cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR), scale, cmap=cmap)
            for m in (sa, sb)]
    bar = np.full((size, size, 3), 255, np.uint8)
    ramp = (colormap(cmap)(np.linspace(0, 1, size - 24))[:, :3] * 255).astype(np.uint8)
    bar[size // 2 - 8:size // 2 + 8, 12:size - 12] = ramp[None]
    font = _tile_font(11)
    text_h, gap = 30, 4
    tile = Image.new("RGB", (2 * size + gap, 2 * (size + text_h) + gap), "white")
    panels = [(big, lines[0].split("\n")[:2]), (maps[0], [f"A {names[0]}", lines[1]]),
              (bar, []), (maps[1], [f"B {names[1]}", lines[2]])]
    draw = ImageDraw.Draw(tile)
    for k, (image, texts) in enumerate(panels):
        x, y = (k % 2) * (size + gap), (k // 2) * (size + text_h + gap)
        tile.paste(Image.fromarray(image), (x, y))
        for row, text in enumerate(t for t in texts if t):
            draw.text((x + 2, y + size + 2 + 13 * row), _fit(draw, text, font, size - 4), fill="black", font=font)
    y_bar = size + text_h + gap + size // 2
    for text, x, anchor in (("0", 12, "la"), (f"{top:.3g}", size - 12, "ra")):
        draw.text((x, y_bar + 12), text, fill="black", font=font, anchor=anchor)
    for row, text in enumerate(("both maps: share of the", "map's mass per pixel")):
        draw.text((12, y_bar - 40 + 13 * row), text, fill="black", font=font)
    return np.asarray(tile)


def _tile_font(px: int):
    from matplotlib import font_manager
    from PIL import ImageFont

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), px)


def _fit(draw, text: str, font, width: int) -> str:
    """``text``, cut with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
