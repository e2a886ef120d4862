"""The PNG panel of ``ferx explain``: the photo and its faces, then one row per model — the
pixels the model scored, every map over the photo crop with its colour bar and faithfulness, and
the class probabilities."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from ferx.data.labels import in_canonical_order
from ferx.explain.methods import map_caption, units
from ferx.explain.overlay import (ALPHA, CLIP_PERCENTILE, DEFAULT_CMAP, DEFAULT_SIGNED_CMAP, colormap, flat_range,
                                  map_scales, overlay)
from ferx.explain.regions import breakdown_line
from ferx.explain.report import ModelExplanation
from ferx.text import plural

DPI = 150  # the PNG's resolution: 5.5-pt region lines come out about 11 px tall
KIND_TEXT = {"native": "native attention", "cam": "post-hoc CAM", "attribution": "post-hoc attribution"}


def render_panel(path: str | Path, search, face_index: int, rows: list[ModelExplanation], **options) -> Path:
    """The panel written to ``path`` (PNG, or any format matplotlib writes); ``options`` as :func:`panel_figure`."""
    fig = panel_figure(search, face_index, rows, **options)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    return path


def panel_figure(search, face_index: int, rows: list[ModelExplanation], *, scale: str = "per-map",
                 clip_percentile: float = CLIP_PERCENTILE, alpha: float = ALPHA, cmap: str | None = None):
    """The panel as a matplotlib figure (not pyplot's: requests draw at once, and nothing needs closing)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    face = search.faces[face_index]
    maps = [m for row in rows for m in row.maps]  # columns: one per method, the models' own attention first
    methods = list(dict.fromkeys([m.method for m in maps if m.kind == "native"] + [m.method for m in maps]))
    has_channels = any(row.channel_weights for row in rows)
    ncols = 1 + len(methods) + 1 + int(has_channels)
    fig = Figure(figsize=(2.9 * max(ncols, 4), 2.2 + 3.3 * len(rows)), dpi=DPI)
    outer = fig.add_gridspec(2, 1, height_ratios=[0.6, len(rows)], hspace=0.1)  # the header close to the rows
    head = outer[0].subgridspec(1, max(ncols, 4), wspace=0.85)
    body = outer[1].subgridspec(len(rows), max(ncols, 4), hspace=0.45, wspace=0.85)  # room for titles and regions
    scales = map_scales(rows, scale, clip_percentile)

    # header: the photo with every face found, the explained one in red
    ax = fig.add_subplot(head[0, 0:2])
    ax.imshow(search.photo.rgb)
    s = search.photo.scale
    for i, f in enumerate(search.faces):
        x0, y0, x1, y1 = (v * s for v in f.crop_box)
        colour = "red" if i == face_index else "yellow"
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1.5))
        at_top = y0 < 0.08 * search.photo.rgb.shape[0]  # above the box would run into the title: inside it
        ax.text(x0, y0, f" {i}", color=colour, fontsize=8, va="top" if at_top else "bottom")
        if f.landmarks is not None:
            ax.scatter(f.landmarks[:, 0] * s, f.landmarks[:, 1] * s, s=4, c=colour)
    ax.set_title(f"{Path(search.photo.name).name}: {plural(len(search.faces), 'face')}; face {face_index} explained",
                 fontsize=8)
    ax.axis("off")
    ax = fig.add_subplot(head[0, 2:])
    ax.axis("off")
    lines = [f"face {face_index}: " + ("the whole image, scored as a face" if face.whole_image else
                                       f"box {list(face.box)}, crop {list(face.crop_box)} ({face.crop_size} px)")]
    for row in rows:
        top = np.argsort(-row.probs)[:3]
        lines.append(f"{row.model}: " + ", ".join(f"{row.classes[k]} {row.probs[k]:.2f}" for k in top))
        lines += [f"  note: {n}" for n in row.notes]
        if not row.trained:
            lines.append("  UNTRAINED — random weights: these maps show an untrained network, not a model")
    if search.note:
        lines.insert(1, f"note: {search.note}")
    lines.append(f"facial regions ({'detected' if face.landmark_source != 'template' else 'mean-face template'} "
                 "landmarks): positive mass share per region (its area share) under each map")
    lines.append(f"scale: {scale} ({clip_percentile:g}th percentile clip)"
                 + ("; faithfulness: deletion AUC lower is better, insertion higher; 'rnd' = random map"
                    if any(f is not None for row in rows for f in row.faithfulness) else ""))
    ax.text(0, 1, "\n".join(lines), va="top", fontsize=7.5, family="monospace", wrap=True)

    for r, row in enumerate(rows, start=1):
        ax = fig.add_subplot(body[r - 1, 0])
        px = row.model_pixels
        ax.imshow(px, cmap="gray" if px.ndim == 2 else None, vmin=0, vmax=255)
        size = px.shape[0]
        ax.set_title(f"{row.model}\nas scored: {size}x{size} {'gray' if px.ndim == 2 else 'RGB'}", fontsize=7,
                     color="black" if row.trained else "red")
        ax.axis("off")
        for m, sc, faith in zip(row.maps, scales[r - 1], row.faithfulness):
            ax = fig.add_subplot(body[r - 1, 1 + methods.index(m.method)])
            values = m.crop_values if m.crop_values is not None else m.at_size(face.crop_size)
            cm = cmap or (DEFAULT_SIGNED_CMAP if sc.signed else DEFAULT_CMAP)
            ax.imshow(overlay(face.crop, values, sc, cmap=cm, alpha=alpha))
            title = map_caption(m) + (f" (p {row.probs[m.target]:.2f})" if m.target is not None else "")  # a target the
            title += f"\n{KIND_TEXT[m.kind]}, {m.source_shape[0]}x{m.source_shape[1]}"  # model gives p 0 says little
            if flat := flat_range(sc):  # the range its colour bar spans
                title += f"\n{flat}"
            if faith is not None:
                title += (f"\ndel {faith.deletion_auc:.2f}{faith.random_text('deletion')} "
                          f"ins {faith.insertion_auc:.2f}{faith.random_text('insertion')}")
            ax.set_title(title, fontsize=6.5)
            ax.axis("off")
            if m.regions is not None:  # facial-region breakdown: mass share (area share) of the top regions
                warn = m.regions["warning"]
                ax.text(0.5, -0.03, breakdown_line(m.regions).replace(", ", "\n") + ("\nOFF-FACE SHORTCUT?" if warn else ""),
                        transform=ax.transAxes, ha="center", va="top", fontsize=5.5,
                        color="red" if warn else "black")
            bar = fig.colorbar(ScalarMappable(Normalize(sc.vmin, sc.vmax), colormap(cm)), ax=ax, fraction=0.046,
                               pad=0.02)
            bar.ax.tick_params(labelsize=5)
            bar.set_label(textwrap.fill(units(m.method), 28), fontsize=5, labelpad=2)
            bar.formatter.set_powerlimits((-3, 4))
            bar.ax.yaxis.get_offset_text().set_fontsize(5)
        for method in methods:
            if not any(m.method == method for m in row.maps):
                ax = fig.add_subplot(body[r - 1, 1 + methods.index(method)])
                ax.text(0.5, 0.5, "n/a", ha="center", va="center", fontsize=8, color="gray")
                ax.axis("off")
        ax = fig.add_subplot(body[r - 1, 1 + len(methods)])
        shown = [list(row.classes).index(c) for c in in_canonical_order(row.classes)]  # every model's in one order
        colours = ["tab:red" if k == row.predicted else "tab:blue" for k in shown]
        ax.barh(range(len(shown)), np.asarray(row.probs)[shown], color=colours)
        ax.set_yticks(range(len(shown)), [row.classes[k] for k in shown], fontsize=6.5)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.tick_params(axis="x", labelsize=6)
        ax.set_title("probabilities" + ("" if row.trained else " (UNTRAINED)"), fontsize=7,
                     color="black" if row.trained else "red")
        if row.channel_weights:
            ax = fig.add_subplot(body[r - 1, 2 + len(methods)])
            for block, w in row.channel_weights.items():  # channels are unordered: points, not a line
                ax.plot(np.arange(len(w)), w, ".", markersize=3, label=block)
            ax.set_ylim(0, 1)
            ax.set_ylabel("weight (sigmoid)", fontsize=6)
            ax.set_title("MassAtt channel weights", fontsize=7)
            ax.set_xlabel("channel", fontsize=6)
            ax.tick_params(labelsize=5.5)
            ax.legend(fontsize=5.5)
    return fig
