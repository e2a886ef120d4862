"""Loaders for the dataset layouts people actually download.

Every loader returns a :class:`FaceSplit`: file paths, integer targets in the dataset's
:class:`~ferx.data.labels.LabelSet`, and (FERPlus) soft targets from annotator votes. Pixels are
read later, once, by :mod:`ferx.data.packed`.

Split names are uniform: ``train``, ``val``, ``test`` (``all`` for everything).

* FER-2013 — ``<root>/fer2013/<folder>/<class>/<Prefix>_<n>.jpg``. The split comes from the file
  name prefix (Training -> train, PublicTest -> val, PrivateTest -> test), not the folder, so 2-
  and 3-folder copies both work.
* FERPlus — ``<root>/ferplus/data/FER2013{Train,Valid,Test}/label.csv`` + PNGs. Majority-vote
  labels: the class with the most of the 10 votes; an image is *excluded* when the top count is
  shared by two or more columns (a tie) or when the top column is ``unknown`` or ``NF`` (not a
  face). Soft targets are the vote shares of the eight emotions.
* CK+48 — ``<root>/ckplus48/CK+48/<class>/S<subject>_*.png``. Split by subject (never by image):
  subjects are ordered by a hash of their id and filled into train / val / test until those hold
  70 / 15 / 15 % of the images — deterministic, and no person is in two splits.
* Image folder — ``<path>/<class>/*`` or ``<path>/<split>/<class>/*`` with class folders named
  in the label vocabulary (``happy`` or ``happiness`` ...).

Named datasets are registered with :func:`register_dataset`: its name, the folder it occupies
under the data root and the archive that holds that folder. Everything else — :func:`load_split`,
``ferx data prepare``, the app's dataset list, the CLI help — reads the registry, so a new
dataset is one decorated loader here (and its card in ``datasets/README.md``).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ferx.data.archive import MAX_FILES, extract_images, zip_digest
from ferx.data.labels import (ALIASES, CKPLUS_7, FER2013_7, FERPLUS_8, LABEL_SETS, LabelSet, canonical_name,
                              get_label_set)
from ferx.cache import atomic_path, cached
from ferx.paths import IMAGE_EXTS, IMAGE_FORMATS, default_data_root
from ferx.paths import cache_dir as default_cache_dir
from ferx.registry import Registry

SPLITS = ("train", "val", "test", "all")
ZIP_PREFIX = "zip:"  # a user's zip, as a split's dataset names it ("zip:my_photos"): its faces are not kept


def from_user_zip(dataset: str) -> bool:
    """Whether a split's ``dataset`` is a user's zip: results derived face by face from it are not cached."""
    return dataset.startswith(ZIP_PREFIX)


def split_title(dataset: str, split: str) -> str:
    """A split as its user knows it, in messages, summaries and figure titles: ``ferplus/test``; a zip by its
    file's name, ``my_faces.zip`` (all of it) or ``my_faces.zip/test`` (its test folder), not ``zip:my_faces/all``."""
    if from_user_zip(dataset):
        name = dataset.removeprefix(ZIP_PREFIX) + ".zip"
        return name if split == "all" else f"{name}/{split}"
    return f"{dataset}/{split}"

# How a split's images become the faces a model scores (ferx.data.packed.pack_split, the CLI's --faces and
# --face, the Dataset tab's zip upload), the first of each the default. Declared here, with the splits,
# so the CLI builds its options without importing the pixel code.
FACES = {"given": "each image is a face: the whole image resized to the model's input",
         "detect": "each image is a photo: its faces are found and cropped as a single photo's are (photos without "
                   "a face are left out and counted)"}
FACE_CHOICES = {"best": "the most face-like face of each photo, as a single photo is scored",
                "largest": "the largest face of each photo",
                "all": "every face of each photo, each with the photo's label"}


class DatasetLayoutError(ValueError):
    """The folder does not look like the dataset it was opened as."""


