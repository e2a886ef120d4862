"""Where ferx's files are: the data root, the cache folder, and which files count as images.

A leaf module (it imports nothing from ferx), so every other module can ask it without an
import circle.

* Data root: the ``data_root`` argument where a function takes one, else ``$FERX_DATA_ROOT``,
  else ``./datasets``.
* Cache: ``$FERX_CACHE_DIR``, else ``<data root>/.cache``; one sub-folder per kind of derived file
  (``packed``, ``analysis``, ``embeddings``, ``zips``, ``numba``). Functions that cache take a
  ``cache_dir=`` argument that replaces ``cache_dir(kind)``.
"""

from __future__ import annotations

import os
from pathlib import Path

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".pgm"})


def default_data_root() -> Path:
    return Path(os.environ.get("FERX_DATA_ROOT", "datasets"))


def cache_root() -> Path:
    return Path(os.environ["FERX_CACHE_DIR"]) if os.environ.get("FERX_CACHE_DIR") else default_data_root() / ".cache"


def cache_dir(kind: str) -> Path:
    return cache_root() / kind
