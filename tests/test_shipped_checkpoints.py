"""Every committed checkpoint: its card is complete, and it still scores what its card says.

Each card metric was measured by ``ferx evaluate --update-card`` on a full test split; the card
also keeps the accuracy on 500 images spread evenly over that split (every class of a split whose
files are ordered by class), re-measured here in seconds."""

import pytest

from ferx.checkpoint import read_card
from ferx.evaluate import CHECK_SLICE, evaluate_checkpoint

from conftest import CHECKPOINTS, DEVICE

SHIPPED = sorted(p for p in CHECKPOINTS.iterdir() if (p / "card.json").is_file())
MEASURED = [(p, m["dataset"], m["split"]) for p in SHIPPED for m in read_card(p).get("metrics", [])]


@pytest.mark.parametrize("ckpt", SHIPPED, ids=lambda p: p.name)
def test_card_says_where_the_checkpoint_comes_from_and_what_it_scores(ckpt):
    card = read_card(ckpt)
    for key in ("data", "recipe", "hardware", "wall_time_s", "metrics"):
        assert card.get(key) not in (None, "", []), f"{ckpt.name}: card has no {key}"
    for entry in card["metrics"]:
        assert entry["split"] == "test" and entry["n"] > 1000  # full test splits only
        assert {"accuracy", "macro_f1", "per_class", "check_slice"} <= set(entry)
        assert all("recall" in c for c in entry["per_class"].values())


@pytest.mark.parametrize("ckpt", SHIPPED, ids=lambda p: p.name)
def test_the_readme_is_the_card_as_rendered_now_with_its_architectures_design(ckpt):
    """README.md is generated from card.json (and the architecture's registry entry): an edit to either shows."""
    from ferx.checkpoint import render_card
    from ferx.models import get_model_info

    card = read_card(ckpt)
    assert (ckpt / "README.md").read_text() == render_card(card)
    design = get_model_info(card["model"]).design
    assert ("## Design" in render_card(card)) == bool(design)
    if card["model"] == "convcut":  # models.md: where the self-attention sits and why, in the docstring and card
        assert "14x14 tokens" in design and "batch" in design and "before DET" in design


@pytest.mark.parametrize("ckpt,dataset,split", MEASURED, ids=lambda v: getattr(v, "name", v))
def test_the_cards_per_class_figures_are_its_confusion_matrix_under_todays_rules(ckpt, dataset, split):
    """Precision, recall and F1 per class follow from the matrix ferx evaluate measured: a card written before a
    rule changed (a never-predicted class's precision is null, not 0) is caught here, not only in its README."""
    import numpy as np

    from ferx.analysis.metrics import classification_metrics

    entry = next(m for m in read_card(ckpt)["metrics"] if (m["dataset"], m["split"]) == (dataset, split))
    cm = np.asarray(entry["confusion_matrix"])
    rows, cols = np.nonzero(cm)
    y_true, y_pred = np.repeat(rows, cm[rows, cols]), np.repeat(cols, cm[rows, cols])
    again = classification_metrics(y_true, np.eye(len(cm))[y_pred], list(entry["per_class"]))
    assert again["per_class"] == entry["per_class"]
    assert again["accuracy"] == pytest.approx(entry["accuracy"]) and again["macro_f1"] == pytest.approx(entry["macro_f1"])


@pytest.mark.parametrize("ckpt,dataset,split", MEASURED, ids=lambda v: getattr(v, "name", v))
def test_checkpoint_scores_its_card_on_a_fixed_slice(ckpt, dataset, split, data_root):
    entry = next(m for m in read_card(ckpt)["metrics"] if (m["dataset"], m["split"]) == (dataset, split))
    precision = entry.get("compute_dtype", "fp32")  # re-measured as measured (cards before bf16 were fp32)
    result = evaluate_checkpoint(ckpt, dataset, split, data_root, device=DEVICE, limit=CHECK_SLICE, progress=False,
                                 precision=precision if DEVICE == "cpu" else "auto")
    assert result["n"] == entry["check_slice"]["n"]
    assert abs(result["accuracy"] - entry["check_slice"]["accuracy"]) <= 0.005
