"""Plotly figures for the analysis views. Every point or cell carries the ids needed to open the
faces behind it (``customdata``), so a UI can link a click to a gallery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ferx.analysis.runs import ModelRun
from ferx.cache import atomic_path
from ferx.data.datasets import split_title
from ferx.data.labels import CLASS_COLOURS, in_canonical_order
from ferx.text import number


def confusion_figure(counts: pd.DataFrame, normalized: pd.DataFrame | None = None, title: str = "") -> go.Figure:
    """Heat-map of a confusion (or model-vs-model) matrix: colour = row share, text = count. A row without
    faces (a class the split lacks: CK+ has no neutral) is left blank, not drawn as a row of zeros."""
    shares = normalized if normalized is not None else counts.div(counts.sum(axis=1).replace(0, np.nan), axis=0).fillna(0)
    rows, cols = list(counts.index), list(counts.columns)
    custom = np.array([[[r, c] for c in cols] for r in rows], dtype=object)
    z = shares.to_numpy(dtype=float, copy=True)
    z[counts.to_numpy().sum(axis=1) == 0] = np.nan
    fig = go.Figure(go.Heatmap(
        z=z, x=cols, y=rows, text=counts.values, texttemplate="%{text}", colorscale="Blues",
        zmin=0, zmax=1, customdata=custom, colorbar=dict(title="row share"),
        hovertemplate=f"{counts.index.name}: %{{y}}<br>{counts.columns.name}: %{{x}}<br>"
                      "count %{text}<br>row share %{z:.2f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title=counts.columns.name, yaxis_title=counts.index.name,
                      yaxis_autorange="reversed", width=620, height=560)
    return fig


# how the i-th model of a figure that draws several is drawn (the reliability curves, the vote-vs-model bars): Okabe &
# Ito's colours (the first four 17.9 CIELAB units apart or more for dichromats; plotly's cycle has a blue and a purple
# 1.6 apart for protanopes), and a marker, dash and bar pattern of its own, to tell the models apart without colour
MODEL_LOOKS = (("#0072b2", "circle", "solid", ""), ("#e69f00", "square", "dash", "/"),
               ("#009e73", "diamond", "dot", "x"), ("#cc79a7", "triangle-up", "dashdot", "."),
               ("#56b4e9", "cross", "longdash", "\\"), ("#d55e00", "star", "longdashdot", "+"))


def model_look(i: int) -> dict:
    """The i-th model's colour, marker symbol, line dash and bar pattern (from :data:`MODEL_LOOKS`, cycled)."""
    return dict(zip(("colour", "symbol", "dash", "pattern"), MODEL_LOOKS[i % len(MODEL_LOOKS)]))


def reliability_figure(runs: list[ModelRun]) -> go.Figure:
    """Accuracy against confidence per bin, one line per model run on one split (its ECE in the legend;
    a marker's diameter grows with the square root of its bin's face count, so its area with the count:
    a bin of 3 faces does not look like one of 300),
    with the diagonal of perfect calibration. The title names the split; the legend the faces each model scored."""
    from ferx.analysis.metrics import table_ece
    from ferx.analysis.tables import reliability

    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dash", color="gray"),
                               name="perfectly calibrated"))
    scaled = any(r.temperature != 1.0 for r in runs)
    for i, run in enumerate(runs):
        table = reliability(run)
        look = model_look(i)
        t = table[table["count"] > 0]
        name = run.name + (f", T = {run.temperature:.2f}" if scaled else "")
        size = 5 + 17 * np.sqrt(t["count"] / t["count"].max())
        fig.add_trace(go.Scatter(x=t["confidence"], y=t["accuracy"], mode="lines+markers",
                                 name=f"{name}: {int(t['count'].sum())} faces, ECE {number(table_ece(table), 3)}",
                                 marker=dict(size=size, symbol=look["symbol"], color=look["colour"]),
                                 line=dict(color=look["colour"], dash=look["dash"]),
                                 customdata=t["count"], hovertemplate="confidence %{x:.2f}<br>accuracy %{y:.2f}"
                                                                      "<br>%{customdata} faces<extra></extra>"))
    title = f"Reliability on {split_title(runs[0].dataset, runs[0].split)}" + (" (temperature-scaled)" if scaled else "")
    fig.update_layout(title=title, xaxis_title="confidence (mean top probability in the bin)",
                      yaxis_title="accuracy in the bin", xaxis_range=[0, 1.02], yaxis_range=[0, 1.02],
                      width=560, height=620, legend=dict(orientation="h", yanchor="top", y=-0.15, x=0),
                      margin=dict(b=120))
    return fig


# how the points of an embedding can be coloured: name -> what the colour says (the legend's title)
COLOUR_BY = {
    "true": "true class",
    "pred": "predicted class",
    "correct": "prediction right or wrong",
    "confidence": "confidence (top probability)",
    "disagreement": "how many other models predict another class",
}
SELECT_GL_ABOVE = 5000  # points; above this WebGL (Scattergl) draws them, below SVG (selection works in both)


def point_colours(run: ModelRun, color_by: str, others: list[ModelRun] = ()) -> pd.Series:
    """The colour value of every sample: a class name, right/wrong, the confidence, or how many of
    ``others`` (other models run on the same split) predict a different class than ``run``."""
    frame = run.frame()
    if color_by not in COLOUR_BY:
        raise ValueError(f"colour by one of {', '.join(COLOUR_BY)}, not {color_by!r}")
    if color_by == "correct":
        return pd.Series(np.where(~frame["scored"], "not a class of the model",
                                  np.where(frame["correct"], "correct", "wrong")), index=frame.index)
    if color_by == "disagreement":
        from ferx.analysis.tables import predicted_names

        others = [o for o in others if o.name != run.name]
        if not others:
            raise ValueError("colouring by disagreement needs a second model in the analysis")
        mine = predicted_names(run)
        count = sum((predicted_names(o) != mine).astype(int) for o in others)
        return pd.Series(np.where(count == 0, "all agree", [f"{c} of {len(others)} disagree" for c in count]),
                         index=frame.index)
    return frame[color_by]


