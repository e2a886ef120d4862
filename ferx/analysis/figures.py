"""Plotly figures for the analysis views. Every point or cell carries the ids needed to open the
faces behind it (``customdata``), so a UI can link a click to a gallery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ferx.analysis.runs import ModelRun


def confusion_figure(counts: pd.DataFrame, normalized: pd.DataFrame | None = None, title: str = "") -> go.Figure:
    """Heat-map of a confusion (or model-vs-model) matrix: colour = row share, text = count."""
    shares = normalized if normalized is not None else counts.div(counts.sum(axis=1).replace(0, np.nan), axis=0).fillna(0)
    rows, cols = list(counts.index), list(counts.columns)
    custom = np.array([[[r, c] for c in cols] for r in rows], dtype=object)
    fig = go.Figure(go.Heatmap(
        z=shares.values, x=cols, y=rows, text=counts.values, texttemplate="%{text}", colorscale="Blues",
        zmin=0, zmax=1, customdata=custom, colorbar=dict(title="row share"),
        hovertemplate=f"{counts.index.name}: %{{y}}<br>{counts.columns.name}: %{{x}}<br>"
                      "count %{text}<br>row share %{z:.2f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title=counts.columns.name, yaxis_title=counts.index.name,
                      yaxis_autorange="reversed", width=620, height=560)
    return fig


def reliability_figure(tables: dict[str, pd.DataFrame]) -> go.Figure:
    """Accuracy against confidence per bin, one line per model, with the diagonal of perfect calibration."""
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dash", color="gray"),
                               name="perfectly calibrated"))
    for name, table in tables.items():
        t = table[table["count"] > 0]
        fig.add_trace(go.Scatter(x=t["confidence"], y=t["accuracy"], mode="lines+markers", name=name,
                                 customdata=t["count"], hovertemplate="confidence %{x:.2f}<br>accuracy %{y:.2f}"
                                                                      "<br>%{customdata} images<extra></extra>"))
    fig.update_layout(title="Reliability", xaxis_title="confidence", yaxis_title="accuracy",
                      xaxis_range=[0, 1], yaxis_range=[0, 1], width=560, height=500)
    return fig


def embedding_figure(coords: np.ndarray, run: ModelRun, color_by: str = "true", method: str = "") -> go.Figure:
    """Scatter of a 2-D projection; colour by ``true``, ``pred`` or ``correct``; hover shows the
    sample id, true and predicted class and confidence; ``customdata[0]`` is the sample id."""
    frame = run.frame()
    if color_by not in ("true", "pred", "correct"):
        raise ValueError(f"color_by must be true, pred or correct, not {color_by!r}")
    groups = frame[color_by].map({True: "correct", False: "wrong"}) if color_by == "correct" else frame[color_by]
    fig = go.Figure()
    for value in sorted(groups.unique()):
        idx = np.flatnonzero(groups.values == value)
        fig.add_trace(go.Scattergl(
            x=coords[idx, 0], y=coords[idx, 1], mode="markers", name=str(value), marker=dict(size=4, opacity=0.7),
            customdata=np.stack([idx, frame["true"].values[idx], frame["pred"].values[idx],
                                 frame["confidence"].values[idx]], 1),
            hovertemplate="sample %{customdata[0]}<br>true %{customdata[1]}<br>predicted %{customdata[2]}"
                          "<br>confidence %{customdata[3]:.2f}<extra></extra>"))
    fig.update_layout(title=f"{run.name}: {method.upper()} of embeddings, coloured by {color_by}",
                      width=720, height=600, legend_title=color_by, dragmode="lasso")
    return fig


def write_figure(fig: go.Figure, path: str | Path) -> Path:
    """Write ``.html`` (self-contained) or ``.png`` (needs kaleido and a Chrome/Chromium browser)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".html":
        fig.write_html(path, include_plotlyjs=True)
    elif path.suffix == ".png":
        try:
            fig.write_image(path, scale=2)
        except Exception as err:  # kaleido raises several types when no browser is found
            raise RuntimeError(f"PNG export of {path.name} failed ({type(err).__name__}: {err}). It needs kaleido and "
                               "a Chrome or Chromium browser (Debian: apt install chromium); HTML export always works.") from None
    else:
        raise ValueError(f"unsupported figure format {path.suffix!r}: use .html or .png")
    return path
