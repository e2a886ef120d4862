"""Carry files: packed splits in one lossless file small enough to travel to a GPU machine.

A GPU machine lent to the project receives at most 64 MiB of working tree per run and has no
copy of the datasets. A carry file holds the packed splits a training run needs (pixels, targets,
FERPlus vote distributions, paths, fingerprints) as one uncompressed zip whose pixels are lossless
WebP mosaics of the 48-px faces. Measured on the validation splits: WebP lossless 1.73 KB a face for
FER-2013 and 1.54 KB for FERPlus, against 1.80 / 1.64 KB for horizontal deltas + lzma (preset 9e)
and 1.83 / 1.67 KB for ferx's zlib packs. One dataset per device call: FERPlus train + val (30,336
faces) and FER-2013 train + val (32,298) would not travel together.

On the other machine ``read_carry`` rebuilds exactly the :class:`PackedSplit` s that ``pack_split``
gives here (same pixels, checked by sha256; same fingerprints), so a checkpoint's card names the
same data whichever machine trained it. ``ferx train --carried FILE`` trains from one.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from ferx.data.packed import PackedSplit

CARRY_VERSION = 1
WEBP_MAX_SIDE = 16383  # WebP's largest image side


def _pixels_sha256(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


def _mosaics(images: np.ndarray) -> list[np.ndarray]:
    """Tile N x S x S (x 3) faces row-major into as few mosaics as WebP's size limit allows."""
    n, size = len(images), images.shape[1]
    per_side = WEBP_MAX_SIDE // size
    per_mosaic = per_side * per_side
    out = []
    for start in range(0, n, per_mosaic):
        chunk = images[start:start + per_mosaic]
        cols = min(per_side, math.ceil(math.sqrt(len(chunk))))
        rows = math.ceil(len(chunk) / cols)
        tiles = np.zeros((rows * cols, *chunk.shape[1:]), np.uint8)
        tiles[:len(chunk)] = chunk
        tiles = tiles.reshape(rows, cols, size, size, *chunk.shape[3:])
        out.append(tiles.swapaxes(1, 2).reshape(rows * size, cols * size, *chunk.shape[3:]))
    return out


def _untile(mosaic: np.ndarray, size: int, count: int) -> np.ndarray:
    rows, cols = mosaic.shape[0] // size, mosaic.shape[1] // size
    tiles = mosaic.reshape(rows, size, cols, size, *mosaic.shape[2:]).swapaxes(1, 2)
    return tiles.reshape(rows * cols, size, size, *mosaic.shape[2:])[:count]


def _write_npy(z: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)  # paths are UTF-32 in .npy: deflate takes them from 2.9 MB to ~0.2
    z.writestr(name, buf.getvalue(), compress_type=zipfile.ZIP_DEFLATED)


def write_carry(packs: list[PackedSplit], path: str | Path, webp_method: int = 4) -> Path:
    """Write ``packs`` (one dataset, distinct splits) to ``path`` atomically; returns the path."""
    if not packs:
        raise ValueError("nothing to carry")
    datasets = {p.dataset for p in packs}
    if len(datasets) != 1 or len({p.split for p in packs}) != len(packs):
        raise ValueError(f"a carry file holds distinct splits of one dataset, got {[(p.dataset, p.split) for p in packs]}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    manifest = {"version": CARRY_VERSION, "dataset": datasets.pop(), "splits": {}}
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:  # WebP is stored as is; the arrays are deflated
        for p in packs:
            mosaics = _mosaics(p.images)
            for i, mosaic in enumerate(mosaics):
                buf = io.BytesIO()
                Image.fromarray(mosaic).save(buf, "WEBP", lossless=True, quality=100, method=webp_method)
                z.writestr(f"{p.split}/faces{i}.webp", buf.getvalue())
            _write_npy(z, f"{p.split}/targets.npy", np.asarray(p.targets, np.int64))
            _write_npy(z, f"{p.split}/paths.npy", np.asarray(p.paths).astype(str))
            if p.soft_targets is not None:
                _write_npy(z, f"{p.split}/soft_targets.npy", np.asarray(p.soft_targets, np.float32))
            manifest["splits"][p.split] = {
                "fingerprint": p.fingerprint, "classes": list(p.classes), "count": len(p),
                "size": int(p.images.shape[1]), "mode": "L" if p.images.ndim == 3 else "RGB", "skipped": p.skipped,
                "mosaics": len(mosaics), "pixels_sha256": _pixels_sha256(p.images),
                "soft_targets": p.soft_targets is not None}
        z.writestr("manifest.json", json.dumps(manifest, indent=1))
    tmp.replace(path)
    return path


def read_carry(path: str | Path) -> dict[str, PackedSplit]:
    """The packed splits of a carry file, keyed by split name; pixels verified against their sha256."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            manifest = json.loads(z.read("manifest.json"))
            if manifest.get("version") != CARRY_VERSION:
                raise ValueError(f"carry format {manifest.get('version')}, this ferx reads {CARRY_VERSION}")
            out = {}
            for split, m in manifest["splits"].items():
                images, left = [], m["count"]
                for i in range(m["mosaics"]):
                    with Image.open(io.BytesIO(z.read(f"{split}/faces{i}.webp"))) as im:
                        mosaic = np.asarray(im.convert(m["mode"]), dtype=np.uint8)
                    images.append(_untile(mosaic, m["size"], left))
                    left -= len(images[-1])
                images = np.concatenate(images)
                if _pixels_sha256(images) != m["pixels_sha256"]:
                    raise ValueError(f"split {split!r}: decoded pixels do not match their checksum")
                soft = np.load(io.BytesIO(z.read(f"{split}/soft_targets.npy"))) if m["soft_targets"] else None
                out[split] = PackedSplit(manifest["dataset"], split, m["fingerprint"], tuple(m["classes"]), images,
                                         np.load(io.BytesIO(z.read(f"{split}/targets.npy"))),
                                         np.load(io.BytesIO(z.read(f"{split}/paths.npy"))), soft, m["skipped"])
            return out
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as err:
        raise ValueError(f"{path.name} is not a readable ferx carry file ({type(err).__name__}: {err})") from err
