"""Packed splits: every image of a split decoded once into one uint8 array.

Training and evaluation read a :class:`PackedSplit` (N x S x S gray, or N x S x S x 3 RGB) instead
of decoding tens of thousands of small files per epoch. Packs are cached as ``.npz`` under
``<data root>/.cache/packed/`` (or ``$FERX_CACHE_DIR/packed``), named by the split's fingerprint (files, sizes, labels), the
size and the colour mode, so a changed dataset is packed again and a stale or corrupt cache file
is rebuilt, never trusted. Images are stored as horizontal differences (mod 256) before zlib, as
PNG's 'Sub' filter does: FER-2013's training split (28,709 faces at 48x48, 63 MiB in memory)
takes 53.5 MiB on disk instead of 60 MiB, so train + validation travel to a GPU machine in one
64 MiB transfer.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from ferx.cache import atomic_path, cached
from ferx.data.datasets import FACE_CHOICES, FACES, FaceSplit, split_title
from ferx.data.labels import get_label_set
from ferx.faces import ImageError, load_photo
from ferx.paths import cache_dir as default_cache_dir
from ferx.text import plural

log = logging.getLogger(__name__)
PACK_VERSION = 2
# Photos searched for faces at once (faces="detect"), each in its own thread with its own detector: on
# 2 cores a folder of 256-px photos packs ~1.5x as fast as one photo at a time (bench/bench_photos.py).
PHOTO_WORKERS = min(2, os.cpu_count() or 1)



def spread_indices(total: int, n: int) -> np.ndarray:
    """``min(n, total)`` indices evenly spread over ``range(total)``, first and last included."""
    return np.linspace(0, total - 1, min(n, total)).round().astype(int)  # step >= 1: no index twice

@dataclass
class PackedSplit:
    dataset: str
    split: str
    fingerprint: str
    classes: tuple[str, ...]
    images: np.ndarray  # uint8, N x S x S (gray) or N x S x S x 3 (RGB)
    targets: np.ndarray  # int64
    paths: np.ndarray  # str, relative to the dataset root
    soft_targets: np.ndarray | None = None
    skipped: int = 0  # unreadable files left out
    no_face: int = 0  # photos without a face (faces="detect"), left out
    faces: str = "given"  # "given": each image is a face; "detect:<face>:<detector>": faces found in photos
    unreadable: tuple[str, ...] = ()  # the unreadable files' paths, relative to the dataset root (a zip: inside it)

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def labels(self):
        return get_label_set(list(self.classes))

    def take(self, idx: np.ndarray) -> "PackedSplit":
        """The samples at ``idx``; the fingerprint records the selection."""
        idx = np.asarray(idx, dtype=np.int64)
        tag = hashlib.sha256(idx.tobytes()).hexdigest()[:12]
        return PackedSplit(self.dataset, self.split, f"{self.fingerprint}+take{len(idx)}:{tag}", self.classes,
                           self.images[idx], self.targets[idx], self.paths[idx],
                           None if self.soft_targets is None else self.soft_targets[idx], self.skipped,
                           self.no_face, self.faces, self.unreadable)

    def head(self, n: int | None) -> "PackedSplit":
        """The first ``n`` samples (a fixed, deterministic slice)."""
        return self if n is None or n >= len(self) else self.take(np.arange(n))

    def spread(self, n: int | None) -> "PackedSplit":
        """``n`` samples evenly spread over the split: fixed and deterministic like :meth:`head`, but
        with the split's class mix where its files are ordered by class (FER-2013 test's first 500
        faces are 491 angry and 9 disgust)."""
        return self if n is None or n >= len(self) else self.take(spread_indices(len(self), n))

    def per_class(self, n: int | None) -> np.ndarray:
        """Indices of the first ``n`` samples of each class in split order, sorted (every sample when
        ``n`` is None or 0): a fixed, class-balanced selection for the dataset-wide map studies."""
        if not n:
            return np.arange(len(self))
        return np.sort(np.concatenate([np.flatnonzero(self.targets == c)[:n] for c in range(len(self.classes))]))

    def save(self, path: Path) -> None:
        arrays = dict(images_dx=_delta_encode(self.images), targets=self.targets, paths=self.paths.astype(str),
                      classes=np.asarray(self.classes), meta=np.asarray([PACK_VERSION, self.skipped, self.no_face]),
                      ident=np.asarray([self.dataset, self.split, self.fingerprint, self.faces]),
                      unreadable=np.asarray(self.unreadable, dtype=str))
        if self.soft_targets is not None:
            arrays["soft_targets"] = self.soft_targets
        with atomic_path(path) as tmp:
            np.savez_compressed(tmp, **arrays)

    @classmethod
    def load(cls, path: Path) -> "PackedSplit":
        with np.load(path, allow_pickle=False) as z:
            version, skipped, *no_face = (int(v) for v in z["meta"])  # packs written before faces="detect": 2 values
            if version != PACK_VERSION:
                raise ValueError(f"pack version {version}, expected {PACK_VERSION}")
            dataset, split, fingerprint, *faces = (str(v) for v in z["ident"])
            if len(z["paths"]) != len(z["targets"]):  # a detect-pack written when a photo without a face kept its path
                raise ValueError("paths and targets differ in length")
            return cls(dataset, split, fingerprint, tuple(str(c) for c in z["classes"]), _delta_decode(z["images_dx"]),
                       z["targets"], z["paths"], z["soft_targets"] if "soft_targets" in z else None, skipped,
                       no_face[0] if no_face else 0, faces[0] if faces else "given",
                       tuple(str(p) for p in z["unreadable"]) if "unreadable" in z else ())


def _delta_encode(images: np.ndarray) -> np.ndarray:
    return np.diff(images, axis=2, prepend=np.zeros_like(images[:, :, :1]))  # uint8 arithmetic wraps mod 256


def _delta_decode(deltas: np.ndarray) -> np.ndarray:
    return np.cumsum(deltas, axis=2, dtype=np.uint8)


def read_image(path: Path, size: int, mode: str) -> np.ndarray:
    """Decode one image to a ``size`` x ``size`` uint8 array in mode ``L`` or ``RGB``, with the
    photo decoder's pixels and checks (:func:`ferx.faces.load_photo`: a dataset face and the same
    file given as a photo are the same pixels; a bomb is refused before decoding)."""
    im = Image.fromarray(load_photo(path, name=path.name).rgb).convert(mode)
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def pack_split(split: FaceSplit, size: int = 48, mode: str | None = None, cache_dir: str | Path | None = None,
               progress: bool = True, faces: str = "given", face: str = "best",
               detector: str | None = None, check: Callable[[], None] | None = None) -> PackedSplit:
    """Decode ``split`` into a :class:`PackedSplit`, from the cache when a valid one exists.

    ``mode`` defaults to the dataset's own colour (gray FER data stays gray: models that want RGB
    replicate it at preprocessing time, so all models share one pack).

    ``faces="given"``: every image is a face, resized to ``size``. ``faces="detect"``: every image is a
    photo whose faces are found and cropped as the app does (:func:`ferx.faces.find_faces`; images
    under :data:`ferx.faces.SMALL_FACE_SIDE` px are taken as faces, as there), each crop stored as
    the ``size``-px pixels a model of that input size scores (:func:`ferx.data.preprocess.model_pixels`:
    the app's crop -> model resize, rounded to uint8); ``face``: ``best`` (face 0, the app's
    default), ``largest`` (the largest box) or ``all`` (every face, each a sample with the photo's label
    and ``#face<k>`` after its path). Photos without a face are left out and counted (``no_face``).
    Photos are searched :data:`PHOTO_WORKERS` at a time, in threads; the pack is the same as one at a time.
    ``check()``, when given, is called before each image is decoded: what it raises ends the packing
    (the app's Stop; photos another thread is already searching finish), and nothing is cached.
    """
    mode = mode or split.mode
    if mode not in ("L", "RGB"):
        raise ValueError(f"mode must be 'L' or 'RGB', got {mode!r}")
    if faces not in FACES:
        raise ValueError(f"faces must be one of {', '.join(FACES)}, got {faces!r}")
    if face not in FACE_CHOICES:
        raise ValueError(f"face must be one of {', '.join(FACE_CHOICES)}, got {face!r}")
    fingerprint = split.fingerprint()
    tag = ""
    if faces == "detect":
        from ferx.face_detectors import DEFAULT_DETECTOR

        faces = f"detect:{face}:{detector or DEFAULT_DETECTOR}"
        fingerprint = hashlib.sha256(f"{fingerprint}|{faces}".encode()).hexdigest()
        tag = "-" + faces.replace(":", "-")
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir("packed")
    safe_name = split.dataset.replace(":", "_").replace("/", "_")
    path = cache_dir / f"{safe_name}-{split.split}-{size}{mode}{tag}-{fingerprint[:16]}.npz"

    def load(p: Path) -> PackedSplit:
        packed = PackedSplit.load(p)
        if packed.fingerprint != fingerprint:
            raise ValueError("it belongs to other data")
        return packed

    return cached(path, load, lambda: _decode(split, size, mode, fingerprint, progress, faces, check),
                  PackedSplit.save, what="packed")


def pack_options(specs, faces: str = "given", face: str = "best", detector: str | None = None) -> dict:
    """``pack_split`` options for models with input ``specs``: with ``faces="detect"`` the pack is made
    at the largest input size among them, in RGB when one of them takes colour — so a model of that
    size scores the app's pixels (smaller ones get those pixels resized)."""
    if faces == "given":
        return {}
    return dict(faces=faces, face=face, detector=detector, size=max(s.size for s in specs),
                mode="RGB" if any(s.channels == 3 for s in specs) else "L")


def faces_note(faces: str, no_face: int) -> str:
    """How a pack's faces were taken from its photos, and how many photos had none, in words (empty for
    faces given): what the CLI's summaries and the app's say after the count of faces."""
    if faces == "given":
        return ""
    _, face, detector = faces.split(":")
    return f" (faces found by {detector}: {FACE_CHOICES[face]}; {plural(no_face, 'photo')} without a face left out)"


# the unreadable files a summary names (the rest are counted)
NAMED_UNREADABLE = 3


def left_out(unreadable: int, non_images: int = 0, names: Sequence[str] = ()) -> str:
    """What a pack did not score, in words (empty when it scored everything): unreadable images (and, for a
    zip, files that are not images), said after the count of faces by the CLI's summaries and the app's. ``names``:
    the unreadable files' paths as the user knows them (a zip's: inside it), the first few named."""
    if names:
        shown = ", ".join(names[:NAMED_UNREADABLE]) + (", …" if len(names) > NAMED_UNREADABLE else "")
        parts = [f"{plural(unreadable, 'unreadable image')} skipped: {shown}"] + (
            [f"{not_images(non_images)} skipped"] if non_images else [])
        return f" ({'; '.join(parts)})"
    parts = ([f"{plural(unreadable, 'unreadable image')}"] if unreadable else []) + (
        [not_images(non_images)] if non_images else [])
    return f" ({' and '.join(parts)} skipped)" if parts else ""


def not_images(n: int) -> str:
    """ "2 files that are not an image" (a zip's README, .DS_Store...)."""
    return f"{plural(n, 'file')} that {'is' if n == 1 else 'are'} not an image"


def read_faces(path: Path, size: int, mode: str, face: str = "best", detector: str | None = None) -> list[np.ndarray]:
    """The faces of one photo as a model of input ``size`` scores them (``pack_split(faces="detect")``):
    ``size`` x ``size`` uint8 arrays in mode ``L`` or ``RGB``, best first; empty when it has none."""
    from ferx.faces import find_faces
    from ferx.models import InputSpec

    search = find_faces(load_photo(path, name=path.name), detector=detector)
    found = search.faces
    if face == "best":
        found = found[:1]
    elif face == "largest":
        found = [found[search.largest()]] if found else []
    channels = 1 if mode == "L" else 3
    spec = InputSpec(size, channels, (0.0,) * channels, (1.0,) * channels)
    return [f.model_pixels(spec) for f in found]


def _searched(paths: list[Path], search: Callable[[Path], list], check: Callable[[], None] | None) -> Iterator[Future]:
    """``search(path)`` of each path as a future, in order, :data:`PHOTO_WORKERS` photos at a time. ``check()``
    runs before each photo is handed out and again in its thread before it is searched; once it has raised
    (the app's Stop), every later photo raises that too, unsearched: only photos already being searched finish."""
    raised: list[BaseException] = []

    def checked() -> None:
        if raised:
            raise raised[0]
        if check is not None:
            try:
                check()
            except BaseException as err:  # a Stop may be reported once only: remember it for the later photos
                raised.append(err)
                raise

    def job(path):
        checked()
        return search(path)

    with ThreadPoolExecutor(PHOTO_WORKERS, thread_name_prefix="ferx-faces") as pool:
        pending: deque[Future] = deque()
        try:
            for path in paths:
                checked()
                pending.append(pool.submit(job, path))
                if len(pending) > PHOTO_WORKERS:
                    yield pending.popleft()
            while pending:
                yield pending.popleft()
        finally:
            for future in pending:
                future.cancel()


def _decode(split: FaceSplit, size: int, mode: str, fingerprint: str, progress: bool, faces: str = "given",
            check: Callable[[], None] | None = None) -> PackedSplit:
    images, keep, bad, unreadable, names, no_face = [], [], [], [], [], 0
    _, face, detector = (faces.split(":") + ["", ""])[:3]
    found_faces = (_searched([split.root / rel for rel in split.paths],
                             lambda path: read_faces(path, size, mode, face, detector), check)
                   if faces != "given" else None)
    try:
        # disable=None: a bar only where stderr is a terminal (none in a log or a pipe)
        for i, rel in enumerate(tqdm(split.paths, desc=f"packing {split_title(split.dataset, split.split)}",
                                     disable=None if progress else True, leave=False)):
            try:
                if found_faces is None:
                    if check is not None:
                        check()
                    images.append(read_image(split.root / rel, size, mode))
                    keep.append(i)
                    names.append(rel)
                    continue
                found = next(found_faces).result()
                no_face += not found
                images += found
                keep += [i] * len(found)
                names += [rel] * len(found) if face != "all" else [f"{rel}#face{k}" for k in range(len(found))]
            except ImageError as err:  # skipped and counted: one bad file never fails the split
                bad.append(str(err))
                unreadable.append(str(rel))
    finally:
        if found_faces is not None:
            found_faces.close()  # a Stop or an error: the photos in flight are finished or dropped
    where = split_title(split.dataset, split.split)  # not the root: a zip's is a scratch folder
    if no_face:
        log.warning("%d of %d readable photo(s) in %s have no face found; left out", no_face, len(split) - len(bad),
                    where)
    if bad:
        log.warning("%d unreadable image(s) skipped in %s, e.g. %s", len(bad), where, "; ".join(bad[:3]))
    if not keep:
        what = "faces found" if no_face else "readable images"
        non_images = split.excluded.get("non_image_files", 0)  # a zip's README, .txt...
        why = bad[:3] + ([not_images(non_images)] if non_images else [])
        raise ValueError(f"no {what} in {where}" + (f" ({'; '.join(why)})" if why else ""))
    sub = split.subset(keep)
    return PackedSplit(split.dataset, split.split, fingerprint, split.labels.classes, np.stack(images), sub.targets,
                       np.asarray(names), sub.soft_targets, len(bad), no_face, faces, tuple(unreadable))
