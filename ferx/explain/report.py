"""One face, several models, several methods: probabilities, maps at crop resolution, faithfulness.

:func:`explain_photo` is the one "explain these models on this face" loop — ``ferx explain`` and
the app's Explain and Compare tabs call it — and :meth:`PhotoExplanation.to_dict`
its one JSON shape (the one ``ferx explain`` writes). It takes the target and contrast classes
once, by name in any spelling or by index, and resolves them for each model's own label set.
Method names come from the registry (:mod:`ferx.explain.methods`).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch

from ferx.checkpoint import LoadedModel
from ferx.data.labels import ALIASES as LABEL_ALIASES
from ferx.explain._common import fast_logits
from ferx.explain.attributions import DELETION_BASELINE
from ferx.explain.faithfulness import TOP_K, Faithfulness, deletion_insertion, map_agreement, deletion_budget
from ferx.explain.maps import ExplanationMap
from ferx.explain.methods import MethodOptions, get_method, map_caption
from ferx.explain.native import has_native_attention, native_attention
from ferx.explain.regions import face_labels, region_breakdown

# deletion/insertion of one map costs about this many map computations (2 x DELETION_STEPS forward passes,
# 32 on a small model, 16 on a large one, plus RANDOM_MAPS random maps; measured in the app: 5 light methods
# took 1.6 s without faithfulness, 14.5 s with)
FAITHFULNESS_COST = 8


def canonical_method(method: str) -> str:
    return get_method(method).name


def resolve_class(value: str | int | None, classes, what: str = "target", model: str = "this model") -> int | None:
    """``None``, an index (int or digits) into ``classes``, or a class name in any spelling
    ('happiness', 'Happy') -> the index in ``classes``."""
    if value is None:
        return None
    text = str(value).strip()
    if text.isdigit() and int(text) < len(classes):
        return int(text)
    name = LABEL_ALIASES.get(text.lower())
    if name in classes:
        return list(classes).index(name)
    raise ValueError(f"{what} {value!r}: not a class of {model} ({', '.join(classes)})")


def open_model(model: str, *, untrained: bool | None = None, seed: int = 0, device: str = "auto") -> LoadedModel:
    """A checkpoint folder or its name under the checkpoints root (its trained weights), or — only with
    ``untrained=True`` — a registry name built with random weights (seeded), labelled untrained everywhere
    it is shown. ``untrained=None``: the caller offers no ``--untrained``, and its messages do not suggest it."""
    from ferx.checkpoint import load_checkpoint
    from ferx.data.labels import get_label_set
    from ferx.device import resolve_device
    from ferx.models import create_model, get_model_info, list_models
    from ferx.paths import CARD, checkpoint_path, naming_a_checkpoint, no_checkpoint

    device = resolve_device(device)
    path = checkpoint_path(model)
    if (path / CARD).is_file():  # a checkpoint is always its trained weights; untrained= is for names
        return load_checkpoint(path, device)
    if model not in list_models():  # the message every command gives for a checkpoint it cannot find
        raise ValueError(no_checkpoint(model) + (f", or a registry name ({', '.join(list_models())}) with --untrained"
                                                 if untrained is not None else ""))
    if not untrained:
        raise ValueError(f"{model} is an architecture, not a trained model: {naming_a_checkpoint()}"
                         + (", or add --untrained to explain random weights (outputs are labelled untrained)"
                            if untrained is not None else ""))
    info = get_model_info(model)
    labels = get_label_set(info.default_labels)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = create_model(model, num_classes=len(labels)).to(device).eval()
    return LoadedModel(net, model, labels, info.input_spec, {}, None)


UNCERTAIN_MARGIN = 0.15  # top-1 minus top-2 probability below this: the model hesitates between two classes
CONFIDENT_TOP = 0.6  # a top probability at least this (and a clear margin): confident; below it: leaning


@dataclass
class ModelExplanation:
    """One model's reading of one face: probabilities, maps and their scores."""

    model: str  # display name (says UNTRAINED for random weights)
    name: str
    trained: bool
    classes: tuple[str, ...]
    probs: np.ndarray
    model_pixels: np.ndarray  # what the model scored (size x size, gray or RGB)
    maps: list[ExplanationMap] = field(default_factory=list)
    faithfulness: list[Faithfulness | None] = field(default_factory=list)
    channel_weights: dict[str, np.ndarray] = field(default_factory=dict)
    agreement: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    predict_s: float = 0.0

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.probs))

    @property
    def margin(self) -> float:
        """Top-1 minus top-2 probability."""
        top2 = np.sort(self.probs)[-2:]
        return float(top2[1] - top2[0])

    @property
    def certainty(self) -> str:
        """``uncertain`` (margin under :data:`UNCERTAIN_MARGIN`: the top two classes are close),
        ``confident`` (top probability at least :data:`CONFIDENT_TOP`) or ``leaning``."""
        if self.margin < UNCERTAIN_MARGIN:
            return "uncertain"
        return "confident" if float(np.max(self.probs)) >= CONFIDENT_TOP else "leaning"

    def to_dict(self) -> dict:
        return {
            "model": self.model, "architecture": self.name, "trained": self.trained,
            "probabilities": {c: round(float(p), 6) for c, p in zip(self.classes, self.probs)},
            "predicted": self.classes[self.predicted], "margin": round(self.margin, 6), "certainty": self.certainty,
            "predict_s": round(self.predict_s, 6),
            "maps": [{**m.to_dict(), "faithfulness": None if f is None else f.to_dict()}
                     for m, f in zip(self.maps, self.faithfulness)],
            "channel_weights": {k: [round(float(v), 5) for v in w] for k, w in self.channel_weights.items()},
            "agreement": self.agreement, "notes": self.notes,
        }


