"""Safe unpacking of a user-supplied zip of face images.

Refused: entries with absolute paths or ``..`` (path traversal), links, archives whose declared
total size or file count exceeds the limits (zip bombs), and archives that are not zips. Only
image files are extracted; everything else is skipped and counted.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from ferx.paths import IMAGE_EXTS

MAX_FILES = 100_000
MAX_TOTAL_BYTES = 2 * 2**30


class ArchiveError(ValueError):
    """The archive is unsafe or unusable."""


def extract_images(zip_path: str | Path, dest: str | Path, max_files: int = MAX_FILES,
                   max_total_bytes: int = MAX_TOTAL_BYTES) -> tuple[Path, int]:
    """Extract the images of ``zip_path`` into ``dest``; returns (dataset root, non-images skipped).

    The dataset root is ``dest``, or its only sub-folder when the zip wraps everything in one.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as err:
        raise ArchiveError(f"{zip_path.name} is not a readable zip archive ({err})") from None
    with archive:
        entries = [e for e in archive.infolist() if not e.is_dir()]
        if len(entries) > max_files:
            raise ArchiveError(f"{zip_path.name} holds {len(entries):,} files; the limit is {max_files:,}")
        total = sum(e.file_size for e in entries)
        if total > max_total_bytes:
            raise ArchiveError(f"{zip_path.name} unpacks to {total / 2**20:,.0f} MiB; the limit is "
                               f"{max_total_bytes / 2**20:,.0f} MiB")
        skipped = 0
        tmp = dest.with_name(dest.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        for entry in entries:
            name = PurePosixPath(entry.filename.replace("\\", "/"))
            if name.is_absolute() or ".." in name.parts or ":" in entry.filename:
                raise ArchiveError(f"{zip_path.name}: unsafe path {entry.filename!r} (absolute or outside the archive)")
            if stat.S_ISLNK(entry.external_attr >> 16):
                raise ArchiveError(f"{zip_path.name}: {entry.filename!r} is a symbolic link")
            if name.suffix.lower() not in IMAGE_EXTS or name.name.startswith(".") or "__MACOSX" in name.parts:
                skipped += 1
                continue
            target = tmp.joinpath(*name.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(entry) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        if not tmp.is_dir():
            raise ArchiveError(f"{zip_path.name} contains no images")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    children = [p for p in dest.iterdir() if p.is_dir()]
    root = children[0] if len(children) == 1 and not any(p.is_file() for p in dest.iterdir()) else dest
    return root, skipped


def zip_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
