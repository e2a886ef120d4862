"""Is a map faithful to the model? Deletion / insertion AUC next to a random map, and agreement.

Deletion (Petsiuk et al., RISE 2018): remove pixels in the order the map ranks them (highest
first), replacing them by the *baseline*, and follow the softmax probability of the target class
after each of ``n_steps`` equal steps. A faithful map makes it fall fast: lower AUC is better.
Insertion: start from the baseline and put the pixels back in the same order: higher is better.

Baseline: by default the image under a Gaussian blur of sigma = size / 16 pixels (4 px at 64 x 64,
14 px at 224 x 224) — it keeps the face's overall brightness but removes the shapes of eyes, brows
and mouth, so "removed" pixels do not create the sharp black holes a zero baseline would (holes
the model may react to for their own sake). ``"black"`` and ``"mean"`` (mid-gray) are the
alternatives; the result names the one used.

Random reference: the same test on ``n_random`` maps of uniform noise drawn at the map's *own*
resolution (8 x 8 for LANMSFF block 4, 4 x 4 for a mini-Xception CAM, full size for pixel maps)
and resized the same way — a smooth map is compared with an equally smooth random one, not with
pixel noise that no coarse map could resemble. A map that does not beat it says nothing.

All the perturbed images of one test (every step of the map and of the random maps) are scored as
batches under ``torch.inference_mode``; no gradient is involved.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn

from ferx.explain._common import as_batch, check_classes, fast_logits
from ferx.memory_format import SMALL_MODEL, fast_inference
from ferx.explain.attributions import DELETION_BASELINE, describe_baseline, pixel_baseline
from ferx.explain.maps import ExplanationMap, resize_map

TOP_K = 0.1  # the share of pixels whose overlap two maps' agreement reports (top-10 % IoU)
# Deletion/insertion steps and random maps per test: "large" for models of ferx.memory_format.SMALL_MODEL
# parameters or more (Conv-cut: each step is a 12.6 G multiply-add forward pass), "small" for the others
DELETION_STEPS = {"small": 32, "large": 16}
RANDOM_MAPS = {"small": 3, "large": 1}


def deletion_budget(model: nn.Module) -> tuple[int, int]:
    """The deletion steps and random maps a test of ``model``'s maps takes by default (:data:`DELETION_STEPS`)."""
    size = "large" if sum(p.numel() for p in model.parameters()) >= SMALL_MODEL else "small"
    return DELETION_STEPS[size], RANDOM_MAPS[size]


@dataclass
class Faithfulness:
    deletion_auc: float  # lower is better
    insertion_auc: float  # higher is better
    random_deletion_auc: float  # mean over the random maps
    random_insertion_auc: float
    deletion_curve: list[float]  # probability of the target after 0, 1/n_steps, ..., 1 of the pixels
    insertion_curve: list[float]
    target: int
    baseline: str
    n_steps: int
    n_random: int
    elapsed_s: float
    score: str = "softmax probability of the target class"

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("deletion_curve", "insertion_curve"):
            d[k] = [round(v, 5) for v in d[k]]
        if not self.n_random:  # no random maps to compare with: null, not NaN (which is not JSON)
            d["random_deletion_auc"] = d["random_insertion_auc"] = None
        return d

    def random_text(self, score: str) -> str:
        """`` (rnd 0.41)``: the random maps' mean score beside the map's, or nothing where none were drawn."""
        value = {"deletion": self.random_deletion_auc, "insertion": self.random_insertion_auc}[score]
        return f" (rnd {value:.2f})" if self.n_random else ""


def _probs(model: nn.Module, batch: torch.Tensor, target: int, batch_size: int) -> np.ndarray:
    out = []
    with fast_inference(model, batch) as batch:
        for i in range(0, len(batch), batch_size):
            out.append(torch.softmax(model(batch[i:i + batch_size]).float(), 1)[:, target])
    return torch.cat(out).cpu().numpy()


