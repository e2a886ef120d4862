"""Facial-region breakdown of a map: which parts of the face hold its positive mass.

A region template is placed on each face from its five landmarks (eyes, nose tip, mouth
corners; :data:`ferx.face_detectors.LANDMARKS`): the similarity transform (scale, rotation,
shift; scikit-image's ``SimilarityTransform``, least squares) that carries the canonical five
points :data:`CANONICAL` onto the face's landmarks carries the region shapes below onto the crop.
Five points fix position, scale and roll — enough for a template, not for a person's own
outline (a wide jaw or a high hairline is not followed).

The canonical frame has its origin between the eyes, x to the image's right, y down, and the
eye-to-eye distance (IOD) as unit. ``CANONICAL`` are the ArcFace 112-px alignment points in that
frame. Regions, in priority order (a pixel belongs to the first that contains it):

==========  ===========================================================================
eyes        two ellipses centred on the eyes, semi-axes 0.30 x 0.17 IOD
brows       two ellipses centred 0.33 IOD above the eyes, semi-axes 0.36 x 0.13 IOD
nose        an ellipse from the eye line to below the nose tip: centre (0, 0.40), 0.24 x 0.36
mouth       an ellipse around the mouth corners: centre (0, 1.13), 0.70 x 0.30 (wide enough for a smile's
            corners, as far as (+-0.57, 1.0): all of 686 detected on 343 FER-2013 test faces made photos)
forehead    the face oval above y = -0.45 (above the brows)
cheeks/jaw  the rest of the face oval: cheeks, jaw and chin
off-face    outside the face oval, an ellipse centred (0, 0.35) with semi-axes 1.05 x 1.60 IOD
==========  ===========================================================================

Each region has one name, the same in text, tables, figures and JSON.

For every map, :func:`region_breakdown` gives each region's share of the map's *positive* mass
(for signed maps, the evidence for the target, the negative part left out; for unsigned maps, the
values above the map's own minimum, the floor it is coloured from) next to its share
of the crop's area: a region holding 40 % of the mass on 6 % of the area is where the map looks.
A map with more than :data:`OFF_FACE_WARNING` of its mass off the face, and at least
:data:`OFF_FACE_DENSITY` times denser there than on the face, gets a warning: the model may be
using a shortcut (background, hair, borders) rather than the expression. (A map spread evenly over
a crop that is mostly background holds most of its mass off the face without preferring it.)

Dataset faces have no landmarks of their own; they get the mean-face template
(:data:`ferx.faces.MEAN_FACE`, the mean MTCNN landmarks of FER-2013 faces).
"""

from __future__ import annotations

import numpy as np

REGIONS = ("eyes", "brows", "nose", "mouth", "forehead", "cheeks/jaw", "off-face")
OFF_FACE = REGIONS[-1]
OFF_FACE_WARNING = 0.5  # share of positive mass outside the face oval above which a map is flagged ...
OFF_FACE_DENSITY = 1.2  # ... when its mass per pixel off the face is also at least this times that on the face
CANONICAL = np.array([[-0.5, 0.003], [0.5, -0.003], [0.003, 0.571], [-0.408, 1.157], [0.420, 1.152]])
_EYE_X, _BROW_Y = 0.5, -0.33


def _ellipse(x, y, cx, cy, ax, ay):
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1.0