@dataclass
class FaceSplit:
    dataset: str
    split: str
    root: Path
    labels: LabelSet
    paths: list[str]  # relative to root
    targets: np.ndarray  # int64 indices into labels
    soft_targets: np.ndarray | None = None  # float32 N x K, rows sum to 1
    excluded: dict[str, int] = field(default_factory=dict)  # reason -> count
    mode: str = "L"  # colour of the source images: "L" (gray) or "RGB"

    def __len__(self) -> int:
        return len(self.paths)

    def fingerprint(self) -> str:
        """Changes whenever a file, its size, its label or the label set changes."""
        h = hashlib.sha256(f"{self.dataset}|{self.split}|{','.join(self.labels.classes)}".encode())
        for p, t in zip(self.paths, self.targets.tolist()):
            h.update(f"{p}|{os.path.getsize(self.root / p)}|{t}\n".encode())
        if self.soft_targets is not None:
            h.update(np.ascontiguousarray(self.soft_targets).tobytes())
        return h.hexdigest()

    def subset(self, idx) -> "FaceSplit":
        idx = np.asarray(idx, dtype=np.int64)
        return FaceSplit(self.dataset, self.split, self.root, self.labels, [self.paths[i] for i in idx],
                         self.targets[idx], None if self.soft_targets is None else self.soft_targets[idx],
                         dict(self.excluded), self.mode)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def _find(root: Path, *names: str) -> Path:
    """``root/names`` if it exists (so both the data root and the dataset folder work)."""
    candidate = root.joinpath(*names)
    return candidate if candidate.is_dir() else root


def _images(folder: Path, nested: bool = False):
    """The image files in ``folder``; ``nested``: in its sub-folders too, at any depth, as torchvision's
    ``ImageFolder`` takes a class folder's images (a hidden folder's left out)."""
    found = folder.rglob("*") if nested else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_EXTS
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts[:-1]))


def _layout_error(dataset: str, root: Path, expected: str, prepare: bool = True) -> DatasetLayoutError:
    """``dataset``: a registered name (shown by its title) or what the folder was taken for; ``prepare``: a
    registered dataset, which ``ferx data prepare`` unpacks (advice a user's own folder or zip has no use for)."""
    dataset = DATASETS.get(dataset).title if dataset in DATASETS else dataset
    names = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    found = (", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "") if names else
             "nothing" + ("" if root.is_dir() else " (folder does not exist)"))
    advice = " Run `ferx data prepare` to unpack ../shared/datasets into the data root." if prepare else ""
    return DatasetLayoutError(f"{root} does not look like {dataset}: expected {expected}; found {found}.{advice}")


@dataclass(frozen=True)
class DatasetInfo:
    name: str  # what users type: ``load_split("ckplus", ...)``, ``ferx data prepare ckplus``
    folder: str  # its folder under the data root
    archive: str  # the archive (in ../shared/datasets) whose top-level folder is ``folder``
    title: str
    loader: Callable[[Path, str], FaceSplit]  # (data root or the dataset's own folder, split)


DATASETS: Registry[DatasetInfo] = Registry("dataset", "datasets", missing=ValueError)


def register_dataset(name: str, *, folder: str, archive: str, title: str):
    """Register a loader of the layout *inside* ``folder``; the registered (and returned) loader
    also accepts the data root, which holds ``folder``."""

    def wrap(inner: Callable[[Path, str], FaceSplit]):
        @functools.wraps(inner)
        def loader(root: str | Path, split: str = "test") -> FaceSplit:
            _check_split(split)
            return inner(_find(Path(root), folder), split)

        DATASETS.add(name, DatasetInfo(name, folder, archive, title, loader))
        return loader

    return wrap


list_datasets = DATASETS.names  # registration order: the order of the CLI help and the app's list
get_dataset_info = DATASETS.get


def available_datasets(data_root: str | Path | None = None) -> list[str]:
    """Registered datasets whose folder is present under the data root."""
    root = Path(data_root) if data_root else default_data_root()
    return [info.name for info in DATASETS.records() if (root / info.folder).is_dir()]


