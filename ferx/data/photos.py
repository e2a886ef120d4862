"""Dataset faces made into photos: a labelled folder for checking the photo path (face detection,
crop) on known labels — ``ferx evaluate FOLDER --faces detect`` — and for timing it
(``bench/bench_photos.py``).

Each face is upscaled (bicubic) to ``face_side`` pixels and padded by edge replication to a
``side``-pixel square, so the detector has to find it in a larger image, as in a portrait.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ferx.data.packed import PackedSplit


def write_photo_folder(packed: PackedSplit, out: str | Path, n: int | None = None, *, side: int = 256,
                       face_side: int = 160, seed: int = 0, quality: int = 92) -> list[Path]:
    """Write ``n`` faces of ``packed`` (a seeded random choice; all when None) as ``side``-px JPEG photos
    in ``out/<class>/<index>.jpg`` (a folder :func:`ferx.data.load_split` reads); returns their paths."""
    if face_side > side:
        raise ValueError(f"face_side {face_side} is larger than the photo ({side})")
    out = Path(out)
    idx = np.arange(len(packed)) if n is None or n >= len(packed) else \
        np.sort(np.random.default_rng(seed).choice(len(packed), n, replace=False))
    before, after = (side - face_side) // 2, side - face_side - (side - face_side) // 2
    paths = []
    for i in idx:
        face = cv2.resize(packed.images[i], (face_side, face_side), interpolation=cv2.INTER_CUBIC)
        photo = cv2.copyMakeBorder(face, before, after, before, after, cv2.BORDER_REPLICATE)
        path = out / packed.classes[packed.targets[i]] / f"{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo).convert("RGB").save(path, quality=quality)
        paths.append(path)
    return paths
