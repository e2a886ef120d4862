"""Checkpoints: safetensors weights (sharded when large) + a card (``card.json`` and ``README.md``).

A checkpoint is a folder::

    checkpoints/<name>/
        card.json                 machine-readable card: architecture, config, labels, input spec,
                                  data and splits, recipe, hardware, wall time, measured metrics,
                                  and the sha256 of every weight file
        README.md                 the same card for people (generated from card.json)
        model.safetensors         or model-0000k-of-0000n.safetensors shards

Loading checks the files' sha256, that the architecture is registered, that the stored tensors
fit it exactly, and (when asked) that the model name and label set are the expected ones.
safetensors never executes code, so a checkpoint from anywhere is safe to open.
"""

from __future__ import annotations

import hashlib
import json
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ferx.cache import atomic_path
from ferx.data.labels import LabelSet, get_label_set
from ferx.device import BF16_MIN_AGREEMENT, autocast_bf16
from ferx.models import InputSpec, create_model, get_model_info, list_models
from ferx.paths import CARD, checkpoint_path
from ferx.text import number

FORMAT = "ferx-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint folder is missing, corrupt, or does not fit what was asked for."""


@dataclass
class LoadedModel:
    """A model ready for inference and explanation, with the honesty label every output carries:
    a checkpoint's trained weights (``path``), or random weights (``path`` None: UNTRAINED)."""

    model: nn.Module
    name: str  # registry name
    labels: LabelSet
    input_spec: InputSpec
    card: dict
    path: Path | None  # the checkpoint folder; None for random weights

    @property
    def trained(self) -> bool:
        return self.path is not None

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.labels.classes)

    @property
    def bf16_agrees(self) -> bool:
        """Whether the card records bf16's top-1 agreement with fp32 at or above
        :data:`ferx.device.BF16_MIN_AGREEMENT` on every test split measured (bench/bench_bf16.py --write-cards)."""
        agreement = (self.card.get("bf16") or {}).get("top1_agreement") or {}
        return bool(agreement) and min(agreement.values()) >= BF16_MIN_AGREEMENT

    @property
    def device(self) -> torch.device:
        """Where the model's weights are (where it was loaded: ``--device auto`` resolved)."""
        return next(self.model.parameters()).device

    def compute_dtype(self, precision: str = "auto") -> str:
        """"bf16" or "fp32": what ``precision`` means for this model on its device (:func:`ferx.device.autocast_bf16`)."""
        return "bf16" if autocast_bf16(self.device, precision, self.bf16_agrees) else "fp32"

    @property
    def display(self) -> str:
        """How outputs name the model: ``lanmsff (lanmsff_fer2013)``, or ``lanmsff (UNTRAINED: random weights)``."""
        return f"{self.name} ({self.path.name})" if self.trained else f"{self.name} (UNTRAINED: random weights)"

    @property
    def sha256(self) -> str:
        """One hash for the whole checkpoint: the hash of its weight files' hashes."""
        joined = "".join(self.card["weights"]["sha256"][f] for f in self.card["weights"]["files"])
        return hashlib.sha256(joined.encode()).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _shards(state: dict[str, torch.Tensor], max_bytes: int | None) -> list[dict[str, torch.Tensor]]:
    if max_bytes is None:
        return [state]
    shards, current, size = [], {}, 0
    for key, t in state.items():
        nbytes = t.numel() * t.element_size()
        if current and size + nbytes > max_bytes:
            shards.append(current)
            current, size = {}, 0
        current[key] = t
        size += nbytes
    return shards + [current] if current else shards


