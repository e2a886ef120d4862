"""Does levelling the eyes (``find_faces(..., align=True)``) help the shipped checkpoints?

    python bench/bench_alignment.py [--faces 200] [--angle 20] [--seed 0]

A seeded sample of FER-2013 test faces (PrivateTest), upright and rotated by ±``--angle`` degrees
(random sign, edge-replicated, the same 48 px), each scored by every FER-2013 checkpoint as it is
and after alignment (MTCNN landmarks on the face, the crop rotated so the eyes are level).
Prints accuracy per model and condition, and how often alignment had landmarks to use.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch
from PIL import Image

import ferx  # noqa: F401
from ferx.checkpoint import load_checkpoint
from ferx.data import load_fer2013, pack_split, to_model_input
from ferx.faces import find_faces, load_photo
from ferx.paths import default_checkpoints, default_data_root


def rotate(gray: np.ndarray, angle: float) -> np.ndarray:
    h, w = gray.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    return cv2.warpAffine(gray, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int, default=200)
    ap.add_argument("--angle", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    fer = pack_split(load_fer2013(default_data_root(), "test"), progress=False)
    idx = rng.choice(len(fer.images), args.faces, replace=False)
    angles = rng.choice([-args.angle, args.angle], len(idx))
    crops = {}
    with_landmarks = {"upright": 0, "rotated": 0}
    for name, images in (("upright", [fer.images[i] for i in idx]),
                         ("rotated", [rotate(fer.images[i], a) for i, a in zip(idx, angles)])):
        aligned = []
        for g in images:
            face = find_faces(load_photo(Image.fromarray(g)), align=True).faces[0]
            with_landmarks[name] += face.landmark_source != "template"
            aligned.append(cv2.cvtColor(face.crop, cv2.COLOR_RGB2GRAY))
        crops[name] = np.stack(images)
        crops[f"{name} + align"] = np.stack(aligned)
    targets = fer.targets[idx]
    print(f"{len(idx)} FER-2013 test faces, rotation ±{args.angle:g}°; landmarks found on "
          f"{with_landmarks['upright']} upright and {with_landmarks['rotated']} rotated faces (else nothing is rotated)")
    print(f"{'checkpoint':<24}" + "".join(f"{c:>18}" for c in crops))
    for folder in sorted(default_checkpoints().glob("*fer2013*/card.json")):
        loaded = load_checkpoint(folder.parent, "cpu")
        accs = []
        for images in crops.values():
            with torch.inference_mode():
                logits = torch.cat([loaded.model(to_model_input(images[s:s + 64], loaded.input_spec))
                                    for s in range(0, len(images), 64)])
            pred = [fer.classes.index(loaded.labels.classes[p]) for p in logits.argmax(1).tolist()]
            accs.append(100 * np.mean(np.array(pred) == targets))
        print(f"{folder.parent.name:<24}" + "".join(f"{a:>17.1f}%" for a in accs))


if __name__ == "__main__":
    main()