def explain_face(em: LoadedModel, face, methods, *, target: int | None = None, contrast: int | None = None,
                 faithfulness: bool = True, baseline: str = DELETION_BASELINE, deletion_steps: int | None = None,
                 n_random: int | None = None, ig_steps: int = MethodOptions.ig_steps,
                 progress: Callable[[float, str], None] | None = None) -> ModelExplanation:
    """Every requested map of ``face`` (a :class:`ferx.faces.Face`) for one model, each with its
    deletion/insertion scores next to random maps', and the pairwise agreement of the maps.
    ``progress(fraction, what)`` is told before each step, faithfulness weighted by its cost
    (:data:`FAITHFULNESS_COST` map computations per map).

    Deletion/insertion defaults: :func:`ferx.explain.faithfulness.deletion_budget` (fewer steps and random maps for
    Conv-cut-sized models).
    """
    methods = [get_method(m) for m in dict.fromkeys(canonical_method(m) for m in methods)]  # unique, in order
    native_asked = any(m.family == "native" for m in methods)
    default_steps, default_random = deletion_budget(em.model)
    deletion_steps = deletion_steps if deletion_steps is not None else default_steps  # 0 is refused, not replaced
    n_random = n_random if n_random is not None else default_random
    x = face.model_input(em.input_spec).to(em.device)
    maps, channel_weights, notes = [], {}, []
    if native_asked and has_native_attention(em.model):
        native = native_attention(em.model, x)[0]  # the same pass gives the prediction
        logits, predict_s = native.logits, native.elapsed_s
        maps += native.maps
        channel_weights.update(native.channel_weights)
    else:
        start = time.perf_counter()
        logits = fast_logits(em.model, x)[0].cpu().numpy()
        predict_s = time.perf_counter() - start
        if native_asked:
            notes.append(f"{em.name} has no native attention; native maps skipped")
    probs = np.exp(logits - logits.max())
    out = ModelExplanation(em.display, em.name, em.trained, em.classes, probs / probs.sum(),
                           face.model_pixels(em.input_spec), channel_weights=channel_weights, notes=notes,
                           predict_s=predict_s)
    computed = [m for m in methods if m.family != "native"]  # native maps came with the prediction
    units = len(computed) + (FAITHFULNESS_COST * (len(maps) + len(computed)) if faithfulness else 0)
    done = 0

    def step(what: str, cost: float = 1) -> None:
        nonlocal done
        if progress is not None:
            progress(done / max(units, 1), f"{em.display}: {what}")
        done += cost

    for method in computed:
        step(method.title)
        maps += method(em.model, x, targets=target, contrast=contrast, options=MethodOptions(ig_steps=ig_steps))
    labels = face_labels(face)  # facial regions over the crop, from the face's landmarks
    for m in maps:
        m.model = em.display
        m.with_labels(em.classes).with_crop(face.crop_size)
        m.regions = region_breakdown(m.crop_values, labels, m.signed)
        out.maps.append(m)
        if faithfulness:
            step(f"deletion/insertion of {map_caption(m)}", FAITHFULNESS_COST)
        out.faithfulness.append(deletion_insertion(em.model, x, m, target=target, baseline=baseline,
                                                   n_steps=deletion_steps, n_random=n_random, spec=em.input_spec)
                                if faithfulness else None)
    for i in range(len(out.maps)):
        for j in range(i + 1, len(out.maps)):
            out.agreement.append({"a": out.maps[i].method, "b": out.maps[j].method,
                                  **map_agreement(out.maps[i], out.maps[j])})
    return out