def region_labels(landmarks: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """An H x W array of indices into :data:`REGIONS` for an image of ``size`` whose face has
    ``landmarks`` (5 x 2, that image's pixels)."""
    from skimage.transform import SimilarityTransform

    h, w = (size, size) if isinstance(size, int) else size
    src = np.asarray(landmarks, dtype=np.float64)  # image pixels -> canonical frame
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        tform = SimilarityTransform.from_estimate(src, CANONICAL)
    else:
        tform = SimilarityTransform()
        tform = tform if tform.estimate(src, CANONICAL) else None
    if not tform or not np.isfinite(tform.params).all():
        raise ValueError("the landmarks do not fix a face frame (all five at one point?)")
    yy, xx = np.mgrid[0:h, 0:w]
    x, y = tform(np.c_[xx.ravel() + 0.5, yy.ravel() + 0.5]).T  # pixel centres
    oval = _ellipse(x, y, 0.0, 0.35, 1.05, 1.60)
    masks = {
        "eyes": _ellipse(x, y, -_EYE_X, 0, 0.30, 0.17) | _ellipse(x, y, _EYE_X, 0, 0.30, 0.17),
        "brows": _ellipse(x, y, -0.52, _BROW_Y, 0.36, 0.13) | _ellipse(x, y, 0.52, _BROW_Y, 0.36, 0.13),
        "nose": _ellipse(x, y, 0.0, 0.40, 0.24, 0.36),
        "mouth": _ellipse(x, y, 0.0, 1.13, 0.70, 0.30),
        "forehead": oval & (y < -0.45),
        "cheeks/jaw": oval,
    }
    labels = np.full(h * w, REGIONS.index(OFF_FACE), dtype=np.int8)
    for name in reversed(REGIONS[:-1]):  # the first region in REGIONS wins where shapes overlap
        labels[masks[name]] = REGIONS.index(name)
    return labels.reshape(h, w)


def positive_mass(flat: np.ndarray, signed: bool) -> np.ndarray:
    """The mass of each map of ``flat`` (N x pixels): a signed map's positive part (the evidence for the
    target), an unsigned map's values above its own minimum (the floor it is coloured from)."""
    flat = np.asarray(flat, dtype=np.float64)
    return np.clip(flat, 0, None) if signed else flat - flat.min(1, keepdims=True)


def region_breakdown(values: np.ndarray, labels: np.ndarray, signed: bool = False) -> dict:
    """Share of ``values``' positive mass and share of area per region (``labels`` from
    :func:`region_labels`, same shape; a map at another size is resized to it first).

    Positive mass: for a signed map its positive part; for an unsigned one its values above the
    map's own minimum (as maps are coloured) — a gate map in (0, 1) that keeps every position at
    about 0.5 would otherwise spread its mass like the area, however it varies."""
    from ferx.explain.maps import resize_map

    values = np.nan_to_num(np.asarray(values, dtype=np.float64))
    if values.shape != labels.shape:
        values = resize_map(values, labels.shape).astype(np.float64)
    pos = positive_mass(values.reshape(1, -1), signed)[0]
    flat = labels.ravel()
    total = pos.sum()
    mass = np.bincount(flat, weights=pos, minlength=len(REGIONS)) / total if total > 0 else None
    area = np.bincount(flat, minlength=len(REGIONS)) / flat.size
    shares = {r: {"mass": None if mass is None else round(float(mass[i]), 4), "area": round(float(area[i]), 4)}
              for i, r in enumerate(REGIONS)}
    off = None if mass is None else float(mass[REGIONS.index(OFF_FACE)])
    warning = None
    off_area = float(area[REGIONS.index(OFF_FACE)])
    # most of the mass off the face, and denser there than on the face (a map spread evenly over a crop that is
    # mostly background is not a shortcut, only a map that prefers the background)
    if off is not None and off > OFF_FACE_WARNING and 0 < off_area < 1 \
            and off / off_area >= OFF_FACE_DENSITY * (1 - off) / (1 - off_area):
        warning = (f"off-face shortcut? {off:.0%} of this map's positive mass lies outside the face "
                   f"(the off-face area is {area[REGIONS.index(OFF_FACE)]:.0%} of the crop)")
    return {"regions": shares, "off_face_mass": None if off is None else round(off, 4), "warning": warning}


def breakdown_line(breakdown: dict | None, top: int = 3) -> str:
    """'mouth 41 % (area 7 %), eyes 22 % (6 %), cheeks/jaw 15 % (30 %)' — the regions holding most mass."""
    if not breakdown or breakdown["off_face_mass"] is None:
        return "no positive mass"
    shares = sorted(breakdown["regions"].items(), key=lambda kv: -kv[1]["mass"])[:top]
    return ", ".join(f"{r} {s['mass']:.0%} ({'area ' if i == 0 else ''}{s['area']:.0%})"
                     for i, (r, s) in enumerate(shares))


def face_labels(face) -> np.ndarray:
    """Region labels over a :class:`ferx.faces.Face`'s crop, from its crop landmarks (the mean face when it has none)."""
    from ferx.faces import MEAN_FACE

    lm = face.crop_landmarks if face.crop_landmarks is not None else MEAN_FACE * face.crop_size
    return region_labels(lm, face.crop_size)