FER_PREFIX = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}


@register_dataset("fer2013", folder="fer2013", archive="fer2013.tar", title="FER-2013")
def load_fer2013(root: Path, split: str) -> FaceSplit:
    paths, targets = [], []
    for dirpath, _, files in os.walk(root):
        folder = Path(dirpath)
        for name in files:
            if Path(name).suffix.lower() not in IMAGE_EXTS:
                continue
            prefix = name.split("_", 1)[0]
            if prefix not in FER_PREFIX:
                raise _layout_error("fer2013", root, f"file names Training_*/PublicTest_*/PrivateTest_*, got {folder / name}")
            if split != "all" and FER_PREFIX[prefix] != split:
                continue
            try:
                label = FER2013_7.index(folder.name)
            except (KeyError, ValueError):
                raise _layout_error("fer2013", root, f"class folders {FER2013_7.classes}, got {folder}") from None
            paths.append(str((folder / name).relative_to(root)))
            targets.append(label)
    if not paths:
        raise _layout_error("fer2013", root, "<split folder>/<class>/<Training|PublicTest|PrivateTest>_<n>.jpg")
    order = np.argsort(paths)
    return FaceSplit("fer2013", split, root, FER2013_7, [paths[i] for i in order], np.asarray(targets)[order])


FERPLUS_FOLDERS = {"train": "FER2013Train", "val": "FER2013Valid", "test": "FER2013Test"}


