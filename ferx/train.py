"""``ferx train``: recipes, on-device augmentation, a resumable training loop.

The whole packed training split lives on the training device as uint8; each batch is
preprocessed and augmented there (affine warps with ``grid_sample``), so a GPU never waits on
image decoding. Model selection uses the validation split only; the test split is never read
here. Every epoch appends a line to ``metrics.jsonl`` and rewrites ``state.pt`` so ``--resume``
continues where a run stopped; the best epoch's weights become a ferx checkpoint with a card.
"""

from __future__ import annotations

import json
import math
import pickle
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ferx.cache import atomic_path
from ferx.checkpoint import CARD, load_checkpoint, save_checkpoint, sha256_file
from ferx.data.carry import read_carry
from ferx.data.datasets import load_split
from ferx.data.labels import LabelSet, label_mapping
from ferx.data.packed import PackedSplit, pack_split
from ferx.data.preprocess import to_model_input
from ferx.device import autocast_bf16, describe_hardware, resolve_device
from ferx.inference import predict_logits
from ferx.memory_format import training_memory_format
from ferx.models import create_model, get_model_info, list_models


@dataclass(frozen=True)
class Recipe:
    name: str
    model: str
    description: str
    epochs: int
    batch_size: int
    optimizer: str  # adam | adamw
    lr: float
    weight_decay: float = 0.0
    schedule: str = "plateau"  # plateau (on val loss) | cosine (per step, after linear warm-up)
    warmup_epochs: float = 0
    plateau_factor: float = 0.1
    plateau_patience: int = 9
    early_stop_patience: int | None = 14  # epochs without val-loss improvement
    augment: str = "lanmsff"  # a key of AUGMENTS
    label_smoothing: float = 0.0
    soft_labels: bool = False  # FERPlus vote distributions as targets
    mixup_alpha: float = 0.0
    ema_decay: float = 0.0  # > 0: validate, select and export a moving average of the weights (timm ModelEmaV3)
    # the first head_epochs train everything but the model's pre-trained backbone (ModelInfo.backbone), frozen, with
    # dropout head_drop_rate; then everything, with the model's own dropout (Conv-cut, models.md: 0.1, then 0.2)
    head_epochs: int = 0
    head_drop_rate: float = 0.1
    model_config: dict = field(default_factory=dict)
    input_size: int | None = None  # override the model's input size (e.g. 112 for Conv-cut)


RECIPES = {r.name: r for r in (
    Recipe("lanmsff", "lanmsff",
           "Authors' recipe (models.md §1): Adam 1e-3, batch 32, <=100 epochs, ReduceLROnPlateau x0.1 "
           "patience 9 and early stopping patience 14 on validation loss, cross-entropy. Their offline 4x "
           "augmentation is applied online: each image, each epoch, is one of original / horizontal flip / "
           "rotation by an integer angle in [-15, 15] then resize 72 + centre crop 64 / resize 72 + random 64 crop.",
           epochs=100, batch_size=32, optimizer="adam", lr=1e-3),
    Recipe("lanmsff_short", "lanmsff",
           "Short schedule for a fixed CPU budget (not the authors' 100-epoch recipe): Adam 2e-3, batch 64, "
           "half an epoch of linear warm-up then cosine decay to 0 over the run, the authors' 4x augmentation "
           "applied online, FERPlus vote distributions as targets where the dataset has them (majority-vote "
           "class indices otherwise), no early stopping.",
           epochs=10, batch_size=64, optimizer="adam", lr=2e-3, schedule="cosine", warmup_epochs=0.5,
           early_stop_patience=None, soft_labels=True),
    Recipe("convcut", "convcut",
           "From-scratch ConvNeXt recipe: AdamW 1e-3 (wd 0.05), 5 warm-up epochs then cosine, batch 128, "
           "random resized crop (scale 0.7-1), flip, rotation +-15 deg, random erasing 0.25, label smoothing "
           "0.1, mixup 0.2, stochastic depth 0.1.",
           epochs=60, batch_size=128, optimizer="adamw", lr=1e-3, weight_decay=0.05, schedule="cosine",
           warmup_epochs=5, early_stop_patience=None, augment="strong", label_smoothing=0.1, mixup_alpha=0.2,
           model_config={"drop_path_rate": 0.1}),
    Recipe("mini_xception", "mini_xception",
           "Reference recipe for the small mini-Xception: Adam 1e-3, batch 32, plateau decay and early stopping "
           "on validation loss, the LANMSFF augmentation.",
           epochs=100, batch_size=32, optimizer="adam", lr=1e-3),
)}


# ---------------------------------------------------------------- augmentation (batched, on device)

