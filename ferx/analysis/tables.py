"""pandas tables over :class:`~ferx.analysis.runs.ModelRun` results: metrics, confusion, failures."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ferx.analysis.metrics import classification_metrics, negative_log_likelihood, reliability_table
from ferx.analysis.runs import ModelRun
from ferx.data.labels import in_canonical_order


def _scored(run: ModelRun):
    keep = run.scored
    return run.model_targets[keep], run.probs[keep], run.logits[keep]


def summary_table(runs: list[ModelRun]) -> pd.DataFrame:
    """One row per model: images scored and left out, accuracy, macro-F1, NLL, ECE, temperature and the
    number format the model computed in (``compute_dtype``, as on its card: fp32, or bf16 autocast). A model that scores none of the faces (none is of
    a class it knows) has n 0 and blank measures."""
    rows = []
    for run in runs:
        y, probs, logits = _scored(run)
        m = classification_metrics(y, probs, run.model_classes)
        rows.append({"model": run.name, "n": m["n"], "n_excluded": int((~run.scored).sum()),
                     "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                     "nll": negative_log_likelihood(logits, y, run.temperature) if m["n"] else None, "ece": m["ece"],
                     "temperature": run.temperature, "compute_dtype": run.compute_dtype})
    table = pd.DataFrame(rows).set_index("model")
    measures = ["accuracy", "macro_f1", "nll", "ece"]
    table[measures] = table[measures].astype(float)  # None: NaN, blank
    return table


def per_class_table(run: ModelRun) -> pd.DataFrame:
    """Precision, recall, F1 and support per class (canonical order); blank where a value has nothing
    to measure: recall and F1 of a class without faces (CK+'s neutral), precision of one never predicted."""
    y, probs, _ = _scored(run)
    m = classification_metrics(y, probs, run.model_classes)
    table = pd.DataFrame.from_dict(m["per_class"], orient="index").rename_axis("class")
    table[["precision", "recall", "f1"]] = table[["precision", "recall", "f1"]].astype(float)  # None: NaN, blank
    return table.loc[in_canonical_order(run.model_classes)]


def reliability(run: ModelRun, n_bins: int = 15) -> pd.DataFrame:
    y, probs, _ = _scored(run)
    return reliability_table(probs, y, n_bins)


# ------------------------------------------------------------------ confusion matrices

def confusion_frame(run: ModelRun, normalize: bool = False) -> pd.DataFrame:
    """Rows: true class, columns: predicted class (model label space, in the canonical class order:
    :func:`ferx.data.labels.in_canonical_order`); row-normalised on request."""
    k = len(run.model_classes)
    y, _, _ = _scored(run)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (y, run.preds[run.scored]), 1)
    order = in_canonical_order(run.model_classes)
    frame = pd.DataFrame(counts, index=pd.Index(run.model_classes, name="true"),
                         columns=pd.Index(run.model_classes, name="predicted")).loc[order, order]
    if normalize:
        return frame.div(frame.sum(axis=1).replace(0, np.nan), axis=0).fillna(0.0)
    return frame


def cell_samples(run: ModelRun, true: str, predicted: str) -> np.ndarray:
    """Sample ids in one confusion-matrix cell."""
    t, p = run.model_classes.index(true), run.model_classes.index(predicted)
    return np.flatnonzero(run.scored & (run.model_targets == t) & (run.preds == p))


def _check_aligned(a: ModelRun, b: ModelRun) -> None:
    if a.dataset_fingerprint != b.dataset_fingerprint or not np.array_equal(a.paths, b.paths):
        raise ValueError(f"{a.name} and {b.name} were not run on the same split; run both on one dataset split")


def cross_model_frame(a: ModelRun, b: ModelRun) -> pd.DataFrame:
    """Rows: model A's prediction, columns: model B's prediction, counts over every sample. Both axes hold
    the classes of either model, in the canonical order (a class one model lacks: its row or column is
    zeros), so agreement is the diagonal whatever order or classes their label sets have (FERPlus starts
    with neutral and has contempt, FER-2013 starts with angry; CK+ has contempt and no neutral)."""
    from sklearn.metrics import confusion_matrix  # not at the top: the app imports this module as it starts

    _check_aligned(a, b)
    classes = in_canonical_order(dict.fromkeys(a.model_classes + b.model_classes))
    counts = confusion_matrix(predicted_names(a), predicted_names(b), labels=classes)
    return pd.DataFrame(counts, index=pd.Index(classes, name=f"{a.name} predicted"),
                        columns=pd.Index(classes, name=f"{b.name} predicted"))


def predicted_names(run: ModelRun) -> np.ndarray:
    return np.asarray(run.model_classes)[run.preds]


def agreement(a: ModelRun, b: ModelRun) -> float:
    """Share of samples where both models predict the same class (compared by name)."""
    _check_aligned(a, b)
    return float((predicted_names(a) == predicted_names(b)).mean())


def cross_cell_samples(a: ModelRun, b: ModelRun, pred_a: str, pred_b: str) -> np.ndarray:
    _check_aligned(a, b)
    return np.flatnonzero((predicted_names(a) == pred_a) & (predicted_names(b) == pred_b))


# ------------------------------------------------------------------ failure cases

FAILURE_KINDS = ("confident_mistakes", "highest_loss", "lowest_margin")


def failures(run: ModelRun, kind: str, k: int = 50) -> pd.DataFrame:
    """Ranked samples: ``confident_mistakes`` (wrong, most confident first), ``highest_loss``,
    ``lowest_margin`` (closest call between the top two classes)."""
    frame = run.frame()[run.scored]
    if kind == "confident_mistakes":
        ranked = frame[~frame["correct"]].sort_values("confidence", ascending=False, kind="stable")
    elif kind == "highest_loss":
        ranked = frame.sort_values("loss", ascending=False, kind="stable")
    elif kind == "lowest_margin":
        ranked = frame.sort_values("margin", ascending=True, kind="stable")
    else:
        raise ValueError(f"unknown failure kind {kind!r}; expected one of {FAILURE_KINDS}")
    return ranked.head(k)


def disagreements(a: ModelRun, b: ModelRun, k: int | None = 50) -> pd.DataFrame:
    """Samples the two models label differently, those where both are most sure of themselves first: the first
    ``k``, or all of them (``k=None``: as many as the off-diagonal of :func:`cross_model_frame` counts)."""
    _check_aligned(a, b)
    differ = predicted_names(a) != predicted_names(b)
    frame = pd.DataFrame({
        "path": a.paths, "true": np.asarray(a.dataset_classes)[a.targets],
        f"pred_{a.name}": predicted_names(a), f"confidence_{a.name}": a.confidence,
        f"pred_{b.name}": predicted_names(b), f"confidence_{b.name}": b.confidence,
        "min_confidence": np.minimum(a.confidence, b.confidence),
    }).rename_axis("sample")[differ]
    ranked = frame.sort_values("min_confidence", ascending=False, kind="stable")
    return ranked if k is None else ranked.head(k)
