"""Face detection rates, MTCNN (ferx's detector) next to the Haar cascade, on the same images.

    python bench/bench_detectors.py [--faces 300] [--composites 40] [--seed 0]

Images (all built here from files on this machine; nothing downloaded):
* FER-2013 test faces (a seeded sample of the PrivateTest split) as-is (48 px), upscaled to
  192 px, and upscaled + padded to 288 px (48 px of replicated edge on each side). Found = a box
  whose centre lies in the middle half of the image and whose side is at least 30 % of the face's.
* Composites: 1200 x 800 synthetic backgrounds (gradients + blurred noise) with three FER-2013 test
  faces pasted at 150-300 px. Found = a box whose centre lies inside a pasted face; every other box
  is a false positive.
* Face-free: photos without a human face that scikit-image ships (coffee, rocket, brick, grass, gravel,
  coins, moon, page, Hubble deep field, immunohistochemistry, retina, colour wheel, text, clock, cell,
  motorcycle, horse silhouette, phantom, checkerboard — random crops of each at 320-900 px) and generated
  textures (noise, blurred noise, stripes, gradients). Any box is a false positive.
* Portraits: scikit-image's ``astronaut`` (512 px) and the same photo upscaled to 3024 px: is face 0 the
  same face at both sizes?

Prints rates per set for both detectors and the ms per image.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

import ferx  # noqa: F401  (torchvision compatibility before anything imports timm)
from ferx.data import load_fer2013, pack_split
from ferx.face_detectors import DETECTORS, detect
from ferx.paths import default_data_root

FACE_FREE = ("coffee", "rocket", "brick", "grass", "gravel", "coins", "moon", "page", "hubble_deep_field",
             "immunohistochemistry", "retina", "colorwheel", "text", "clock", "cell", "horse",
             "shepp_logan_phantom", "checkerboard")


def rgb(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        a = (255 * (a - a.min()) / max(1e-9, float(a.max() - a.min()))).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, 2)
    return np.ascontiguousarray(a[..., :3])


def background(rng, h=800, w=1200) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([a + b * xx + c * yy for a, b, c in rng.uniform(-80, 200, (3, 3))], -1)
    noise = cv2.GaussianBlur(rng.normal(0, 40, (h, w, 3)), (0, 0), float(rng.uniform(3, 25)))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def face_free(rng) -> list[tuple[str, np.ndarray]]:
    import skimage.data

    out = []
    for name in FACE_FREE:
        im = rgb(skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)())
        h, w = im.shape[:2]
        for _ in range(5):
            s = int(rng.uniform(0.5, 1.0) * min(h, w))
            y, x = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
            side = int(rng.uniform(320, 900))
            out.append((f"photo:{name}", cv2.resize(im[y:y + s, x:x + s], (side, side), interpolation=cv2.INTER_CUBIC)))
    im = rgb(skimage.data.stereo_motorcycle()[0])
    out += [("photo:motorcycle", im), ("photo:motorcycle", np.ascontiguousarray(im[:, ::-1]))]
    for i in range(40):
        kind = ("noise", "blurred noise", "stripes", "gradient")[i % 4]
        h, w = 480, 640
        if kind == "noise":
            im = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        elif kind == "blurred noise":
            im = rgb(cv2.GaussianBlur(rng.normal(0, 1, (h, w, 3)), (0, 0), float(rng.uniform(2, 30))))
        elif kind == "stripes":
            yy, xx = np.mgrid[0:h, 0:w]
            f, t = rng.uniform(0.02, 0.3), rng.uniform(0, np.pi)
            im = rgb(np.sin(f * (xx * np.cos(t) + yy * np.sin(t))))
        else:
            im = background(rng, h, w)
        out.append((f"texture:{kind}", im))
    return out


def found_face(dets, cx, cy, half, min_side) -> bool:
    return any(abs((d.box[0] + d.box[2]) / 2 - cx) <= half and abs((d.box[1] + d.box[3]) / 2 - cy) <= half
               and max(d.box[2] - d.box[0], d.box[3] - d.box[1]) >= min_side for d in dets)


def timed(det, im, times):
    t = time.perf_counter()
    out = detect(im, det)
    times[det].append(time.perf_counter() - t)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int, default=300)
    ap.add_argument("--composites", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    fer = pack_split(load_fer2013(default_data_root(), "test"), progress=False)
    idx = rng.choice(len(fer.images), args.faces, replace=False)
    times = {d: [] for d in DETECTORS}
    rows = []

    for variant in ("48 px as-is", "192 px", "192 px + 48 px pad"):
        hits = {d: 0 for d in DETECTORS}
        for i in idx:
            im = rgb(fer.images[i])
            if variant != "48 px as-is":
                im = cv2.resize(im, (192, 192), interpolation=cv2.INTER_CUBIC)
            if variant.endswith("pad"):
                im = cv2.copyMakeBorder(im, 48, 48, 48, 48, cv2.BORDER_REPLICATE)
            side = im.shape[0] - (96 if variant.endswith("pad") else 0)
            c = im.shape[0] / 2
            for d in DETECTORS:
                hits[d] += found_face(timed(d, im, times), c, c, side / 4, 0.3 * side)
        rows.append((f"FER-2013 test, {variant}", f"{len(idx)} faces",
                     *(f"{100 * hits[d] / len(idx):.1f} % found" for d in DETECTORS)))

    hits, false = {d: 0 for d in DETECTORS}, {d: 0 for d in DETECTORS}
    n_faces = 0
    for c in range(args.composites):
        canvas = background(rng)
        placed = []
        for k in range(3):
            s = int(rng.integers(150, 301))
            x, y = 40 + k * 390 + int(rng.integers(0, 340 - s + 1)), int(rng.integers(20, 800 - s - 20))
            face = cv2.resize(rgb(fer.images[rng.integers(len(fer.images))]), (s, s), interpolation=cv2.INTER_CUBIC)
            canvas[y:y + s, x:x + s] = face
            placed.append((x, y, s))
        n_faces += len(placed)
        for d in DETECTORS:
            dets = timed(d, canvas, times)
            hits[d] += sum(found_face(dets, x + s / 2, y + s / 2, s / 2, 0.3 * s) for x, y, s in placed)
            false[d] += sum(not any(x <= (b.box[0] + b.box[2]) / 2 <= x + s and y <= (b.box[1] + b.box[3]) / 2 <= y + s
                                    for x, y, s in placed) for b in dets)
    rows.append(("composites, 3 faces on 1200x800", f"{n_faces} faces",
                 *(f"{100 * hits[d] / n_faces:.1f} % found, {false[d]} false" for d in DETECTORS)))

    free = face_free(rng)
    for group in ("photo", "texture"):
        ims = [im for name, im in free if name.startswith(group)]
        counts = {d: [len(timed(d, im, times)) for im in ims] for d in DETECTORS}
        rows.append((f"face-free {'photos (scikit-image data, crops)' if group == 'photo' else 'generated textures'}",
                     f"{len(ims)} images",
                     *(f"{100 * np.mean(np.array(counts[d]) > 0):.1f} % with a box ({sum(counts[d])} boxes)"
                       for d in DETECTORS)))

    import skimage.data

    portrait = skimage.data.astronaut()
    big = cv2.resize(portrait, (3024, 3024), interpolation=cv2.INTER_CUBIC)
    for d in DETECTORS:
        small_dets, big_dets = detect(portrait, d), detect(big, d)
        same = bool(small_dets and big_dets) and found_face(
            big_dets[:1], *((small_dets[0].box[:2] + small_dets[0].box[2:]) / 2 * 3024 / 512),
            small_dets[0].side * 3024 / 512 / 4, 0.5 * small_dets[0].side * 3024 / 512)
        rows.append((f"portrait 'astronaut' 512 px -> 3024 px [{d}]", f"{len(small_dets)} / {len(big_dets)} faces",
                     "face 0 is the same face" if same else "face 0 differs", ""))

    width = max(len(r[0]) for r in rows)
    print(f"{'images':<{width}}  {'n':<12}  {'MTCNN (ferx)':<34}  Haar")
    for r in rows:
        print(f"{r[0]:<{width}}  {r[1]:<12}  {r[2]:<34}  {r[3]}")
    print("ms per image (median, all sets): " + ", ".join(f"{d} {1000 * np.median(times[d]):.0f}" for d in DETECTORS))


if __name__ == "__main__":
    main()
