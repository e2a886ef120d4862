"""bf16 autocast against fp32 on CPU: speed, top-1 agreement on test splits, and map agreement.

    python bench/bench_bf16.py [--checkpoints checkpoints/*] [--splits fer2013 ferplus ckplus] [--limit N]
                               [--maps 32] [--batch 64] [--write-cards]

For every checkpoint and every test split whose classes it can score: the logits of the split
(``--limit`` faces spread evenly over each split, all by default) in fp32 and under ``torch.autocast("cpu", bfloat16)``,
the share of faces whose top-1 class is the same, and the largest probability difference; the
speed of one batch of ``--batch`` faces in each precision, alternating (median of 3 each, ratio
bf16 / fp32); for ``--maps`` faces, Grad-CAM (and the native maps when the model has them) in each
precision, and the mean Spearman correlation between the two maps of each face.

bf16 pays only where the CPU has native bf16 instructions (AVX512-BF16 or AMX); elsewhere torch
emulates it and it is slower. Decision rule (issue 18): ``--precision auto`` runs a checkpoint in bf16
on such a CPU only where its top-1 agreement is >= 99.5 % (``ferx.device.BF16_MIN_AGREEMENT``) on each
test split measured; ``--write-cards`` (full splits only) records the figures on each card, where
``ferx.checkpoint.LoadedModel.bf16_agrees`` reads them. Maps stay fp32 everywhere.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

import ferx  # noqa: E402,F401
from ferx.checkpoint import load_checkpoint, read_card, write_card  # noqa: E402
from ferx.data import label_mapping, load_split, pack_split, to_model_input  # noqa: E402
from ferx.device import cpu_has_bf16, describe_hardware  # noqa: E402
from ferx.inference import predict_logits  # noqa: E402

SPLITS = {"fer2013": "test", "ferplus": "test", "ckplus": "test"}


def rate(model, x: torch.Tensor, bf16: bool) -> float:
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        model(x)
        start = time.perf_counter()
        model(x)
        return len(x) / (time.perf_counter() - start)


def maps(loaded, x: torch.Tensor, bf16: bool) -> list[np.ndarray]:
    from ferx.explain import get_method, has_native_attention

    methods = ["gradcam"] + (["native"] if has_native_attention(loaded.model) else [])
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return [np.stack([m.values for m in get_method(name)(loaded.model, x)]) for name in methods]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoints", nargs="+", default=sorted(str(c.parent) for c in (REPO / "checkpoints").glob("*/card.json")))
    p.add_argument("--splits", nargs="+", default=list(SPLITS))
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--maps", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--data-root", default=str(REPO / "datasets"))
    p.add_argument("--write-cards", action="store_true", help="record the figures on each checkpoint's card")
    args = p.parse_args()
    if args.write_cards and args.limit is not None:
        raise SystemExit("--write-cards records full test splits only: drop --limit")
    print(f"CPU native bf16: {cpu_has_bf16()}; torch threads {torch.get_num_threads()}; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'checkpoint':24s} {'split':14s} {'n':>6s} {'top-1 agree':>12s} {'max |dp|':>9s} "
          f"{'img/s fp32':>10s} {'bf16':>8s} {'x':>6s}  map Spearman (mean, min)")
    for ckpt in args.checkpoints:
        loaded = load_checkpoint(ckpt, torch.device("cpu"))
        record = {"measured": time.strftime("%Y-%m-%d"), "hardware": describe_hardware(torch.device("cpu")),
                  "batch": args.batch, "map_faces": args.maps, "n": {}, "top1_agreement": {}, "speed_ratio": {},
                  "map_spearman": {}}
        for dataset in args.splits:
            packed = pack_split(load_split(dataset, SPLITS[dataset], args.data_root), progress=False).spread(args.limit)
            keep = label_mapping(packed.labels, loaded.labels)[packed.targets] >= 0
            images = packed.images[keep]
            fp32 = predict_logits(loaded.model, loaded.input_spec, images, args.batch)
            bf16 = predict_logits(loaded.model, loaded.input_spec, images, args.batch, precision="bf16")
            agree = float((fp32.argmax(1) == bf16.argmax(1)).float().mean())
            dp = float((torch.softmax(fp32, 1) - torch.softmax(bf16, 1)).abs().max())
            x = to_model_input(images[:args.batch], loaded.input_spec)
            rates = {False: [], True: []}
            for _ in range(3):
                for b in (False, True):
                    rates[b].append(rate(loaded.model, x, b))
            r32, r16 = statistics.median(rates[False]), statistics.median(rates[True])
            xm = to_model_input(images[:args.maps], loaded.input_spec)
            rhos = []
            for a, b in zip(maps(loaded, xm, False), maps(loaded, xm, True)):
                rhos += [spearmanr(u.ravel(), v.ravel())[0] for u, v in zip(a, b)]
            rhos = np.nan_to_num(np.asarray(rhos), nan=1.0)  # two flat maps agree
            print(f"{Path(ckpt).name:24s} {dataset + '/test':14s} {int(keep.sum()):6d} {100 * agree:11.2f}% {dp:9.4f} "
                  f"{r32:10.1f} {r16:8.1f} {r16 / r32:6.2f}  {rhos.mean():.3f}, {rhos.min():.3f}", flush=True)
            split = f"{dataset}/test"
            record["n"][split] = int(keep.sum())
            record["top1_agreement"][split] = round(agree, 5)
            record["speed_ratio"][split] = round(r16 / r32, 3)
            record["map_spearman"][split] = [round(float(rhos.mean()), 4), round(float(rhos.min()), 4)]
        if args.write_cards:
            card = read_card(ckpt)
            card["bf16"] = record
            write_card(ckpt, card)
            print(f"{Path(ckpt).name}: bf16 figures written to its card; --precision auto uses "
                  f"{load_checkpoint(ckpt).compute_dtype()} on this CPU", flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
