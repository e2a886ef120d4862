"""Classification metrics (scikit-learn) and expected calibration error."""

from __future__ import annotations

import numpy as np
import pandas as pd


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float | None:
    """ECE with equal-width confidence bins: sum over bins of |accuracy - confidence| x bin share."""
    return table_ece(reliability_table(probs, y_true, n_bins))


def table_ece(table: pd.DataFrame) -> float | None:
    """The ECE of a :func:`reliability_table` (its empty bins weigh nothing); None without a face: nothing to
    measure (null in JSON, "—" in a legend), not a perfect calibration."""
    t = table[table["count"] > 0]
    if t.empty:
        return None
    return float((t["count"] * (t["accuracy"] - t["confidence"]).abs()).sum() / t["count"].sum())


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, classes: tuple[str, ...] | list[str],
                           n_bins: int = 15) -> dict:
    """Accuracy, macro-F1, per-class precision / recall / F1 / support, the confusion matrix (rows true,
    columns predicted) and ECE. A per-class value with nothing to measure is None (null in JSON, blank in a
    table), not 0: the recall and F1 of a class without faces (CK+'s neutral), the precision of a class never
    predicted. Macro-F1 averages the classes that have faces in ``y_true``: a class of
    the model's that the data lacks (CK+ has no neutral) would add an F1 of 0 and say nothing about the
    model (faces wrongly given it already cost their own class's recall); ``macro_f1_classes`` counts them.
    No face at all (none of a class the model knows): ``n`` 0, every value None (scikit-learn refuses it)."""
    # here, not at the top: the app imports this module as it starts, and scikit-learn took 0.66 s of it
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    labels = list(range(len(classes)))
    y_pred = probs.argmax(1)
    n = int(len(y_true))
    if n:
        precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    else:
        precision = recall = f1 = support = np.zeros(len(labels))
    present = [i for i in labels if support[i] > 0]
    predicted = np.bincount(y_pred, minlength=len(labels))
    return {
        "n": n,
        "accuracy": float(accuracy_score(y_true, y_pred)) if n else None,
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)) if n else None,
        "macro_f1_classes": len(present),
        "ece": expected_calibration_error(probs, y_true, n_bins) if n else None,
        "ece_bins": n_bins,
        "per_class": {c: {"precision": float(precision[i]) if predicted[i] else None,
                          "recall": float(recall[i]) if support[i] else None,
                          "f1": float(f1[i]) if support[i] else None,
                          "support": int(support[i])} for i, c in enumerate(classes)},
        "confusion_matrix": (confusion_matrix(y_true, y_pred, labels=labels) if n
                             else np.zeros((len(labels), len(labels)), np.int64)).tolist(),
        "classes": list(classes),
    }


def reliability_table(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> pd.DataFrame:
    """Per confidence bin: mean confidence, accuracy and count (the reliability curve)."""
    conf = probs.max(1)
    correct = probs.argmax(1) == y_true
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        mask = bins == b
        rows.append({"lower": edges[b], "upper": edges[b + 1], "count": int(mask.sum()),
                     "confidence": float(conf[mask].mean()) if mask.any() else np.nan,
                     "accuracy": float(correct[mask].mean()) if mask.any() else np.nan})
    return pd.DataFrame(rows)


def negative_log_likelihood(logits: np.ndarray, y_true: np.ndarray, temperature: float = 1.0) -> float:
    z = logits / temperature
    z = z - z.max(1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-log_probs[np.arange(len(y_true)), y_true].mean())


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """Temperature scaling (Guo et al. 2017): the T > 0 minimising validation NLL of softmax(logits / T)."""
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(lambda log_t: negative_log_likelihood(logits, y_true, float(np.exp(log_t))),
                             bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))