def embedding_figure(coords: np.ndarray, run: ModelRun, color_by: str = "true", method: str = "",
                     others: list[ModelRun] = (), highlight=None, photo: tuple[float, float] | None = None,
                     photo_label: str = "your photo") -> go.Figure:
    """Scatter of a 2-D projection coloured as :data:`COLOUR_BY` says; hover shows the sample id,
    true and predicted class and confidence; ``customdata[0]`` is the sample id (a lasso or box
    selection reports it). ``highlight``: sample ids drawn on top, ringed (a confusion cell's faces);
    ``photo``: a placed face's position, a star (sample id -1: never part of a selection)."""
    frame = run.frame()
    colour = point_colours(run, color_by, others)
    custom = np.stack([frame.index.values, frame["true"].values, frame["pred"].values,
                       frame["confidence"].round(3).values], 1).astype(object)
    hover = ("sample %{customdata[0]}<br>true %{customdata[1]}<br>predicted %{customdata[2]}"
             "<br>confidence %{customdata[3]:.2f}<extra></extra>")
    scatter = go.Scattergl if len(frame) > SELECT_GL_ABOVE else go.Scatter
    fig = go.Figure()
    if color_by == "confidence":
        fig.add_trace(scatter(x=coords[:, 0], y=coords[:, 1], mode="markers", name="faces", customdata=custom,
                              hovertemplate=hover, marker=dict(size=5, opacity=0.8, color=colour.values, cmin=0,
                                                               cmax=1, colorscale="Viridis",
                                                               colorbar=dict(title="confidence"))))
    else:  # classes in the canonical order and colours (the same in every figure), other values sorted
        for value in in_canonical_order(sorted(colour.unique())):
            idx = np.flatnonzero(colour.values == value)
            fig.add_trace(scatter(x=coords[idx, 0], y=coords[idx, 1], mode="markers", name=str(value),
                                  marker=dict(size=5, opacity=0.75, color=CLASS_COLOURS.get(value)),
                                  customdata=custom[idx], hovertemplate=hover))
    if highlight is not None and len(highlight):
        idx = np.asarray(highlight, dtype=np.int64)
        fig.add_trace(scatter(x=coords[idx, 0], y=coords[idx, 1], mode="markers", name=f"highlighted ({len(idx)})",
                              customdata=custom[idx], hovertemplate=hover,
                              marker=dict(size=10, color="rgba(0,0,0,0)", line=dict(width=2, color="black"))))
    if photo is not None:
        fig.add_trace(scatter(x=[photo[0]], y=[photo[1]], mode="markers", name=photo_label,
                              customdata=[[-1, "", "", 0.0]], hovertemplate=f"{photo_label}<extra></extra>",
                              marker=dict(symbol="star", size=20, color="gold", line=dict(width=2, color="black"))))
    fig.update_layout(title=f"{run.name}: {method.upper()} of embeddings, coloured by {COLOUR_BY[color_by]}"
                            f"<br><sub>{split_title(run.dataset, run.split)}, {len(run)} faces</sub>",
                      height=560, legend_title=COLOUR_BY[color_by], dragmode="lasso", margin=dict(l=40, r=20, t=70, b=40),
                      modebar_orientation="v",  # down the right edge: across the top it covered the title's end
                      xaxis_title=f"{method.upper()} 1", yaxis_title=f"{method.upper()} 2")
    return fig


def _shared_plotly_js(folder: Path) -> None:
    """The whole ``plotly.min.js`` of this plotly in ``folder``, written atomically. plotly writes it only where no
    file of that name is: one cut short (258,048 bytes of 4.7 MB, by a full disk or a run stopped while writing it)
    was kept by every later analysis there, and each of its figures drew nothing."""
    from plotly.offline import get_plotlyjs

    js = get_plotlyjs().encode()
    bundle = folder / "plotly.min.js"
    if bundle.is_file() and bundle.stat().st_size == len(js) and bundle.read_bytes() == js:
        return
    with atomic_path(bundle) as tmp:
        tmp.write_bytes(js)


def write_figure(fig: go.Figure, path: str | Path, shared_js: bool = False) -> Path:
    """Write ``.html`` or ``.png`` (needs kaleido and a Chrome/Chromium browser). An HTML file holds
    plotly.js (4.8 MB in plotly 7.1) itself, or with ``shared_js`` loads the one ``plotly.min.js`` written beside
    it: for a folder of figures, which then opens offline as a whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".html":
        if shared_js:
            _shared_plotly_js(path.parent)
        fig.write_html(path, include_plotlyjs="directory" if shared_js else True)
    elif path.suffix == ".png":
        try:
            fig.write_image(path, scale=2)
        except Exception as err:  # kaleido raises several types when no browser is found
            raise RuntimeError(f"PNG export of {path.name} failed ({type(err).__name__}: {err}). It needs kaleido and "
                               "a Chrome or Chromium browser (Debian: apt install chromium); HTML export always works.") from None
    else:
        raise ValueError(f"unsupported figure format {path.suffix!r}: use .html or .png")
    return path
