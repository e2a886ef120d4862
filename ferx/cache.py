"""Derived files: one key scheme, one atomic write, one "unreadable or stale -> rebuild" policy.

Every cache in ferx (packed splits, analysis runs, 2-D projections) goes through :func:`cached`:
an entry is used only when it loads *and* passes the caller's checks (``load`` raises otherwise);
anything else is logged and rebuilt, never trusted. Entries are written under a temporary name and
renamed into place, so a crash never leaves a half-written file under the real name; a folder that
cannot be written only costs the rebuild next time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
# what a damaged, truncated, stale or foreign entry raises while loading
UNREADABLE = (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile)


def cache_key(*parts) -> str:
    """A stable hash of JSON-serialisable parts (checkpoint hash, dataset fingerprint, parameters ...)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@contextmanager
def atomic_path(path: Path):
    """A temporary path beside ``path`` (same suffix, so numpy adds none) that replaces ``path``
    once the block has written it; its own name, so two requests writing one entry at once do not write
    into one file (the last to finish wins, whole)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        yield tmp
        tmp.replace(path)
    except OSError as err:  # a failed write names no file ('[Errno 28] No space left on device'): name the entry
        if err.errno is None or err.filename not in (None, str(tmp)):  # ferx's own message, or another file's
            raise
        raise OSError(err.errno, err.strerror or str(err), str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)


def cached(path: Path, load: Callable[[Path], T], build: Callable[[], T], save: Callable[[T, Path], None], *,
           what: str) -> T:
    """``load(path)`` when the entry exists and is valid (``load`` raises one of :data:`UNREADABLE`
    otherwise), else ``build()``, written with ``save(value, path)`` for next time."""
    path = Path(path)
    if path.is_file():
        try:
            return load(path)
        except UNREADABLE as err:
            log.warning("%s cache %s is unusable (%s); rebuilding", what, path, err)
    value = build()
    try:
        save(value, path)
    except OSError as err:  # a read-only cache still works, only slower next time
        log.warning("could not write %s cache %s: %s", what, path, err)
    return value
