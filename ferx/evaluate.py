"""``ferx evaluate``: score a checkpoint on a dataset split."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ferx.analysis.metrics import classification_metrics
from ferx.checkpoint import LoadedModel, load_checkpoint, read_card, write_card
from ferx.data.datasets import load_split, split_title
from ferx.data.labels import in_canonical_order, label_mapping
from ferx.data.packed import PackedSplit, faces_note, left_out, pack_options, pack_split, spread_indices
from ferx.device import resolve_device
from ferx.inference import BATCH_SIZE, predict_probs


CHECK_SLICE = 500


def score_packed(loaded: LoadedModel, packed: PackedSplit, batch_size: int = BATCH_SIZE, progress: bool = False,
                 precision: str = "auto") -> dict:
    """Metrics of a loaded checkpoint on packed images, in the model's label space.

    When the dataset's labels differ from the model's (a 7-class FER-2013 model on 8-class
    FERPlus), targets are mapped by name and samples whose class the model lacks are excluded
    and counted in ``n_excluded``. ``check_slice`` is the accuracy on ``CHECK_SLICE`` images spread
    evenly over the split (:meth:`PackedSplit.spread`, every class of a class-ordered split): the
    card keeps it so a test can re-measure a checkpoint in seconds.
    """
    to_model = label_mapping(packed.labels, loaded.labels)
    targets = to_model[packed.targets]
    keep = targets >= 0
    if not keep.any():  # nothing to measure: no accuracy, no F1, no ECE
        theirs = in_canonical_order(dict.fromkeys(np.asarray(packed.classes)[packed.targets]))
        raise ValueError(f"none of these {len(packed)} faces ({', '.join(theirs)}) is of a class {loaded.display} "
                         f"knows ({', '.join(in_canonical_order(loaded.labels.classes))})")
    probs = predict_probs(loaded.model, loaded.input_spec, packed.images[keep], batch_size, progress,
                          loaded.compute_dtype(precision))
    metrics = classification_metrics(targets[keep], probs, loaded.labels.classes)
    metrics["n_excluded"] = int((~keep).sum())
    in_slice = np.isin(keep.nonzero()[0], spread_indices(len(packed), CHECK_SLICE))
    correct = probs.argmax(1)[in_slice] == targets[keep][in_slice]
    metrics["check_slice"] = {"spread_images": min(CHECK_SLICE, len(packed)), "n": int(in_slice.sum()),
                              "accuracy": float(correct.mean()) if len(correct) else float("nan")}
    return metrics


def evaluate_checkpoint(checkpoint: str | Path, dataset: str, split: str = "test", data_root: str | Path | None = None,
                        device: str = "auto", limit: int | None = None, batch_size: int = BATCH_SIZE,
                        progress: bool = True, faces: str = "given", face: str = "best",
                        detector: str | None = None, precision: str = "auto") -> dict:
    """``faces="detect"``: the dataset's images are photos; their faces are found and cropped as the app
    does (:func:`ferx.data.packed.pack_split`), photos without one counted in ``no_face``."""
    dev = resolve_device(device)
    loaded = load_checkpoint(checkpoint, dev)
    options = pack_options([loaded.input_spec], faces, face, detector)
    packed = pack_split(load_split(dataset, split, data_root), progress=progress, **options).spread(limit)
    start = time.perf_counter()
    metrics = score_packed(loaded, packed, batch_size, progress, precision)
    return {"checkpoint": str(checkpoint), "checkpoint_sha256": loaded.sha256, "model": loaded.name,
            "dataset": packed.dataset, "split": packed.split, "limit": limit, "dataset_fingerprint": packed.fingerprint,
            "unreadable_skipped": packed.skipped, "faces": packed.faces, "no_face": packed.no_face, "device": str(dev),
            "compute_dtype": loaded.compute_dtype(precision),
            "seconds": round(time.perf_counter() - start, 2), **metrics}


CARD_METRIC_KEYS = ("dataset", "split", "n", "n_excluded", "accuracy", "macro_f1", "ece", "per_class",
                    "confusion_matrix", "dataset_fingerprint", "check_slice", "compute_dtype")


def card_worthy(dataset: str, split: str, limit: int | None = None, faces: str = "given") -> None:
    """ValueError unless an evaluation of ``dataset``/``split`` can go on a card: a whole split of a
    registered dataset (one anyone can name and re-measure), one split of it, its faces as given."""
    from ferx.data.datasets import SPLITS, list_datasets

    if dataset not in list_datasets():
        raise ValueError(f"only registered datasets ({', '.join(list_datasets())}) go on a card: {dataset} is a folder "
                         "or zip of your own (evaluate it without --update-card)")
    one = [s for s in SPLITS if s != "all"]  # "all" mixes the faces a model trained on with those it is tested on
    if split not in one:
        raise ValueError(f"only one split ({', '.join(one)}) goes on a card, not {split}: {split} mixes the "
                         "faces a model trained on with those it is tested on")
    if limit is not None:
        raise ValueError("only full-split evaluations go on a card (drop --limit)")
    if faces != "given":
        raise ValueError("only the dataset's own face crops go on a card (drop --faces)")


def record_on_card(checkpoint: str | Path, result: dict) -> None:
    """Store a full-split evaluation on the checkpoint's card (replacing the same dataset/split)."""
    card_worthy(result["dataset"], result["split"], result.get("limit"), result.get("faces", "given"))
    card = read_card(checkpoint)
    runs = [m for m in card.get("metrics", []) if (m["dataset"], m["split"]) != (result["dataset"], result["split"])]
    entry = {k: result[k] for k in CARD_METRIC_KEYS}
    entry["measured_with"] = (f"ferx evaluate {checkpoint} --dataset {result['dataset']} --split {result['split']} "
                              f"--precision {result['compute_dtype']}")
    card["metrics"] = runs + [entry]
    write_card(checkpoint, card)


def summary_line(result: dict) -> str:
    recall = ", ".join(f"{c} {m['recall']:.3f}" if m["support"] else f"{c} — (no faces)"
                       for c, m in ((c, result["per_class"][c]) for c in in_canonical_order(result["per_class"])))
    absent = sum(not m["support"] for m in result["per_class"].values())
    over = f" (over the {len(result['per_class']) - absent} classes with faces)" if absent else ""
    excluded = f" ({result['n_excluded']} excluded: class not in the model's label set)" if result["n_excluded"] else ""
    found = faces_note(result.get("faces", "given"), result.get("no_face", 0))
    device = f" on {result['device']}" if result.get("device") else ""  # what --device auto chose
    name = f"{Path(result['checkpoint']).name} ({result['model']})"  # the checkpoint: two may share an architecture
    return (f"{name} on {split_title(result['dataset'], result['split'])}: {result['n']} images{left_out(result.get('unreadable_skipped', 0))}{excluded}{found}\n"
            f"  accuracy {100 * result['accuracy']:.2f} % ({result.get('compute_dtype', 'fp32')}{device})  macro-F1 {result['macro_f1']:.4f}{over}  ECE {result['ece']:.4f}\n"
            f"  recall: {recall}")


__all__ = ["CHECK_SLICE", "card_worthy", "evaluate_checkpoint", "record_on_card", "score_packed", "summary_line"]
