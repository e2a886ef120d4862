"""Safe unpacking of a user-supplied zip of face images.

Refused, each with one message naming the zip and the entry: entries with absolute paths or
``..`` (path traversal), links, encrypted entries, compression methods Python cannot read
(Deflate64 ...), damaged entries (bad CRC, a declared size that lies, a truncated archive),
archives whose file count, declared total size, or *actual* unpacked bytes exceed the limits
(zip bombs: the bytes are counted as they are written, per file and in total, so a lying header
cannot fill the disk), and archives that are not zips. Only image files are extracted;
everything else is skipped and counted. Whatever happens, a refused zip leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ferx.paths import IMAGE_EXTS

MAX_FILES = 100_000
MAX_FILE_BYTES = 64 * 2**20  # one face image: far above any photo (a 48 MP JPEG is ~20 MB)
MAX_TOTAL_BYTES = 2**30
READABLE_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
# what reading a damaged entry raises (bad CRC, a size that lies, truncated data)
DAMAGED = (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError)


class ArchiveError(ValueError):
    """The archive is unsafe or unusable."""


def extract_images(zip_path: str | Path, dest: str | Path, max_files: int = MAX_FILES,
                   max_total_bytes: int = MAX_TOTAL_BYTES, max_file_bytes: int = MAX_FILE_BYTES,
                   content: frozenset[str] = frozenset()) -> tuple[Path, int]:
    """Extract the images of ``zip_path`` into ``dest``; returns (dataset root, non-images skipped).

    The dataset root is ``dest``, or its only sub-folder when the zip wraps everything in one (a sole
    folder whose lower-case name is in ``content``, a class or a split, is kept as content).
    Files are written under ``dest.partial`` first, which is removed if anything is refused.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise ArchiveError(f"{zip_path.name} is not a readable zip archive ({err})") from None
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with archive:
            skipped = _extract(archive, zip_path.name, tmp, max_files, max_total_bytes, max_file_bytes)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    except OSError as err:  # writing failed: the disk is full or the folder read-only, the zip is fine
        shutil.rmtree(tmp, ignore_errors=True)
        raise ArchiveError(f"cannot unpack {zip_path.name} into {dest.parent}: {err.strerror or err}; set "
                           "FERX_CACHE_DIR to a writable folder with space") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _unwrapped(dest, content), skipped


def _unwrapped(dest: Path, content: frozenset[str]) -> Path:
    """``dest``, or its only sub-folder when that wraps the rest (``faces/happy/...``); a sole folder
    named in ``content`` (a class, ``happy/``, or a split, ``test/``) is content, not a wrapper."""
    children = [p for p in dest.iterdir() if p.is_dir()]
    if len(children) != 1 or any(p.is_file() for p in dest.iterdir()):
        return dest
    return dest if children[0].name.strip().lower() in content else children[0]


def _extract(archive: zipfile.ZipFile, zip_name: str, tmp: Path, max_files: int, max_total_bytes: int,
             max_file_bytes: int) -> int:
    entries = [e for e in archive.infolist() if not e.is_dir()]
    if len(entries) > max_files:
        raise ArchiveError(f"{zip_name} holds {len(entries):,} files; the limit is {max_files:,}")
    total = sum(e.file_size for e in entries)
    if total > max_total_bytes:
        raise ArchiveError(f"{zip_name} unpacks to {total / 2**20:,.0f} MiB; the limit is "
                           f"{max_total_bytes / 2**20:,.0f} MiB")
    skipped, budget = 0, max_total_bytes
    for entry in entries:
        name = PurePosixPath(entry.filename.replace("\\", "/"))
        if name.is_absolute() or ".." in name.parts or ":" in entry.filename:
            raise ArchiveError(f"{zip_name}: unsafe path {entry.filename!r} (absolute or outside the archive)")
        if stat.S_ISLNK(entry.external_attr >> 16):
            raise ArchiveError(f"{zip_name}: {entry.filename!r} is a symbolic link")
        if name.suffix.lower() not in IMAGE_EXTS or name.name.startswith(".") or "__MACOSX" in name.parts:
            skipped += 1
            continue
        if entry.flag_bits & 0x1:
            raise ArchiveError(f"{zip_name}: {entry.filename!r} is encrypted; ferx reads unencrypted zips only")
        if entry.compress_type not in READABLE_METHODS:
            method = zipfile.compressor_names.get(entry.compress_type, f"method {entry.compress_type}")
            raise ArchiveError(f"{zip_name}: {entry.filename!r} is compressed with {method}, which ferx cannot "
                               "read; zip it again with ordinary Deflate compression")
        if entry.file_size > max_file_bytes:
            raise ArchiveError(f"{zip_name}: {entry.filename!r} unpacks to {entry.file_size / 2**20:,.0f} MiB; the "
                               f"limit is {max_file_bytes / 2**20:,.0f} MiB per file")
        target = tmp.joinpath(*name.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        budget -= _copy_bounded(archive, entry, target, zip_name, min(max_file_bytes, budget), max_total_bytes)
    if not tmp.is_dir():
        raise ArchiveError(f"{zip_name} contains no images")
    return skipped


def _copy_bounded(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, target: Path, zip_name: str, limit: int,
                  max_total_bytes: int) -> int:
    """Copy one entry, counting the bytes actually inflated (a header may lie); returns them.
    Reading errors are the zip's (damaged); writing errors (OSError) are the disk's."""
    def damaged(err):
        return ArchiveError(f"{zip_name}: {entry.filename!r} is damaged ({err}); the zip is corrupt or truncated")

    try:
        src = archive.open(entry)
    except DAMAGED as err:
        raise damaged(err) from None
    written = 0
    with src, open(target, "wb") as out:
        while True:
            try:
                chunk = src.read(1 << 20)
            except DAMAGED as err:
                raise damaged(err) from None
            if not chunk:
                if written != entry.file_size:
                    raise damaged(f"{written:,} bytes where its header declares {entry.file_size:,}")
                return written
            written += len(chunk)
            if written > limit:
                raise ArchiveError(f"{zip_name}: {entry.filename!r} unpacks to more than its zip declares and past "
                                   f"the limit ({limit / 2**20:,.0f} MiB for this file, "
                                   f"{max_total_bytes / 2**20:,.0f} MiB in all): refusing it (zip bomb?)")
            out.write(chunk)


def zip_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