def affine_warp(x: torch.Tensor, angle_deg: torch.Tensor, scale: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor,
                flip: torch.Tensor) -> torch.Tensor:
    """Per-sample rotation, zoom (scale > 1 zooms in), translation (in [-1, 1] units) and mirror."""
    a = torch.deg2rad(angle_deg)
    cos, sin = torch.cos(a) / scale, torch.sin(a) / scale
    sign = 1.0 - 2.0 * flip.float()
    theta = torch.stack([torch.stack([cos * sign, -sin, tx], 1), torch.stack([sin * sign, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def lanmsff_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One of the authors' four variants per image: original, flip, rotate+zoom 72/64, zoom 72/64 + random crop."""
    n, dev = x.shape[0], x.device
    kind = torch.randint(0, 4, (n,), generator=gen, device=dev)
    zoom = torch.where(kind >= 2, torch.full((n,), 72 / 64, device=dev), torch.ones(n, device=dev))
    angle = torch.where(kind == 2, torch.randint(-15, 16, (n,), generator=gen, device=dev).float(), torch.zeros(n, device=dev))
    max_shift = 1 - 64 / 72  # a 64 crop anywhere inside the 72 resize
    shift = (torch.rand(2, n, generator=gen, device=dev) * 2 - 1) * max_shift * (kind == 3)
    return affine_warp(x, angle, zoom, shift[0], shift[1], kind == 1)


def strong_augment(x: torch.Tensor, gen: torch.Generator, erase_p: float = 0.25) -> torch.Tensor:
    """Random resized crop (area 0.7-1), flip, rotation +-15 deg, then random erasing."""
    n, dev = x.shape[0], x.device
    u = torch.rand(5, n, generator=gen, device=dev)
    zoom = 1 / torch.sqrt(0.7 + 0.3 * u[0])
    max_shift = 1 - 1 / zoom
    x = affine_warp(x, (u[1] * 2 - 1) * 15, zoom, (u[2] * 2 - 1) * max_shift, (u[3] * 2 - 1) * max_shift, u[4] < 0.5)
    # random erasing: one rectangle of 2-20 % of the area, filled with noise
    h, w = x.shape[-2:]
    e = torch.rand(5, n, generator=gen, device=dev)
    area = 0.02 + 0.18 * e[0]
    aspect = torch.exp((e[1] * 2 - 1) * math.log(3))
    eh, ew = (torch.sqrt(area * aspect) * h).clamp(max=h), (torch.sqrt(area / aspect) * w).clamp(max=w)
    y0, x0 = e[2] * (h - eh), e[3] * (w - ew)
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    box = ((ys >= y0.view(-1, 1, 1)) & (ys < (y0 + eh).view(-1, 1, 1)) & (xs >= x0.view(-1, 1, 1))
           & (xs < (x0 + ew).view(-1, 1, 1)) & (e[4] < erase_p).view(-1, 1, 1))
    noise = torch.randn(x.shape, generator=gen, device=dev)
    return torch.where(box.unsqueeze(1), noise, x)


def mirror_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image or its horizontal mirror (p = 0.5), nothing else: faces at the scale the model is tested at."""
    flip = torch.rand(x.shape[0], generator=gen, device=x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


AUGMENTS = {"lanmsff": lanmsff_augment, "strong": strong_augment, "mirror": mirror_augment, "none": lambda x, gen: x}


# ---------------------------------------------------------------- training loop

def _targets(packed: PackedSplit, recipe: Recipe) -> torch.Tensor:
    """Class indices, or vote distributions when the recipe asks for soft labels (the data must have them)."""
    if recipe.soft_labels:
        return torch.as_tensor(packed.soft_targets, dtype=torch.float32)
    return torch.as_tensor(packed.targets, dtype=torch.int64)


def _loss(logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
    return F.cross_entropy(logits.float(), target, label_smoothing=smoothing)


def _packed_splits(dataset: str, splits: tuple[str, ...], data_root, carried, progress: bool) -> list[PackedSplit]:
    if carried is None:
        return [pack_split(load_split(dataset, split, data_root), progress=progress) for split in splits]
    packs = read_carry(carried)
    missing = [s for s in splits if s not in packs]
    if missing or any(p.dataset != dataset for p in packs.values()):
        raise ValueError(f"{Path(carried).name} holds {sorted(packs)} of {next(iter(packs.values())).dataset}; "
                         f"asked for {list(splits)} of {dataset}")
    return [packs[s] for s in splits]


def validate(model: nn.Module, spec, val: PackedSplit, batch_size: int = 512, precision: str = "auto") -> dict:
    logits = predict_logits(model, spec, val.images, batch_size, precision=precision)
    targets = torch.as_tensor(val.targets)
    return {"val_loss": float(F.cross_entropy(logits, targets)),
            "val_acc": float((logits.argmax(1) == targets).float().mean())}


def _precision_used(history: list[dict]) -> str:
    """The card's account of the precision a run's epochs trained and validated in (a resumed run's calls may differ)."""
    by_epoch = {row["epoch"]: row.get("precision", "not recorded") for row in history}
    used = sorted(set(by_epoch.values()))
    if len(used) == 1:
        return {"bf16": "bf16 autocast (training and validation)"}.get(used[0], used[0])
    return "; ".join(f"{p}: epochs {', '.join(str(e) for e, q in by_epoch.items() if q == p)}" for p in used)


def _as_flag(key: str, value) -> str:
    """How a kept setting is asked for on the command line: ``--lr 0.001``, ``--soft-labels``, ``--no-soft-labels``."""
    flag = key.replace("_", "-")
    if isinstance(value, bool):
        return f"--{'' if value else 'no-'}{flag}"
    return f"--{flag} {value}"


def _make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    if recipe.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adamw":
        decay = [p for p in model.parameters() if p.ndim > 1]
        no_decay = [p for p in model.parameters() if p.ndim <= 1]  # no weight decay on norms and biases
        return torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                                  {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}")


def _moving_average(model: nn.Module, decay: float) -> nn.Module:
    """timm's exponential moving average of ``model``'s parameters and buffers, starting from its weights."""
    import ferx._torchvision_compat  # noqa: F401  (timm imports torchvision)
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=decay)


def _cosine_lr(recipe: Recipe, step: int, steps_per_epoch: int) -> float:
    warm = recipe.warmup_epochs * steps_per_epoch
    total = recipe.epochs * steps_per_epoch
    if step < warm:  # never above the peak on a fractional last warm-up step (or a warm-up shorter than a step)
        return recipe.lr * min(1.0, (step + 1) / warm)
    return 0.5 * recipe.lr * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))


def _start_from(model: nn.Module, start: nn.Module, its_labels: LabelSet, labels: LabelSet,
                classifier: str) -> list[str]:
    """Copy ``start``'s weights into ``model`` (the same architecture). Where the label sets differ (a
    FERPlus checkpoint starting a FER-2013 run), the classifier's rows (one per class) are taken by class
    name and a class ``start`` lacks keeps ``model``'s fresh initialisation. Returns the classes taken."""
    model.get_submodule(classifier)  # a wrong declaration fails here, not as rows copied by position
    rows = torch.as_tensor(label_mapping(labels, its_labels))  # row i of the new classifier <- row rows[i] of start's
    state, fresh = start.state_dict(), model.state_dict()
    remapped = 0
    for name, tensor in state.items():
        if (name.startswith(classifier + ".") and tensor.ndim and tensor.shape[0] == len(its_labels)
                and fresh[name].shape[0] == len(labels)):
            taken = fresh[name].clone()
            taken[rows >= 0] = tensor[rows[rows >= 0]].to(taken)
            state[name] = taken
            remapped += 1
    if its_labels.classes != labels.classes and not remapped:
        raise ValueError(f"no per-class tensor under {classifier!r}: cannot map {list(its_labels.classes)} "
                         f"to {list(labels.classes)}")
    model.load_state_dict(state)
    return [c for c, r in zip(labels.classes, rows.tolist()) if r >= 0]


def _head_only(model: nn.Module, backbone: str, on: bool, drop_rate: float, model_drop: dict) -> None:
    """Freeze the ``backbone`` module (eval mode: no stochastic depth) and set every dropout outside it to
    ``drop_rate``, or (``on`` False) train it again with the model's own dropout (``model_drop``: module -> p)."""
    frozen = model.get_submodule(backbone)
    frozen.requires_grad_(not on)
    frozen.train(not on and model.training)
    for module, p in model_drop.items():
        module.p = drop_rate if on else p


def _backbone_start(info, weights: str) -> dict:
    """What the card says of a run whose backbone started from pre-trained ``weights`` (a file or "hub")."""
    if not info.backbone:
        raise ValueError(f"--backbone-weights: {info.name} has no pre-trained backbone to start from "
                         f"({', '.join(n for n in list_models() if get_model_info(n).backbone)} has)")
    if weights == "hub":  # the build refuses to fall back to random weights (backbone_fallback=False)
        _check_hub(info.backbone_hub)
        return {"backbone_weights": f"hub: {info.backbone_hub} (Hugging Face)"}
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"--backbone-weights: {weights}: file not found")
    return {"backbone_weights": path.name, "backbone_weights_sha256": sha256_file(path)}


def _check_hub(name: str) -> None:
    """Offline (HF_HUB_OFFLINE) without the hub's weights ``name`` in the local cache: said before any data is
    packed, not after (the build would refuse them then, as it does when the hub does not answer)."""
    from huggingface_hub import constants, try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    if not constants.HF_HUB_OFFLINE:
        return
    repo = get_pretrained_cfg(name).hf_hub_id
    cached = (try_to_load_from_cache(repo, file) for file in ("model.safetensors", "pytorch_model.bin"))
    if not any(isinstance(path, str) for path in cached):
        raise RuntimeError(f"--backbone-weights hub: the weights {name} are not available from the Hugging Face hub "
                           "(HF_HUB_OFFLINE is set and they are not in the local cache): give a local file instead")


def _overrides(recipe: Recipe) -> dict | None:
    """The fields a run changed from its named recipe (whose ``description`` tells the recipe as declared);
    ``None`` for a recipe that is not registered (nothing to compare with)."""
    if recipe.name not in RECIPES:
        return None
    named = asdict(RECIPES[recipe.name])
    return {k: v for k, v in asdict(recipe).items() if named[k] != v}


def _check_start(init_from: str | Path, architecture: str, spec) -> None:
    """Refuse a start checkpoint of another model or input from its card, before any data is packed."""
    start = load_checkpoint(init_from, "cpu", expect_model=architecture, defer=True)  # the card, not the weights
    if start.input_spec != spec:
        raise ValueError(f"{init_from} takes {start.input_spec}, this run {spec}")


def _initialise_from(model: nn.Module, init_from: str | Path, dev, architecture: str, spec, labels,
                     classifier: str) -> dict:
    """Load a checkpoint's weights into ``model`` (:func:`_start_from`); what the card says about that start."""
    start = load_checkpoint(init_from, dev, expect_model=architecture)
    classes_taken = _start_from(model, start.model, start.labels, labels, classifier)
    its_recipe = start.card.get("recipe")
    named = Path(init_from)  # a run's own folder "checkpoint" is named with its run: "lanmsff_ferplus/checkpoint"
    initialised = {"checkpoint": named.name if named.name != "checkpoint" else f"{named.parent.name}/{named.name}",
                   "checkpoint_sha256": start.sha256,
                   "its_recipe": its_recipe.get("name") if isinstance(its_recipe, dict) else its_recipe,
                   "its_data": (start.card.get("data") or {}).get("dataset"),
                   "its_selection": start.card.get("selection"), "its_wall_time_s": start.card.get("wall_time_s")}
    if "carried" in start.card:  # a travel copy (bench/carry_weights.py): name the weights it was made from
        initialised["carried"] = start.card["carried"]
    if start.labels.classes != labels.classes:
        fresh = [c for c in labels.classes if c not in classes_taken]
        initialised["classifier_rows"] = (f"{len(classes_taken)} of {len(labels)} classes taken by name from its "
                                          f"{len(start.labels)} ({', '.join(classes_taken) or 'none'})"
                                          + (f"; {', '.join(fresh)} start at random" if fresh else ""))
    return initialised  # ``start``, a second copy of the model (Conv-cut: 200 MB), goes with this frame


RUN_FILES = ("state.pt", "best.pt", "metrics.jsonl")  # what a run writes in its folder (and checkpoint/)


def _remove_half_saves(*folders: Path) -> str:
    """Remove what a run killed while it saved (state.pt, best.pt, the checkpoint's files) left under a temporary
    name (:func:`ferx.cache.atomic_path`): nothing reads it, and Conv-cut's state is 600 MB. Says what it removed."""
    stale = [p for folder in folders if folder.is_dir() for p in folder.glob("*.tmp.*") if p.is_file()]
    size = sum(p.stat().st_size for p in stale)
    for p in stale:
        p.unlink()
    return (f"removed what a run killed while saving left: {', '.join(p.name for p in stale)} ({size / 2**20:.0f} MB)"
            if stale else "")


def _refuse_earlier_run(out: Path, checkpoint_dir: str | Path | None) -> None:
    """ValueError where a new run would overwrite an earlier one: ``out`` holding a run's files (its
    ``state.pt``, ``best.pt`` and exported checkpoint were replaced and its ``metrics.jsonl`` went on with
    the new run's epochs), or the checkpoint folder it exports to already holding a checkpoint."""
    held = [name for name in RUN_FILES if (out / name).is_file()]
    if held:
        raise ValueError(f"--out {out} already holds a run ({', '.join(held)}): pass --resume to continue it, or "
                         "choose another --out")
    export = Path(checkpoint_dir) if checkpoint_dir is not None else out / "checkpoint"
    if (export / CARD).is_file():
        option = "--checkpoint-dir" if checkpoint_dir is not None else "--out"
        raise ValueError(f"{export} already holds a checkpoint (its card and the metrics recorded on it): the new run "
                         f"would replace it; choose another {option}")


def _save_run_file(value: dict, path: Path) -> None:
    """``torch.save`` whole or not at all: written in place, a save cut short (a full disk, Ctrl-C, a kill) left a
    truncated state.pt or best.pt and lost the run; a failed write raised torch's 'unexpected pos 395584 vs
    395476', naming no file."""
    with atomic_path(path) as tmp:
        try:
            torch.save(value, tmp)
        except RuntimeError as err:
            raise OSError(f"{path.name} in {path.parent} could not be written in full (is the disk full?); the "
                          f"last one saved is kept ({str(err).strip()[:80]})") from None


def _load_run_file(path: Path, dev: torch.device) -> dict:
    """A run's ``state.pt`` or ``best.pt`` (plain tensors and numbers only), or one line naming it: torch's own
    error for a damaged file ('PytorchStreamReader failed reading zip archive ...') named neither the file nor the run."""
    try:
        return torch.load(path, map_location=dev, weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, KeyError, pickle.UnpicklingError) as err:
        why = (str(err).splitlines() or [type(err).__name__])[0][:120]
        raise ValueError(f"{path.name} in {path.parent} is damaged and cannot be read, so the run cannot go on "
                         f"from it ({why})") from None


def _resumed_recipe(recipe: Recipe, state: dict, has_ema: bool, out: Path, asked: dict, recipes_before: dict) -> Recipe:
    """The recipe a resumed run goes on with: the one it began with (its ``state``, updated to say so).
    A setting ``asked`` for now that differs from the run's (its start, peak learning rate, warm-up,
    augmentation, targets, moving average) is refused rather than silently ignored or half applied."""
    initialised = state.get("initialised_from") or {}
    if asked["init_from"] is not None:  # the weights come from state.pt: a different start would be silently ignored
        start = load_checkpoint(asked["init_from"], "cpu", expect_model=recipe.model, defer=True).sha256  # card only
        if initialised.get("checkpoint_sha256") != start:
            began = initialised.get("checkpoint") or initialised.get("backbone_weights") or "random weights"
            raise ValueError(f"{out} was started from {began}, "
                             f"not from {asked['init_from']}: resume it without --init-from, or start a new run "
                             f"(another --out)")
    if "fitted_epochs" in state:  # a budget-fitted schedule keeps its length across calls
        recipe = replace(recipe, epochs=state["fitted_epochs"])
    # the peak learning rate, warm-up, augmentation and targets are part of the run: it goes on with those it began with
    for key in ("lr", "augment", "warmup_epochs", "soft_labels", "head_epochs"):
        before = recipes_before[key] if key in recipes_before else getattr(recipe, key)
        kept = state.get(key, before)  # state files from before they were kept: as asked (or the recipe's)
        if asked[key] is not None and asked[key] != kept:
            flag = _as_flag(key, asked[key]).split()[0]
            raise ValueError(f"{out} was started with {_as_flag(key, kept)}, not "
                             f"{flag if isinstance(asked[key], bool) else asked[key]}: resume it without {flag}, "
                             f"or start a new run (another --out)")
        recipe = replace(recipe, **{key: kept})
        state[key] = kept
    # the moving average is part of the run: it goes on with the decay it began with, or not at all
    ema_decay = asked["ema_decay"]
    began = state.get("ema_decay", None if has_ema else 0.0)  # None: kept before the decay was recorded
    if began is None and not ema_decay:
        raise ValueError(f"{out} keeps a moving average of its weights: resume it with its --ema-decay")
    began = ema_decay if began is None else began
    if ema_decay is not None and ema_decay != began:
        raise ValueError(f"{out} was started with " + (f"--ema-decay {began}" if began else "no --ema-decay")
                         + f", not {ema_decay}: resume it without --ema-decay, or start a new run (another --out)")
    state["ema_decay"] = began
    return replace(recipe, ema_decay=began)


def train(recipe: Recipe | str, dataset: str, out_dir: str | Path, *, data_root: str | Path | None = None,
          train_split: str = "train", val_split: str = "val", device: str = "auto", epochs: int | None = None,
          batch_size: int | None = None, limit_train: int | None = None, limit_val: int | None = None,
          resume: bool = False, checkpoint_dir: str | Path | None = None, seed: int = 0,
          time_budget_min: float | None = None, carried: str | Path | None = None, export_dtype: str = "float32",
          input_size: int | None = None, fit_budget: bool = False, init_from: str | Path | None = None,
          lr: float | None = None, ema_decay: float | None = None, augment: str | None = None,
          warmup_epochs: float | None = None, soft_labels: bool | None = None, precision: str = "auto",
          backbone_weights: str | None = None, head_epochs: int | None = None, progress: bool = True) -> dict:
    """Train ``recipe`` on ``dataset`` and export the best-on-validation epoch as a checkpoint.

    Returns a summary with the per-epoch history. ``limit_train`` / ``limit_val`` take a fixed
    random subset (for smoke tests); the card records them. With ``time_budget_min`` the run stops
    before an epoch that would not finish inside the budget (judged on the last epoch's duration),
    or abandons an epoch that overruns it; either way the best epoch so far is exported and
    ``state.pt`` (the last finished epoch) lets ``resume=True`` continue in a later call.
    ``carried`` reads both splits from a carry file (:mod:`ferx.data.carry`) instead of the data root.
    With ``fit_budget`` (and a budget) the schedule is sized to the budget: after each of the first two
    epochs the number of epochs becomes what the remaining budget holds at that epoch's pace (at most
    ``epochs``), and after later epochs it only shrinks if they got slower, so a cosine schedule ends at
    its low learning rate instead of being cut mid-way; a resumed run (a later call) keeps the fitted
    length, shortened only if its own budget holds fewer epochs.
    ``init_from`` starts from a checkpoint's weights (same model) instead of a random initialisation: a further
    schedule (a warm restart) for a run that ended still improving, or a start from a checkpoint of the same faces
    with other labels (FERPlus -> FER-2013: the classifier's rows are taken by class name, see :func:`_start_from`);
    the card names that checkpoint, its data, its selection and its wall time. ``lr`` overrides the recipe's peak
    learning rate, ``warmup_epochs`` its linear warm-up (a further schedule from trained weights needs a short one, not
    a from-scratch recipe's five epochs) and ``augment`` its augmentation (a key of ``AUGMENTS``); a resumed run keeps
    all three as it began; ``soft_labels`` turns the recipe's vote-distribution targets on or off (FERPlus; kept on
    resume too).
    ``precision``: ``auto`` trains under bf16 autocast on CUDA and in fp32 on CPU; ``bf16`` also on a CPU with native
    bf16 (AVX512-BF16 or AMX; the README gives bench/bench_train_step.py's figures), ``fp32`` everywhere.
    Validation runs in the same precision; each epoch's line (printed and in ``metrics.jsonl``) and the card
    record it. The card's ``soft_labels`` is what the run trained on (false on data without vote distributions).
    ``ema_decay`` (> 0) keeps an exponential moving average of the weights after every step (timm's
    ``ModelEmaV3``, batch-norm statistics included): the average is what is validated, selected and exported, and
    each epoch's line also gives the raw weights' validation accuracy (``raw_val_acc``) beside it.
    ``backbone_weights`` starts the model's pre-trained part (``ModelInfo.backbone``: Conv-cut's ConvNeXt-Base) from
    a state-dict file or ``"hub"`` (the card names the file and its sha256); ``head_epochs`` trains the rest alone for
    that many epochs first, the backbone frozen and the head's dropout at the recipe's ``head_drop_rate``, then the
    whole model with the model's own dropout (models.md: 0.1 while the head trains alone, 0.2 after); a head-only
    phase needs a trained start (``backbone_weights`` or ``init_from``).
    The checkpoint is written in ``export_dtype`` (``float16`` halves Conv-cut's 212 MB) in safetensors
    shards of at most 15 MiB, the largest file a GPU machine can send back.
    """
    session_start = time.perf_counter()
    if resume and not (Path(out_dir) / "state.pt").is_file():  # before any data is packed or any folder made
        raise ValueError(f"--resume: {out_dir} has no state.pt to resume from (no run was saved there); "
                         "leave out --resume to start a new run")
    if not resume:  # a new run in the folder of another: it replaced that run's state.pt, best.pt and checkpoint
        _refuse_earlier_run(Path(out_dir), checkpoint_dir)
    budget_s = None if time_budget_min is None else time_budget_min * 60
    recipe = RECIPES[recipe] if isinstance(recipe, str) else recipe
    # what a run started before --warmup-epochs / --soft-labels existed warmed up over and trained on
    recipes_before = {"warmup_epochs": recipe.warmup_epochs, "soft_labels": recipe.soft_labels}
    recipe = replace(recipe, epochs=epochs or recipe.epochs, batch_size=batch_size or recipe.batch_size,
                     input_size=input_size or recipe.input_size, lr=recipe.lr if lr is None else lr,
                     ema_decay=recipe.ema_decay if ema_decay is None else ema_decay, augment=augment or recipe.augment,
                     warmup_epochs=recipe.warmup_epochs if warmup_epochs is None else warmup_epochs,
                     soft_labels=recipe.soft_labels if soft_labels is None else soft_labels,
                     head_epochs=recipe.head_epochs if head_epochs is None else head_epochs)
    if recipe.augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {', '.join(AUGMENTS)}, not {recipe.augment!r}")
    if recipe.warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be 0 or more, not {recipe.warmup_epochs}")
    if warmup_epochs is not None and recipe.schedule != "cosine":
        raise ValueError(f"the {recipe.name} recipe decays on a plateau and has no warm-up: --warmup-epochs is "
                         f"for the cosine recipes ({', '.join(r.name for r in RECIPES.values() if r.schedule == 'cosine')})")
    if not 0.0 <= recipe.ema_decay <= 1.0:
        raise ValueError(f"ema_decay must lie in [0, 1], not {recipe.ema_decay}")
    dev = resolve_device(device)
    bf16 = autocast_bf16(dev, precision)  # auto: CUDA only; bf16 on CPU only where it is native
    info = get_model_info(recipe.model)
    spec = info.input_spec if recipe.input_size is None else replace(info.input_spec, size=recipe.input_size)
    if init_from is not None:
        _check_start(init_from, recipe.model, spec)
    if backbone_weights is not None and (init_from is not None or resume):
        raise ValueError("--backbone-weights starts a new run's backbone: not with --init-from (whose weights are "
                         "all there) or --resume (whose weights are in state.pt)")
    backbone_start = _backbone_start(info, backbone_weights) if backbone_weights is not None else None
    if recipe.head_epochs < 0:
        raise ValueError(f"head_epochs must be 0 or more, not {recipe.head_epochs}")
    if recipe.head_epochs and not info.backbone:
        raise ValueError(f"--head-epochs: {info.name} has no pre-trained backbone to keep frozen")
    if recipe.head_epochs and backbone_weights is None and init_from is None and not resume:
        raise ValueError("--head-epochs trains the head on a trained backbone: give --backbone-weights (or "
                         "--init-from a checkpoint); a random backbone would stay random")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    removed = _remove_half_saves(out, Path(checkpoint_dir) if checkpoint_dir is not None else out / "checkpoint")
    if removed and progress:
        print(removed)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = dev.type == "cuda"  # fixed input sizes: let cuDNN pick its fastest kernels

    train_data, val_data = _packed_splits(dataset, (train_split, val_split), data_root, carried, progress)
    rng = np.random.default_rng(seed)
    if limit_train and limit_train < len(train_data):
        train_data = train_data.take(np.sort(rng.choice(len(train_data), limit_train, replace=False)))
    if limit_val and limit_val < len(val_data):
        val_data = val_data.take(np.sort(rng.choice(len(val_data), limit_val, replace=False)))
    labels = train_data.labels
    if soft_labels and train_data.soft_targets is None:
        raise ValueError(f"--soft-labels asked for, but {dataset} has no vote distributions (FERPlus has)")

    started_backbone = ({"backbone_weights": backbone_weights, "backbone_fallback": False}
                        if backbone_weights is not None else {})  # the hub unreachable: an error, not random weights
    model = create_model(recipe.model, num_classes=len(labels), **recipe.model_config, **started_backbone).to(dev)
    for key in started_backbone:  # where the weights started, not how to build them: the card says it
        model.ferx_config.pop(key)
    initialised = backbone_start
    frozen = model.get_submodule(info.backbone) if info.backbone else None
    inside = {id(m) for m in frozen.modules()} if frozen is not None else set()
    model_drop = {m: m.p for m in model.modules() if isinstance(m, (nn.Dropout, nn.Dropout2d)) and id(m) not in inside}
    if init_from is not None and not resume:  # a resumed run has its weights
        initialised = _initialise_from(model, init_from, dev, recipe.model, spec, labels, info.classifier)
    memory_format = training_memory_format(model, dev)
    model = model.to(memory_format=memory_format)
    optimizer = _make_optimizer(model, recipe)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=recipe.plateau_factor,
                                                         patience=recipe.plateau_patience)
    images = torch.as_tensor(train_data.images).to(dev)  # uint8, stays on the device
    gen = torch.Generator(device=dev).manual_seed(seed)
    # the last, partial batch is kept, unless it holds one face: batch norm cannot train on one sample (Conv-cut's
    # head is a BatchNorm1d), and the shuffle gives that face a place in the other epochs
    steps_per_epoch = len(images) // recipe.batch_size + (len(images) % recipe.batch_size > 1)

    state = {"epoch": 0, "step": 0, "best_val_acc": -1.0, "best_val_loss": math.inf, "best_epoch": 0,
             "bad_epochs": 0, "wall_time_s": 0.0, "history": [], "initialised_from": initialised,
             "ema_decay": recipe.ema_decay, "lr": recipe.lr, "augment": recipe.augment,
             "warmup_epochs": recipe.warmup_epochs, "soft_labels": recipe.soft_labels,
             "head_epochs": recipe.head_epochs}
    state_path, best_path = out / "state.pt", out / "best.pt"
    saved = {}
    if resume:
        saved = _load_run_file(state_path, dev)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        plateau.load_state_dict(saved["plateau"])
        gen.set_state(saved["generator"].cpu())
        state = json.loads(saved["progress"])
        with atomic_path(out / "metrics.jsonl") as tmp:  # its epochs, not also those of a save that failed after it
            tmp.write_text("".join(json.dumps(row) + "\n" for row in state["history"]))
        initialised = state.get("initialised_from")  # where the run's first call started from, if anywhere
        asked = {"lr": lr, "augment": augment, "warmup_epochs": warmup_epochs, "soft_labels": soft_labels,
                 "head_epochs": head_epochs,
                 "ema_decay": ema_decay, "init_from": init_from}
        recipe = _resumed_recipe(recipe, state, "ema" in saved, out, asked, recipes_before)
    ema = _moving_average(model, recipe.ema_decay) if recipe.ema_decay else None  # from the start or resumed weights
    if ema is not None and "ema" in saved:
        ema.module.load_state_dict(saved["ema"])
    augment_batch = AUGMENTS[recipe.augment]
    # after a resume has put back the targets the run began with; a recipe's votes fall back to classes on data
    # without them (FER-2013), and the card says which it trained on
    recipe = replace(recipe, soft_labels=recipe.soft_labels and train_data.soft_targets is not None)
    targets = _targets(train_data, recipe).to(dev)
    saved = None  # the resumed tensors (a second copy of the weights and Adam's moments) are in place now
    autocast = dict(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16)

    if progress:  # the device --device auto chose, said before hours of epochs rather than only on the card
        print(f"training {recipe.model} ({recipe.name} recipe) on {dev}: {describe_hardware(dev)}, "
              f"{'bf16' if bf16 else 'fp32'}; {len(train_data):,} training and {len(val_data):,} validation faces")
    stopped = None
    last_epoch_s = 0.0
    most_epochs = recipe.epochs  # the cap a budget-fitted schedule stays under
    while state["epoch"] < recipe.epochs:
        started = time.perf_counter()
        if budget_s is not None and started - session_start + last_epoch_s > budget_s:
            stopped = f"time budget: another epoch (~{last_epoch_s / 60:.1f} min) would not fit in {time_budget_min} min"
            break
        model.train()
        head_only = state["epoch"] < recipe.head_epochs
        if recipe.head_epochs:
            _head_only(model, info.backbone, head_only, recipe.head_drop_rate, model_drop)
        order = torch.randperm(len(images), generator=gen, device=dev)
        losses = []
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {state['epoch'] + 1}/{recipe.epochs}", disable=not progress,
                   leave=False)
        for i in bar:
            if budget_s is not None and time.perf_counter() - session_start > budget_s:
                stopped = f"time budget of {time_budget_min} min reached inside epoch {state['epoch'] + 1} (discarded)"
                break
            idx = order[i * recipe.batch_size:(i + 1) * recipe.batch_size]
            x = augment_batch(to_model_input(images[idx], spec), gen)
            y = targets[idx]
            if recipe.mixup_alpha > 0:
                lam = float(np.random.default_rng(state["step"] + seed).beta(recipe.mixup_alpha, recipe.mixup_alpha))
                perm = torch.randperm(len(idx), generator=gen, device=dev)
                x = lam * x + (1 - lam) * x[perm]
                y1 = F.one_hot(y, len(labels)).float() if y.ndim == 1 else y
                y = lam * y1 + (1 - lam) * y1[perm]
            x = x.contiguous(memory_format=memory_format)
            if recipe.schedule == "cosine":
                for group in optimizer.param_groups:
                    group["lr"] = _cosine_lr(recipe, state["step"], steps_per_epoch)
            with torch.autocast(**autocast):
                loss = _loss(model(x), y, recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if ema is not None:
                ema.update(model)
            state["step"] += 1
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
        if stopped:
            break
        judged = model if ema is None else ema.module  # the weights that are selected and exported
        metrics = validate(judged, spec, val_data, precision=precision)
        if ema is not None:
            metrics["raw_val_acc"] = validate(model, spec, val_data, precision=precision)["val_acc"]
        if recipe.schedule == "plateau":
            plateau.step(metrics["val_loss"])
        state["epoch"] += 1
        last_epoch_s = time.perf_counter() - started
        state["wall_time_s"] += last_epoch_s
        row = {"epoch": state["epoch"], "train_loss": float(np.mean(losses)), **metrics,
               "lr": optimizer.param_groups[0]["lr"], "wall_time_s": round(state["wall_time_s"], 1),
               "precision": "bf16" if bf16 else "fp32",
               **({"trained": "head only" if head_only else "all"} if recipe.head_epochs else {})}
        state["history"].append(row)
        if fit_budget and budget_s is not None:
            left = budget_s - (time.perf_counter() - session_start) - 0.5 * last_epoch_s  # room to export
            fitted = max(state["epoch"], min(most_epochs, state["epoch"] + int(left // last_epoch_s)))
            if state["epoch"] > 2:  # after the first two epochs the length only shrinks (epochs got slower)
                fitted = min(fitted, recipe.epochs)
            if fitted != recipe.epochs or "fitted_epochs" not in state:
                recipe = replace(recipe, epochs=fitted)
                if progress:
                    print(f"schedule fitted to the budget: {fitted} epochs at {last_epoch_s:.1f} s an epoch")
            state.update(fitted_epochs=fitted)
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        if metrics["val_acc"] > state["best_val_acc"]:  # model selection: validation accuracy
            state.update(best_val_acc=metrics["val_acc"], best_epoch=state["epoch"])
            _save_run_file(judged.state_dict(), best_path)
        if metrics["val_loss"] < state["best_val_loss"]:
            state.update(best_val_loss=metrics["val_loss"], bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        _save_run_file({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "plateau": plateau.state_dict(), "generator": gen.get_state(), "progress": json.dumps(state),
                        **({"ema": ema.module.state_dict()} if ema is not None else {})}, state_path)
        if progress:
            print(f"epoch {row['epoch']}: train loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}  "
                  f"val acc {row['val_acc']:.4f}  lr {row['lr']:.2e}  {row['precision']}")
        if recipe.early_stop_patience and state["bad_epochs"] >= recipe.early_stop_patience:
            stopped = f"early stopping: {state['bad_epochs']} epochs without a lower validation loss"
            break

    if not best_path.is_file():
        raise RuntimeError(f"no epoch finished inside the time budget of {time_budget_min} min: nothing to export")
    if stopped and progress:
        print(f"stopped: {stopped}")
    model.load_state_dict(_load_run_file(best_path, dev))
    model = model.to(memory_format=torch.contiguous_format)
    card = {
        "title": f"{recipe.model} trained on {dataset} ({recipe.name} recipe)",
        "data": {"dataset": dataset, "train_split": train_split, "val_split": val_split,
                 "source": f"carry file {Path(carried).name}" if carried else "data root",
                 "train_images": len(train_data), "val_images": len(val_data),
                 "limit_train": limit_train, "limit_val": limit_val,
                 "train_fingerprint": train_data.fingerprint, "val_fingerprint": val_data.fingerprint},
        "recipe": {**asdict(recipe), "overrides": _overrides(recipe), "epochs_run": state["epoch"], "seed": seed,
                   "memory_format": "channels_last" if memory_format == torch.channels_last else "contiguous",
                   "precision": _precision_used(state["history"]),
                   "stopped": stopped or f"completed {recipe.epochs} epochs",
                   "epochs_fitted_to_budget": "fitted_epochs" in state},
        **({"initialised_from": initialised} if initialised else {}),
        "selection": f"epoch {state['best_epoch']} of {state['epoch']}: best validation accuracy "
                     + ("of the weights' moving average " if ema is not None else "") +
                     f"{state['best_val_acc']:.4f} ({val_split} split); the test split was not used",
        "hardware": describe_hardware(dev),
        "wall_time_s": round(state["wall_time_s"], 1),
    }
    ckpt = save_checkpoint(model, checkpoint_dir or out / "checkpoint", labels=labels, input_spec=spec, card=card,
                           dtype=getattr(torch, export_dtype), shard_mib=15)
    return {"checkpoint": str(ckpt), "best_epoch": state["best_epoch"], "best_val_acc": state["best_val_acc"],
            "epochs_run": state["epoch"], "history": state["history"], "wall_time_s": state["wall_time_s"],
            "stopped": stopped}