def _ranks(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rank of every pixel, 0 = highest value; ties broken at random (a flat map is a random order)."""
    flat = values.reshape(-1)
    order = np.lexsort((rng.random(flat.size), -flat))
    ranks = np.empty(flat.size, dtype=np.int64)
    ranks[order] = np.arange(flat.size)
    return ranks.reshape(values.shape)


def deletion_insertion(model: nn.Module, x: torch.Tensor, explanation: ExplanationMap | np.ndarray,
                       target: int | None = None, *, baseline: str = DELETION_BASELINE,
                       n_steps: int = DELETION_STEPS["small"], n_random: int = RANDOM_MAPS["small"],
                       seed: int = 0, batch_size: int = 128, spec=None) -> Faithfulness:
    """Deletion and insertion AUC of one map for one image, beside the same for random maps.

    ``x``: the normalised model input (1 x C x H x W). ``explanation``: an :class:`ExplanationMap`
    (its ``values`` are used) or an H x W array. ``target``: the class whose probability is
    followed; default the map's target, else the predicted class.
    """
    if n_steps < 1 or n_random < 0:
        raise ValueError(f"deletion/insertion takes 1 step or more and 0 random maps or more, not {n_steps} and {n_random}")
    x = as_batch(x, model)
    if x.shape[0] != 1:
        raise ValueError("deletion_insertion scores one image at a time (its steps form the batch)")
    h, w = x.shape[-2:]
    if isinstance(explanation, ExplanationMap):
        values, source_shape = explanation.values, explanation.source_shape
        target = explanation.target if target is None else target
    else:
        values = np.asarray(explanation, dtype=np.float32)
        source_shape = values.shape
    if values.shape != (h, w):
        values = resize_map(values, (h, w))
    if spec is None:
        from ferx.models import get_model_info
        spec = get_model_info(model.ferx_name).input_spec
    start = time.perf_counter()
    if target is None:
        target = int(fast_logits(model, x).argmax(1)[0])
    check_classes(model, target)
    rng = np.random.default_rng(seed)
    maps = [values] + [resize_map(rng.random(source_shape).astype(np.float32), (h, w)) for _ in range(n_random)]
    ranks = torch.from_numpy(np.stack([_ranks(m, rng) for m in maps]))  # M x H x W
    ref = pixel_baseline(x, spec, baseline)  # 1 x C x H x W
    counts = torch.from_numpy(np.round(np.linspace(0, h * w, n_steps + 1)).astype(np.int64))
    # only the inner steps differ between maps: step 0 and the last step are shared
    inner = counts[1:-1]
    masks = (ranks[:, None] < inner[None, :, None, None]).unsqueeze(2).to(x.device, x.dtype)  # M x S-1 x 1 x H x W
    deleted = x * (1 - masks) + ref * masks
    inserted = ref * (1 - masks) + x * masks
    m, s = masks.shape[:2]
    batch = torch.cat([x, ref, deleted.reshape(m * s, *x.shape[1:]), inserted.reshape(m * s, *x.shape[1:])])
    p = _probs(model, batch, target, batch_size)
    p_full, p_ref = p[0], p[1]
    p_del = p[2:2 + m * s].reshape(m, s)
    p_ins = p[2 + m * s:].reshape(m, s)
    del_curves = np.concatenate([np.full((m, 1), p_full), p_del, np.full((m, 1), p_ref)], 1)
    ins_curves = np.concatenate([np.full((m, 1), p_ref), p_ins, np.full((m, 1), p_full)], 1)
    dx = 1.0 / n_steps
    del_auc = np.trapezoid(del_curves, dx=dx, axis=1)
    ins_auc = np.trapezoid(ins_curves, dx=dx, axis=1)
    return Faithfulness(
        deletion_auc=float(del_auc[0]), insertion_auc=float(ins_auc[0]),
        random_deletion_auc=float(del_auc[1:].mean()) if n_random else float("nan"),
        random_insertion_auc=float(ins_auc[1:].mean()) if n_random else float("nan"),
        deletion_curve=del_curves[0].tolist(), insertion_curve=ins_curves[0].tolist(), target=int(target),
        baseline=describe_baseline(baseline, h),
        n_steps=n_steps, n_random=n_random, elapsed_s=time.perf_counter() - start)


def top_region(values: np.ndarray, top_k: float = TOP_K) -> np.ndarray | None:
    """A map's top ``top_k`` fraction of pixels as a flat mask, ties included: every pixel at least the k-th
    largest value, none at the map's lowest value (a ReLU'd map's zeros are no evidence: a map with fewer than
    k pixels above it has only those on top). None for a constant map, which has no top."""
    v = np.asarray(values).reshape(-1)
    k = max(1, int(round(top_k * v.size)))
    region = (v >= np.partition(v, v.size - k)[v.size - k]) & (v > v.min())
    return region if region.any() else None


def map_agreement(a: ExplanationMap | np.ndarray, b: ExplanationMap | np.ndarray, top_k: float = TOP_K) -> dict:
    """How much two maps agree: Spearman rank correlation of their pixels, and the IoU of their
    top ``top_k`` fraction of pixels (:func:`top_region`; None, null in JSON, when either map is constant).
    Maps are compared at the first map's resolution (the model input size for two ExplanationMaps of one
    model; use ``crop_values`` for two models)."""
    from scipy.stats import spearmanr
    from sklearn.metrics import jaccard_score

    va = a.values if isinstance(a, ExplanationMap) else np.asarray(a, dtype=np.float32)
    vb = b.values if isinstance(b, ExplanationMap) else np.asarray(b, dtype=np.float32)
    if vb.shape != va.shape:
        vb = resize_map(vb, va.shape)
    top_a, top_b = top_region(va, top_k), top_region(vb, top_k)
    # a constant map (e.g. Grad-CAM of a randomised head) ranks nothing: 0, without scipy's warning
    rho = spearmanr(va.reshape(-1), vb.reshape(-1)).statistic if np.ptp(va) and np.ptp(vb) else np.nan
    return {"spearman": float(rho) if np.isfinite(rho) else 0.0, "top_k": top_k,
            "top_k_iou": None if top_a is None or top_b is None else float(jaccard_score(top_a, top_b))}