def ferplus_majority(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Majority labels for an N x 10 vote array -> (label or -1, reason code).

    Reason: 0 kept, 1 tie for the top count, 2 top column is unknown / NF.
    """
    top = votes.max(1, keepdims=True)
    tie = (votes == top).sum(1) > 1
    arg = votes.argmax(1)
    not_emotion = arg >= len(FERPLUS_8)
    reason = np.where(tie, 1, np.where(not_emotion, 2, 0))
    return np.where(reason == 0, arg, -1), reason


@register_dataset("ferplus", folder="ferplus", archive="ferplus.tar", title="FERPlus")
def load_ferplus(root: Path, split: str) -> FaceSplit:
    root = _find(root, "data")
    splits = FERPLUS_FOLDERS if split == "all" else {split: FERPLUS_FOLDERS[split]}
    paths, votes, unlabelled = [], [], 0
    for folder in splits.values():
        label_csv = root / folder / "label.csv"
        if not label_csv.is_file():
            raise _layout_error("ferplus", root, f"{folder}/label.csv (FERPlus repository layout after its data-generation step)")
        with open(label_csv, newline="") as f:
            for row in csv.reader(f):
                if len(row) != 12:
                    raise DatasetLayoutError(f"{label_csv}: expected 12 columns (name, box, 10 vote counts), got {len(row)}: {row[:3]}")
                paths.append(f"{folder}/{row[0]}")
                votes.append([int(v) for v in row[2:]])
        # a face whose row is missing from label.csv was dropped without a word (3,370 test faces for 3,371)
        listed = {p.rsplit("/", 1)[1] for p in paths if p.startswith(f"{folder}/")}
        unlabelled += sum(1 for n in os.listdir(root / folder) if Path(n).suffix.lower() in IMAGE_EXTS and n not in listed)
    votes_arr = np.asarray(votes, dtype=np.int64)
    labels, reason = ferplus_majority(votes_arr)
    keep = reason == 0
    emotion_votes = votes_arr[keep, : len(FERPLUS_8)].astype(np.float32)
    return FaceSplit("ferplus", split, root, FERPLUS_8, [p for p, k in zip(paths, keep) if k], labels[keep],
                     emotion_votes / emotion_votes.sum(1, keepdims=True),
                     {"tie": int((reason == 1).sum()), "unknown_or_not_face": int((reason == 2).sum()),
                      **({"no_row_in_label_csv": unlabelled} if unlabelled else {})})


def subject_splits(subjects: list[str], fractions=(0.70, 0.85)) -> dict[str, str]:
    """Subject id -> split, filling splits in hash order by image count (one entry per image)."""
    counts: dict[str, int] = {}
    for s in subjects:
        counts[s] = counts.get(s, 0) + 1
    order = sorted(counts, key=lambda s: hashlib.sha1(s.encode()).hexdigest())
    out, seen, total = {}, 0, len(subjects)
    for s in order:
        out[s] = "train" if seen < fractions[0] * total else "val" if seen < fractions[1] * total else "test"
        seen += counts[s]
    return out


@register_dataset("ckplus", folder="ckplus48", archive="ckplus48.tar", title="CK+48")
def load_ckplus(root: Path, split: str) -> FaceSplit:
    root = _find(root, "CK+48")
    class_dirs = [d for d in sorted(root.iterdir()) if d.is_dir()] if root.is_dir() else []
    if not class_dirs:
        raise _layout_error("ckplus", root, "CK+48/<class>/S<subject>_<seq>_<frame>.png")
    paths, targets = [], []
    for d in class_dirs:
        try:
            label = CKPLUS_7.index(d.name)
        except (KeyError, ValueError):
            raise _layout_error("ckplus", root, f"class folders like {CKPLUS_7.classes}, got {d.name!r}") from None
        paths += [f"{d.name}/{p.name}" for p in _images(d)]
        targets += [label] * (len(paths) - len(targets))
    subjects = [Path(p).name.split("_", 1)[0] for p in paths]
    assignment = subject_splits(subjects)
    keep = [i for i, s in enumerate(subjects) if split == "all" or assignment[s] == split]
    return FaceSplit("ckplus", split, root, CKPLUS_7, [paths[i] for i in keep],
                     np.asarray(targets, dtype=np.int64)[keep])


def load_image_folder(root: str | Path, split: str = "all", labels: LabelSet | None = None) -> FaceSplit:
    """``root/<split>/<class>/*``, or ``root/<class>/*`` whatever ``split`` asks (a folder without split
    folders is one split, named ``all``)."""
    root = Path(root)
    if not root.is_dir():
        raise _layout_error("an image folder", root, "<class>/<image> or <split>/<class>/<image>", prepare=False)
    base = root / split
    if not base.is_dir():
        base, split = root, "all"
    class_dirs = [d for d in sorted(base.iterdir()) if d.is_dir()]
    try:
        names = [canonical_name(d.name) for d in class_dirs]
    except KeyError as err:
        splits = [d.name for d in class_dirs if d.name in SPLITS]
        expected = (f"a split ({', '.join(splits)}: it holds split folders) or class folders" if splits
                    else f"class folders named by expression ({err.args[0]})")
        raise _layout_error("an image folder", base, expected, prepare=False) from None
    if not names:
        raise _layout_error("an image folder", base, "one sub-folder per expression class", prepare=False)
    if labels is None:  # a known label set when the folders match one, else the folders' order
        matches = [s for s in LABEL_SETS.values() if set(s.classes) == set(names)]
        labels = matches[0] if matches else get_label_set(names)
    paths, targets = [], []
    for d, name in zip(class_dirs, names):
        if name not in labels.classes:
            raise DatasetLayoutError(f"{d}: class {name!r} is not in the label set {labels.classes}")
        for p in _images(d, nested=True):  # happy/2019/x.jpg is a happy face: it was left out without a word
            paths.append(str(p.relative_to(root)))
            targets.append(labels.classes.index(name))
    if not paths:
        raise _layout_error("an image folder", base, "images inside the class folders", prepare=False)
    return FaceSplit(f"folder:{root.name}", split, root, labels, paths, np.asarray(targets, dtype=np.int64),
                     mode=_colour_mode(root, paths))


def _colour_mode(root: Path, paths: list[str], sample: int = 32) -> str:
    """'RGB' if any of an evenly spaced sample of images is in colour, else 'L'."""
    from PIL import Image

    for rel in paths[:: max(1, len(paths) // sample)]:
        try:
            with Image.open(root / rel, formats=IMAGE_FORMATS) as im:  # the header only
                if im.mode not in ("1", "L", "LA", "I", "I;16", "F"):
                    return "RGB"
        except (OSError, ValueError, Image.DecompressionBombError):
            continue  # unreadable files and bombs are skipped and counted when the split is packed
    return "L"


def load_split(dataset: str, split: str, data_root: str | Path | None = None,
               cache_dir: str | Path | None = None, max_files: int = MAX_FILES) -> FaceSplit:
    """A registered dataset (:func:`list_datasets`) under the data root, or a path to an image
    folder or to a zip of one (unpacked safely, once, into ``cache_dir`` or ``cache_dir("zips")``;
    ``max_files``: the most files a zip may hold)."""
    if dataset in DATASETS:
        info = DATASETS.get(dataset)
        data = info.loader(Path(data_root) if data_root else default_data_root(), split)
        # every split of a registered dataset holds every class: a class folder lost (a copy cut short, a folder moved)
        # gave 'fear 0' and metrics of 129 CK+ test faces for 144, recorded as CK+ test
        empty = [c for i, c in enumerate(data.labels.classes) if not np.any(np.asarray(data.targets) == i)]
        if empty:
            raise DatasetLayoutError(f"{data.root}: {info.title}'s {split} split has no {', '.join(empty)} face, and "
                                     f"every split of {info.title} has faces of all {len(data.labels)} classes: a class "
                                     f"folder is missing or empty. Delete {info.folder} in the data root and run `ferx data prepare` "
                                     "to unpack it again")
        return data
    path = Path(dataset)
    if path.is_file() and path.suffix.lower() == ".zip":
        return _load_zip(path, split, Path(cache_dir) if cache_dir else default_cache_dir("zips"), max_files)
    if path.is_dir():
        return load_image_folder(dataset, split)
    if path.exists():
        raise ValueError(f"{dataset}: not an image folder or zip")
    if any(sep in dataset for sep in ("/", "\\")) or dataset.startswith((".", "~")) or path.suffix.lower() == ".zip":
        raise ValueError(f"{dataset}: no such folder or zip")  # a path, not a dataset's name
    raise ValueError(f"unknown dataset {dataset!r}: use one of {', '.join(DATASETS)}, or a path to an image folder "
                     "or zip")


def _load_zip(path: Path, split: str, cache_dir: Path, max_files: int) -> FaceSplit:
    """A user zip, unpacked once per content into ``cache_dir``; its marker (``.json``: the root
    inside, the files skipped) is a cache entry like any other: a damaged one is rebuilt."""
    dest = cache_dir / zip_digest(path)[:24]

    def load(marker: Path) -> dict:
        found = json.loads(marker.read_text())
        if not (dest / found["root"]).is_dir() or not isinstance(found["skipped"], int):
            raise ValueError("its folder is gone")
        return found

    def build() -> dict:
        root, skipped = extract_images(path, dest, max_files=max_files, content=frozenset(SPLITS) | frozenset(ALIASES))
        return {"root": str(root.relative_to(dest)), "skipped": skipped}

    def save(found: dict, marker: Path) -> None:
        with atomic_path(marker) as tmp:
            tmp.write_text(json.dumps(found))

    found = cached(dest.with_suffix(".json"), load, build, save, what="unpacked zip")
    try:
        split_data = load_image_folder(dest / found["root"], split)
    except DatasetLayoutError as err:  # name the user's zip, not the server's folder
        raise DatasetLayoutError(str(err).replace(str(dest / found["root"]), path.name)) from None
    split_data.dataset = f"{ZIP_PREFIX}{path.stem}"
    split_data.excluded = {"non_image_files": found["skipped"]} if found["skipped"] else {}
    return split_data
