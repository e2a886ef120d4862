"""Training curves of a ``ferx train`` run: loss and validation accuracy per epoch, as a PNG.

    python bench/plot_curves.py RUN/metrics.jsonl curves.png [--title TEXT]
"""

from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("metrics")
    p.add_argument("out")
    p.add_argument("--title", default="")
    args = p.parse_args()
    with open(args.metrics) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], label="train loss (augmented)")
    ax_loss.plot(epochs, [r["val_loss"] for r in rows], label="validation loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.legend()
    averaged = [r for r in rows if "raw_val_acc" in r]  # epochs of an --ema-decay run: val_acc is the average's
    ax_acc.plot(epochs, [100 * r["val_acc"] for r in rows], color="tab:green",
                label="validation (moving average where kept)" if averaged else None)
    if averaged:
        ax_acc.plot([r["epoch"] for r in averaged], [100 * r["raw_val_acc"] for r in averaged], color="tab:gray",
                    linestyle="--", marker=".", label="validation, raw weights")
    best = max(rows, key=lambda r: r["val_acc"])
    ax_acc.scatter([best["epoch"]], [100 * best["val_acc"]], color="black", zorder=3,
                   label=f"best: epoch {best['epoch']}, {100 * best['val_acc']:.2f} %")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("validation accuracy (%)")
    ax_acc.legend()
    fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"{args.out}: {len(rows)} epochs, best validation accuracy {100 * best['val_acc']:.2f} % (epoch {best['epoch']})")


if __name__ == "__main__":
    main()