def cross_model_agreement(rows: list[ModelExplanation], top_k: float = TOP_K) -> list[dict]:
    """Agreement of the same method on two models, compared on the photo crop (both maps are
    registered to it, whatever each model's input size)."""
    out = []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            for a in rows[i].maps:
                b = next((m for m in rows[j].maps if m.method == a.method), None)
                if b is not None and a.crop_values is not None and b.crop_values is not None:
                    out.append({"method": a.method, "a": rows[i].model, "b": rows[j].model,
                                **map_agreement(a.crop_values, b.crop_values, top_k)})
    return out


@dataclass
class PhotoExplanation:
    """Every model's explanation of one face of a photo."""

    search: object  # ferx.faces.FaceSearch
    face: int  # which of search.faces
    methods: list[str]
    rows: list[ModelExplanation]

    def to_dict(self, scale: str = "per-map") -> dict:
        """The JSON of ``ferx explain`` (README, "Explanations")."""
        return {"photo": self.search.photo.to_dict(), "no_face": self.search.no_face,
                "faces": [f.to_dict() for f in self.search.faces], "face": self.face, "methods": self.methods,
                "scale": scale, "models": [row.to_dict() for row in self.rows],
                "agreement_across_models": cross_model_agreement(self.rows)}


def explain_photo(models: Iterable, search, face: int | None, methods, *, target: str | int | None = None,
                  contrast: str | int | None = None, using: Callable = nullcontext, **options) -> PhotoExplanation:
    """Explain face number ``face`` of ``search`` (a :class:`ferx.faces.FaceSearch`) with every model.

    ``models``: :class:`LoadedModel` objects, or any handles that ``using(handle)`` — a context
    manager — turns into one for as long as it is explained (the app's exclusive model lock).
    ``target`` / ``contrast``: a class name in any spelling or an index, resolved per model; a
    contrast ("target over contrast") needs a target. ``options`` go to :func:`explain_face`.
    """
    methods = list(dict.fromkeys(canonical_method(m) for m in methods))
    if contrast is not None and target is None:
        raise ValueError("a contrast class needs a target class (explain TARGET over CONTRAST)")
    index = search.pick(face)
    rows = []
    models = list(models)
    progress = options.pop("progress", None)
    for i, handle in enumerate(models):
        if progress is not None:  # this model's share of the whole run
            options["progress"] = lambda f, what, i=i: progress((i + f) / len(models), what)
        with using(handle) as em:
            target_i = resolve_class(target, em.classes, "target", em.display)
            contrast_i = resolve_class(contrast, em.classes, "contrast", em.display)
            if contrast_i is not None and contrast_i == target_i:
                raise ValueError(f"target and contrast are the same class ({em.classes[target_i]}): a class over "
                                 "itself explains nothing; choose another contrast class, or none")
            rows.append(explain_face(em, search.faces[index], methods, target=target_i, contrast=contrast_i,
                                     **options))
    return PhotoExplanation(search, index, methods, rows)