def save_checkpoint(model: nn.Module, out_dir: str | Path, *, labels: LabelSet, input_spec: InputSpec | None = None,
                    card: dict | None = None, dtype: torch.dtype = torch.float32,
                    shard_mib: float | None = None) -> Path:
    """Write ``model`` (built by :func:`ferx.models.create_model`) and its card into ``out_dir``.

    ``card`` holds the provenance (data, recipe, hardware, wall time, metrics ...); the
    architecture, labels, input spec and file hashes are filled in here.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = model.ferx_name
    spec = input_spec or get_model_info(name).input_spec
    if len(labels) != model.num_classes:
        raise CheckpointError(f"{name} has {model.num_classes} outputs but the label set has {len(labels)} classes")
    state = {k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in model.state_dict().items()}
    shards = _shards(state, None if shard_mib is None else int(shard_mib * 2**20))
    files = (["model.safetensors"] if len(shards) == 1
             else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))])
    # what the file says of itself, read by nothing here (the card is), as ONE key: safetensors writes several in a
    # random order (its issue #584), so the same weights got another sha256 each save and missed every cache
    meta = {"ferx": json.dumps({"format": FORMAT, "model": name, "labels": list(labels.classes)}, sort_keys=True)}
    # the weights under temporary names, renamed once the card is written: the old ones were deleted first, and a
    # full disk then left a folder without weights (and a traceback: safetensors' error is no OSError)
    with ExitStack() as renamed:
        temps = [renamed.enter_context(atomic_path(out / fname)) for fname in files]
        for fname, tmp, shard in zip(files, temps, shards):
            try:
                save_file(shard, str(tmp), metadata=meta)
            except SafetensorError as err:
                raise OSError(f"{out / fname} could not be written ({err}); the checkpoint there is as it was") from None
        write_card(out, {
            "format": FORMAT,
            "model": name,
            "config": dict(model.ferx_config),
            "labels": list(labels.classes),
            "label_set": labels.name,
            "input_spec": spec.to_dict(),
            "parameters": sum(p.numel() for p in model.parameters()),
            **(card or {}),
            "weights": {"dtype": str(dtype).replace("torch.", ""), "files": files,
                        "sha256": {f: sha256_file(t) for f, t in zip(files, temps)}},
        })
    for old in out.glob("model*.safetensors"):  # an earlier save's shards this one did not write
        if old.name not in files:
            old.unlink()
    return out


def read_card(ckpt_dir: str | Path) -> dict:
    path = Path(ckpt_dir) / CARD
    if not path.is_file():
        raise CheckpointError(f"{ckpt_dir} is not a ferx checkpoint: {CARD} not found")
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(card, dict):
        raise CheckpointError(f"{path}: a card is a JSON object, not a {type(card).__name__}")
    if card.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unsupported checkpoint format {card.get('format')!r} (expected {FORMAT})")
    # what loading reads; one missing said only "error: 'weights'" (a KeyError), and stopped `ferx models` and the app
    wrong = [f"{key} ({what})" for key, what, ok in (
        ("model", "a name", isinstance(card.get("model"), str)),
        ("config", "an object with num_classes", isinstance(card.get("config"), dict)
         and isinstance(card["config"].get("num_classes"), int)),
        ("labels", "a list of class names", isinstance(card.get("labels"), list)
         and all(isinstance(c, str) for c in card["labels"])),
        ("input_spec", "an object", isinstance(card.get("input_spec"), dict)),
        ("weights", "an object with files and the sha256 of each", isinstance(card.get("weights"), dict)
         and isinstance(card["weights"].get("files"), list) and isinstance(card["weights"].get("sha256"), dict)
         and all(isinstance(f, str) and f in card["weights"]["sha256"] for f in card["weights"]["files"])))
        if not ok]
    if wrong:
        raise CheckpointError(f"{path}: missing or malformed {', '.join(wrong)}")
    return card


def write_card(ckpt_dir: str | Path, card: dict) -> None:
    """The card and its README, both or neither: written in place, a full disk left card.json cut at 8,192 bytes
    and the checkpoint unusable ('card.json is not valid JSON')."""
    ckpt_dir = Path(ckpt_dir)
    with atomic_path(ckpt_dir / CARD) as card_tmp:  # each write inside its own file's block, so an error names it
        card_tmp.write_text(json.dumps(card, indent=2) + "\n")
        with atomic_path(ckpt_dir / "README.md") as readme_tmp:
            readme_tmp.write_text(render_card(card))


def load_checkpoint(ckpt_dir: str | Path, device: str | torch.device = "cpu", *, expect_model: str | None = None,
                    defer: bool = False) -> LoadedModel:
    """Build the model of a checkpoint folder and load its weights, in eval mode on ``device``. ``ckpt_dir``: a
    folder, or the name of one under the checkpoints root (``"lanmsff_ferplus"``, as ``ferx models`` lists it and
    every command takes it: :func:`ferx.paths.checkpoint_path`), from any working directory.

    ``defer=True`` checks the card and the weight files now and builds the model at the first use of
    ``.model`` (a :class:`DeferredModel`), so a server can start before its models are built."""
    ckpt_dir = checkpoint_path(ckpt_dir)
    card = read_card(ckpt_dir)
    name = card["model"]
    if expect_model and name != expect_model:
        raise CheckpointError(f"{ckpt_dir} holds a {name!r} model, not {expect_model!r}")
    try:
        labels = get_label_set(card["labels"])
        spec = InputSpec.from_dict(card["input_spec"])
    except (KeyError, TypeError) as err:  # a label no spelling knows; an input spec with other fields
        raise CheckpointError(f"{ckpt_dir / CARD}: {err.args[0] if isinstance(err, KeyError) else err}") from None
    try:
        get_model_info(name)
    except KeyError as err:
        raise CheckpointError(f"{ckpt_dir}: {err.args[0]}") from None
    for fname in card["weights"]["files"]:
        path = ckpt_dir / fname
        if not path.is_file():
            raise CheckpointError(f"{ckpt_dir}: weight file {fname} is missing")
        if sha256_file(path) != card["weights"]["sha256"][fname]:
            raise CheckpointError(f"{path}: sha256 does not match the card (corrupt or replaced file)")
    if card["config"]["num_classes"] != len(labels):
        raise CheckpointError(f"{ckpt_dir}: config says {card['config']['num_classes']} classes but the card lists "
                              f"{len(labels)} labels")
    if defer:
        return DeferredModel(None, name, labels, spec, card, ckpt_dir, device=device)
    return LoadedModel(_build(ckpt_dir, card, device), name, labels, spec, card, ckpt_dir)


def _build(ckpt_dir: Path, card: dict, device: str | torch.device) -> nn.Module:
    """The model of a checked card with the weights of its files, in eval mode on ``device``."""
    state: dict[str, torch.Tensor] = {}
    for fname in card["weights"]["files"]:
        state.update(load_file(str(ckpt_dir / fname)))
    return build_model(card, state, str(ckpt_dir)).to(device).eval()


def build_model(card: dict, state: dict[str, torch.Tensor], where: str) -> nn.Module:
    """The card's architecture holding ``state`` (on CPU, train mode); ``where`` names the weights' origin in errors."""
    name = card["model"]
    config = dict(card["config"])
    num_classes = config.pop("num_classes")
    config.pop("backbone_weights", None)  # the checkpoint's own weights replace any pretrained init
    # built on the meta device, without the random initialisation the weights replace (Conv-cut's took 3.5 s
    # of its 3.9 s load on 2 CPU cores); load_state_dict(assign=True) then puts the checkpoint's tensors in
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, **config)
    model_state = model.state_dict()
    missing = sorted(set(model_state) - set(state))
    unexpected = sorted(set(state) - set(model_state))
    wrong = [k for k in set(state) & set(model_state) if state[k].shape != model_state[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{where}: weights do not fit the {name!r} architecture — {len(missing)} missing "
            f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]}), "
            f"{len(wrong)} with the wrong shape (e.g. {wrong[:2]})")
    # copies in torch's own (aligned) memory: safetensors' tensors may start anywhere, and unaligned weights changed
    # LANMSFF's Grad-CAM in the 8th digit
    weights = {k: v.to(model_state[k].dtype, copy=True) for k, v in state.items()}
    model.load_state_dict(weights, assign=True)
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):  # one it does not save (non-persistent)
        model = create_model(name, num_classes=num_classes, **config)
        model.load_state_dict(weights)
    return model


class DeferredModel(LoadedModel):
    """A checkpoint whose card and files were checked and whose model is built at the first use of
    ``.model``, by whichever thread asks first (the others wait for it); :attr:`built` says whether it
    has been. A build that fails (weights that do not fit the architecture) raises its
    :class:`CheckpointError` at every use."""

    def __init__(self, *fields, device: str | torch.device = "cpu"):
        self._lock, self._device = threading.Lock(), device
        super().__init__(*fields)

    @property
    def model(self) -> nn.Module:
        with self._lock:
            if self._model is None:
                self._model = _build(self.path, self.card, self._device)
            return self._model

    @model.setter
    def model(self, value: nn.Module | None) -> None:
        self._model = value

    @property
    def built(self) -> bool:
        return self._model is not None


def _fmt(v) -> str:
    return number(v, 4) if v is None or isinstance(v, float) else str(v)


def render_card(card: dict, summary: bool = True) -> str:
    """The human-readable card (README.md) of a checkpoint, generated from card.json (``summary=False``: without
    its plain summary, for a page that shows it elsewhere)."""
    lines = [f"# {card.get('title', card['model'])}", ""]
    if summary and card.get("summary"):
        lines += [card["summary"], ""]
    lines += ["| field | value |", "|---|---|",
              f"| architecture | `{card['model']}` {json.dumps(card['config'])} |",
              f"| trainable parameters | {card['parameters']:,} |",
              f"| labels | {', '.join(card['labels'])} |",
              f"| input | {card['input_spec']['size']}x{card['input_spec']['size']}, "
              f"{card['input_spec']['channels']} channel(s), (x/255 - {card['input_spec']['mean']}) / {card['input_spec']['std']} |"]
    for key in ("licence", "hardware", "wall_time_s", "selection"):
        if key in card:
            lines.append(f"| {key.replace('_', ' ')} | {card[key]} |")
    lines.append(f"| weights | {', '.join(card['weights']['files'])} ({card['weights']['dtype']}) |")
    for f, h in card["weights"]["sha256"].items():
        lines.append(f"| sha256 {f} | `{h}` |")
    design = get_model_info(card["model"]).design if card["model"] in list_models() else ""
    if design:  # the architecture's own (its registry entry), not the checkpoint's
        lines += ["", "## Design", "", design]
    for key in ("source", "data", "initialised_from", "recipe"):
        if isinstance(card.get(key), dict):
            lines += ["", f"## {key.replace('_', ' ').capitalize()}", ""]
            lines += [f"- **{k}**: {json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in card[key].items()]
        elif key in card:
            lines += ["", f"## {key.capitalize()}", "", str(card[key])]
    for run in card.get("metrics", []):
        lines += ["", f"## Measured by `ferx evaluate`: {run['dataset']} / {run['split']} ({run['n']} images)", "",
                  f"accuracy **{run['accuracy']:.4f}**, macro-F1 {run['macro_f1']:.4f}, ECE {run['ece']:.4f} "
                  f"({run.get('compute_dtype', 'fp32')})"
                  + (f"; {run['n_excluded']} images excluded (label not in the model's set)" if run.get("n_excluded") else ""),
                  "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for cls, m in run["per_class"].items():
            lines.append(f"| {cls} | {_fmt(m['precision'])} | {_fmt(m['recall'])} | {_fmt(m['f1'])} | {m['support']} |")
    if card.get("bf16"):
        b = card["bf16"]
        verdict = ("`--precision auto` runs it in bf16 on a CPU with native bf16" if min(b["top1_agreement"].values())
                   >= BF16_MIN_AGREEMENT else f"`--precision auto` keeps fp32 (an agreement under {BF16_MIN_AGREEMENT:.1%})")
        lines += ["", "## bf16 on CPU (`bench/bench_bf16.py`)", "", f"Measured {b['measured']} on {b['hardware']}; "
                  f"{verdict}. Maps stay fp32.", "",
                  "| test split | top-1 agreement with fp32 | speed bf16 / fp32 | map Spearman (mean, min) |",
                  "|---|---|---|---|"]
        for split, agree in b["top1_agreement"].items():
            rho = b["map_spearman"][split]
            lines.append(f"| {split} | {agree:.2%} | {b['speed_ratio'][split]:.2f}x | {rho[0]:.3f}, {rho[1]:.3f} |")
    if card.get("notes"):
        notes = [card["notes"]] if isinstance(card["notes"], str) else card["notes"]  # one paragraph or several
        lines += ["", "## Notes", "", "\n\n".join(notes)]
    return "\n".join(lines) + "\n"
