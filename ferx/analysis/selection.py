"""A set of faces picked in any view (a lasso in an embedding, a confusion cell, a ranking): sorted,
summarised and exported the same way everywhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ferx.analysis.runs import ModelRun
from ferx.data.labels import in_canonical_order
from ferx.text import plural, unbroken

# name shown to the user -> (column, ascending); "as given": the view's own order (a ranking's, or sample ids)
SORTS = {
    "as given": (None, True),
    "sample id": ("sample", True),
    "confidence, highest first": ("confidence", False),
    "confidence, lowest first": ("confidence", True),
    "loss, highest first": ("loss", False),
    "margin, smallest first": ("margin", True),
}
EXPORT_COLUMNS = ["path", "true", "pred", "correct", "confidence", "margin", "loss"]


def selection_frame(run: ModelRun, ids, sort: str = "as given", extra: pd.DataFrame | None = None,
                    votes: np.ndarray | None = None) -> pd.DataFrame:
    """The rows of ``run`` for sample ``ids`` (duplicates dropped), sorted by one of :data:`SORTS`, with
    the probability columns; ``extra`` (indexed by sample) adds columns such as a ranking's scores;
    ``votes`` (the split's annotator vote shares, FERPlus) adds the votes' majority, the share of the
    prediction, and every class's share (``votes_<class>``) beside the probabilities."""
    if sort not in SORTS:
        raise ValueError(f"sort by one of {', '.join(SORTS)}, not {sort!r}")
    ids = pd.unique(np.asarray(ids, dtype=np.int64).ravel())
    if len(ids) and (ids.min() < 0 or ids.max() >= len(run)):
        raise ValueError(f"sample ids must lie in 0..{len(run) - 1}")
    frame = run.frame().loc[ids]
    if votes is not None:
        from ferx.analysis.labelnoise import vote_frame

        shares = pd.DataFrame(votes[ids], index=ids, columns=[f"votes_{c}" for c in run.dataset_classes])
        frame = frame.join(vote_frame(run, votes).loc[ids, ["vote_top", "vote_top_share", "vote_pred"]]).join(shares)
    if extra is not None:
        frame = frame.join(extra.drop(columns=[c for c in extra.columns if c in frame.columns]), how="left")
    column, ascending = SORTS[sort]
    if column == "sample":
        frame = frame.sort_index()
    elif column is not None:
        frame = frame.sort_values(column, ascending=ascending, kind="stable")
    probs = [c for c in frame.columns if c.startswith(("p_", "votes_"))]
    rest = [c for c in frame.columns if c not in EXPORT_COLUMNS + probs + ["entropy"]]
    return frame[EXPORT_COLUMNS + rest + probs]


def pair_frame(a: ModelRun, b: ModelRun, ids, sort: str = "as given", votes: np.ndarray | None = None) -> pd.DataFrame:
    """A selection of two models' predictions (A and B, as the A vs B views make one), in A's order under ``sort``:
    the face's path, true label and votes once, and each model's own columns (prediction, confidence, margin,
    loss, vote share of the prediction, probabilities) named after it: ``pred_<a>``, ``pred_<b>``, ``p_<class>_<b>``."""
    if a.name == b.name:
        raise ValueError(f"two different models, not {a.name} twice")
    frames = [selection_frame(a, ids, sort, votes=votes)]
    frames.append(selection_frame(b, frames[0].index, votes=votes))
    shared = [c for c in frames[0].columns if c in ("path", "true", "vote_top", "vote_top_share")
              or c.startswith("votes_")]
    own = [f.drop(columns=shared).rename(columns=lambda c, n=run.name: f"{c}_{n}") for f, run in zip(frames, (a, b))]
    probs = [f"p_{c}_{run.name}" for run in (a, b) for c in in_canonical_order(run.model_classes)]  # side by side
    joined = frames[0][shared].join(own)
    rest = [c for c in joined.columns if c not in probs and not c.startswith("votes_")]
    return joined[rest + probs + [c for c in shared if c.startswith("votes_")]]


def selection_summary(frame: pd.DataFrame) -> dict:
    """How many faces, the accuracy and mean confidence over them, and their mix of true classes. Accuracy (and
    accuracy against the votes) counts the faces the model scores, as every metric does: a face of a class the
    model lacks (FERPlus's contempt for a 7-class model) is neither right nor wrong; ``scored`` says how many."""
    judged = frame[frame["scored"]] if "scored" in frame else frame
    summary = {"n": len(frame), "scored": len(judged),
               "accuracy": float(judged["correct"].mean()) if len(judged) else float("nan"),
               "mean_confidence": float(frame["confidence"].mean()) if len(frame) else float("nan"),
               "true_classes": frame["true"].value_counts().to_dict()}
    if "vote_pred" in frame:  # FERPlus: accuracy against the annotators' votes, not only their majority
        summary["vote_weighted_accuracy"] = float(judged["vote_pred"].mean()) if len(judged) else float("nan")
    return summary


def summary_text(frame: pd.DataFrame, model: str, other: tuple[str, pd.DataFrame] | None = None) -> str:
    """:func:`selection_summary` as one line (Markdown); with ``other`` (a second model B and its
    :func:`selection_frame` of the same faces) both models' figures, ``model`` as A."""
    s = selection_summary(frame)
    if not s["n"]:
        return "No faces selected."
    mix = ", ".join(f"{c} {n}" for c, n in s["true_classes"].items())
    if other is None:
        return f"**{plural(s['n'], 'face')}** · {model}: {_scores(s)} · true classes: {mix}"
    name, other_frame = other
    return (f"**{plural(s['n'], 'face')}** · A {model}: {_scores(s)} · B {name}: "
            f"{_scores(selection_summary(other_frame))} · true classes: {mix}")


def _scores(s: dict) -> str:
    if not s["scored"]:
        return "no face of a class it knows, no accuracy"
    over = f" (of the {s['scored']:,} faces of its classes)" if s["scored"] < s["n"] else ""
    votes = (f", against the votes **{s['vote_weighted_accuracy']:.1%}**" if "vote_weighted_accuracy" in s else "")
    return f"accuracy **{s['accuracy']:.1%}**{over}{votes}, mean confidence **{s['mean_confidence']:.2f}**"


def caption(sample: int, row: pd.Series, other: pd.Series | None = None) -> str:
    """A gallery caption short enough for a 2-column gallery: ``#12 sad → angry 0.81``; with ``other`` (the same
    face's row of a second model, B) both models' labels and confidences: ``#12 sad · A angry 0.81 · B sad 0.64``."""
    if other is not None:  # wrapped, if at all, between the true label and each model's
        a = unbroken("A", row["pred"], f"{row['confidence']:.2f}")
        b = unbroken("B", other["pred"], f"{other['confidence']:.2f}")
        return f"{unbroken(f'#{sample}', row['true'])} · {a} · {b}"
    # a face of a class the model lacks is neither right nor wrong: its prediction, unjudged
    said = f"· {row['pred']}" if not row.get("scored", True) else "✓" if row["correct"] else f"→ {row['pred']}"
    return f"#{sample} {row['true']} {said} {row['confidence']:.2f}"


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """A selection as CSV (sample id, path, labels, prediction, scores), or any table with its index
    columns named, numbers to 4 decimals."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    unnamed = frame.index.nlevels == 1 and frame.index.name is None  # a selection: its index is the sample id
    frame.round(4).to_csv(path, index_label="sample" if unnamed else None)  # a table keeps its own index names
    return path
