"""Carry a checkpoint's weights to the GPU machine as int8, so a lent GPU continues them instead of starting over.

A device call takes at most 64 MiB of working tree. Conv-cut's committed float16 shards are 101 MiB, and
the FERPlus carry file that training needs is 47 MiB: neither the weights alone nor the two together
travel. Quantised to int8 per output channel (each row of a weight matrix or each output filter scaled by
its largest magnitude / 127; biases, norms and other small tensors kept as float32), Conv-cut's weights
take about 50 MiB, one call of their own; the machine keeps them (an ignored path) for the next call,
chained within its idle release, which carries the dataset and trains.

    python bench/carry_weights.py pack checkpoints/convcut_ferplus .carry/convcut_ferplus.zip
    python bench/carry_weights.py unpack .carry/convcut_ferplus.zip runs/gpu/init   # -> runs/gpu/init/convcut_ferplus

``unpack`` writes an ordinary ferx checkpoint folder (float32 weights, named after the source checkpoint)
for ``ferx train --init-from``; its card is the source's card with a ``carried`` record (the source's
weights sha256, the scheme, the largest weight error), which ``ferx train`` copies into the new card's
``initialised_from``. The rounding error (at most half a step, 1/254 of a row's largest magnitude) is far
below what one training step changes; ``pack`` prints it. Conv-cut's copy (51.2 MiB, largest error 0.0025)
scores what its source scores on FERPlus validation: 2,736 of 3,396 faces, 80.57 % (``ferx evaluate
--precision fp32``).
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from pathlib import Path

import torch
from safetensors.torch import load as load_bytes, save as save_bytes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ferx.checkpoint import build_model, load_checkpoint, save_checkpoint  # noqa: E402
from ferx.data.labels import get_label_set  # noqa: E402
from ferx.models import InputSpec  # noqa: E402

FORMAT = "ferx-weights-carry/1"
SCHEME = "int8 per output channel (symmetric, largest magnitude / 127); 1-D tensors and those under 4,096 values float32"
SCALE = ".int8_scale"  # suffix of the key holding a quantised tensor's per-channel scales
MIN_QUANTISED = 4096  # values: smaller tensors (biases, norms, BN statistics) travel as float32


def quantise(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], float]:
    """int8 rows and float32 scales for each large floating tensor; the largest absolute rounding error."""
    out, worst = {}, 0.0
    for key, t in state.items():
        t = t.detach().cpu()
        if not t.is_floating_point() or t.ndim < 2 or t.numel() < MIN_QUANTISED:
            out[key] = (t.float() if t.is_floating_point() else t).contiguous()
            continue
        rows = t.float().reshape(len(t), -1)
        scale = rows.abs().amax(dim=1).clamp_min(1e-12) / 127
        q = torch.round(rows / scale[:, None]).clamp(-127, 127).to(torch.int8)
        worst = max(worst, float((q.float() * scale[:, None] - rows).abs().max()))
        out[key], out[key + SCALE] = q.reshape(t.shape).contiguous(), scale
    return out, worst


def dequantise(packed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = {}
    for key, t in packed.items():
        if key.endswith(SCALE):
            continue
        scale = packed.get(key + SCALE)
        state[key] = t if scale is None else (t.float().reshape(len(t), -1) * scale[:, None]).reshape(t.shape)
    return state


def pack(ckpt: Path, out: Path) -> dict:
    source = load_checkpoint(ckpt)
    packed, worst = quantise(source.model.state_dict())
    manifest = {"format": FORMAT, "checkpoint": ckpt.resolve().name, "source_sha256": source.sha256,
                "scheme": SCHEME, "max_abs_error": worst}
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")  # an interrupted pack leaves no zip that looks whole
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as z:  # xz -6 made Conv-cut's 9 % smaller: not worth it
        z.writestr("manifest.json", json.dumps(manifest, indent=1))
        z.writestr("card.json", json.dumps(source.card, indent=1))
        z.writestr("weights.safetensors", save_bytes(packed))
    partial.replace(out)
    return manifest


def unpack(carried: Path, dest_root: Path) -> Path:
    try:
        with zipfile.ZipFile(carried) as z:
            manifest = json.loads(z.read("manifest.json"))
            card = json.loads(z.read("card.json"))
            packed = load_bytes(z.read("weights.safetensors"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as err:
        raise SystemExit(f"{carried.name} is not a readable weights carry file ({err})") from None
    if manifest.get("format") != FORMAT:
        raise SystemExit(f"{carried.name}: weights carry format {manifest.get('format')!r}, expected {FORMAT}")
    model = build_model(card, dequantise(packed), carried.name)
    spec = InputSpec.from_dict(card["input_spec"])
    provenance = {k: v for k, v in card.items()
                  if k not in ("format", "model", "config", "labels", "label_set", "input_spec", "parameters", "weights",
                              "metrics", "bf16")}  # measured on the source's weights, not on this copy's
    provenance["carried"] = {"source_sha256": manifest["source_sha256"], "scheme": manifest["scheme"],
                             "max_abs_error": manifest["max_abs_error"]}
    return save_checkpoint(model, dest_root / manifest["checkpoint"], labels=get_label_set(card["labels"]),
                           input_spec=spec, card=provenance)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("pack", help="a checkpoint folder -> one int8 carry file")
    a.add_argument("checkpoint", type=Path)
    a.add_argument("out", type=Path)
    b = sub.add_parser("unpack", help="a carry file -> DEST/<checkpoint name>/, a float32 checkpoint for --init-from")
    b.add_argument("carried", type=Path)
    b.add_argument("dest", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "pack":
        manifest = pack(args.checkpoint, args.out)
        print(json.dumps(manifest, indent=1))
        print(f"{args.out}: {args.out.stat().st_size / 2**20:.1f} MiB")
    else:
        print(unpack(args.carried, args.dest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
