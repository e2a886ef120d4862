"""Label noise in FERPlus: every face has 10 annotator votes, so a model can be scored against the
votes rather than only their majority, and faces whose label is doubtful can be ranked.

Votes are the split's soft targets (vote shares of the emotions, :mod:`ferx.data.datasets`), mapped
into the model's label space by class name (a 7-class model has no *contempt*: those votes are
shares no prediction can reach). Per face:

* ``vote_top`` / ``vote_second`` and their shares, and ``vote_pred``: the share of the votes for the
  model's prediction (the chance that a random annotator agrees with the model);
* ``label_error``: *the model confident against a split vote* — ``confidence x vote_pred / top share``
  when the model predicts another class than the majority (1: a sure model, and its class had as many
  votes as the majority's), else 0;
* ``ambiguity``: second share / top share (1: the votes split evenly over two classes).

:func:`vote_metrics` scores a model against the votes: majority accuracy, vote-weighted accuracy
(mean ``vote_pred``), plausible accuracy (some annotator chose the prediction), the soft
cross-entropy, and the annotators' own agreement (mean top share) as the ceiling a model that
always picked the majority would reach on vote-weighted accuracy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ferx.analysis.runs import ModelRun
from ferx.data.labels import canonical_name, in_canonical_order

RANKINGS = {"likely label errors": "label_error", "ambiguous faces": "ambiguity"}


def votes_in_model_space(run: ModelRun, soft_targets: np.ndarray | None) -> np.ndarray:
    """N x K vote shares in ``run``'s label space (K = its classes), matched by class name."""
    if soft_targets is None:
        raise ValueError(f"{run.dataset} has no annotator votes: label noise needs FERPlus (10 votes per face)")
    if len(soft_targets) != len(run):
        raise ValueError(f"{len(soft_targets)} vote rows for {len(run)} faces")
    source = {canonical_name(c): i for i, c in enumerate(run.dataset_classes)}
    votes = np.zeros((len(run), len(run.model_classes)), dtype=np.float64)
    for j, c in enumerate(run.model_classes):
        if canonical_name(c) in source:
            votes[:, j] = soft_targets[:, source[canonical_name(c)]]
    return votes


def vote_frame(run: ModelRun, soft_targets: np.ndarray | None) -> pd.DataFrame:
    """One row per face: labels, prediction, the votes' top two classes, and the scores above. The votes'
    classes and ``ambiguity`` are the dataset's (every class the annotators could choose: a 7-class model's
    view of them does not drop contempt); ``label_error`` is NaN where the model cannot be against the
    majority, a face it does not score or whose majority is a class it lacks."""
    model_votes = votes_in_model_space(run, soft_targets)
    votes = np.asarray(soft_targets, dtype=np.float64)
    names = np.asarray(run.dataset_classes)
    order = np.argsort(-votes, axis=1, kind="stable")
    top, second = order[:, 0], order[:, 1]
    rows = np.arange(len(run))
    top_share, second_share = votes[rows, top], votes[rows, second]
    vote_pred = model_votes[rows, run.preds]
    frame = run.frame()[["path", "true", "pred", "confidence"]].copy()
    known = {canonical_name(c) for c in run.model_classes}
    reachable = run.scored & np.array([canonical_name(c) in known for c in names[top]], dtype=bool)
    against = np.array([canonical_name(p) != canonical_name(t) for p, t in zip(frame["pred"], names[top])], dtype=bool)
    error = np.where(against, run.confidence * vote_pred / np.maximum(top_share, 1e-12), 0.0)
    frame = frame.assign(vote_top=names[top], vote_top_share=top_share, vote_second=names[second],
                         vote_second_share=second_share, vote_pred=vote_pred,
                         label_error=np.where(reachable, error, np.nan),
                         ambiguity=np.where(top_share > 0, second_share / np.maximum(top_share, 1e-12), 0.0))
    return frame


def ranking(run: ModelRun, soft_targets: np.ndarray | None, kind: str, k: int = 60) -> pd.DataFrame:
    """The ``k`` faces ranked highest by one of :data:`RANKINGS` (ties: the model's confidence); faces without
    a score (NaN: see :func:`vote_frame`) are not ranked."""
    if kind not in RANKINGS:
        raise ValueError(f"rank by one of {', '.join(RANKINGS)}, not {kind!r}")
    column = RANKINGS[kind]
    frame = vote_frame(run, soft_targets)
    frame = frame[frame[column] > 0].sort_values([column, "confidence"], ascending=False, kind="stable")
    return frame.head(k)


def vote_metrics(runs: list[ModelRun], soft_targets: np.ndarray | None) -> pd.DataFrame:
    """Per model: accuracy against the majority and against the vote distribution (see the module)."""
    rows = []
    for run in runs:
        votes = votes_in_model_space(run, soft_targets)
        keep = run.scored
        v, p = votes[keep], run.probs[keep].astype(np.float64)
        vote_pred = v[np.arange(len(v)), run.preds[keep]]
        reach = v.sum(1)
        rows.append({"model": run.name, "faces": int(keep.sum()),
                     "majority accuracy": float(run.correct[keep].mean()),
                     "vote-weighted accuracy": float(vote_pred.mean()),
                     "plausible accuracy": float((vote_pred > 0).mean()),
                     "annotator agreement": float(v.max(1).mean()),
                     "soft cross-entropy": float(-(v * np.log(np.clip(p, 1e-12, None))).sum(1).mean()),
                     "votes out of reach": float(max(0.0, 1 - reach.mean()))})
    return pd.DataFrame(rows).set_index("model")


def votes_figure(sample: int, runs: list[ModelRun], soft_targets: np.ndarray):
    """One face: the annotators' vote shares beside every model's probabilities, class by class."""
    import plotly.graph_objects as go

    from ferx.analysis.figures import model_look

    classes = in_canonical_order(runs[0].dataset_classes)
    votes = dict(zip(runs[0].dataset_classes, soft_targets[sample]))
    fig = go.Figure(go.Bar(x=classes, y=[votes[c] for c in classes], name="annotators (vote share)",
                           marker_color="black", opacity=0.75))
    for i, run in enumerate(runs):
        probs = dict(zip((canonical_name(c) for c in run.model_classes), run.probs[sample]))
        look = model_look(i)
        fig.add_trace(go.Bar(x=classes, y=[probs.get(canonical_name(c), 0.0) for c in classes], name=run.name,
                             marker=dict(color=look["colour"], pattern_shape=look["pattern"])))
    fig.update_layout(barmode="group", title=f"Face #{sample}: annotators' votes and each model's probabilities",
                      yaxis=dict(range=[0, 1], title="share / probability"), height=360,
                      margin=dict(l=40, r=20, t=50, b=40))
    return fig
