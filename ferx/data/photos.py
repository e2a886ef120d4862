"""Dataset faces made into photos: a labelled folder for checking the photo path (face detection,
crop) on known labels — ``ferx evaluate FOLDER --faces detect`` — and for timing it
(``bench/bench_photos.py``); and the app's example photos (:func:`example_faces`).

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


EXAMPLE_CLASSES = ("happy", "surprise", "sad", "angry")  # one FER-2013 test face of each


def example_faces(packed: PackedSplit, out: str | Path, classes=EXAMPLE_CLASSES, side: int = 192) -> list[tuple[Path, str]]:
    """One face of each of ``classes``: the first of its class in split order that the face detector finds
    when enlarged to ``side`` px (a face it can place landmarks on), written as it is stored (48 px), so the app
    scores it as the dataset's face, an already-cropped one, with the Dataset tab's probabilities. (The enlarged
    copy was detected and cropped with a margin past its edges: smeared borders in every map, "off-face"
    warnings on the app's own examples.) Written to ``out`` (the true label in the file name); returns each
    path with its caption."""
    from ferx.data.datasets import get_dataset_info
    from ferx.faces import find_faces, load_photo

    title = get_dataset_info(packed.dataset).title
    out = Path(out)
    faces = []
    for true in classes:
        for i in np.flatnonzero(packed.targets == packed.classes.index(true)):
            image = Image.fromarray(packed.images[i])
            if not find_faces(load_photo(image.resize((side, side), Image.Resampling.BICUBIC))).no_face:
                path = out / f"{packed.dataset}_{packed.split}_{i}_{true}.png"
                image.save(path)
                faces.append((path, f"{title} {packed.split} face #{i} · true label: {true}"))
                break
    return faces
