"""Where ferx keeps derived files: ``$FERX_CACHE_DIR`` or ``<data root>/.cache``."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def cache_dir(kind: str) -> Path:
    from ferx.data.datasets import default_data_root

    root = Path(os.environ["FERX_CACHE_DIR"]) if os.environ.get("FERX_CACHE_DIR") else default_data_root() / ".cache"
    return root / kind


def cache_key(*parts) -> str:
    """A stable hash of JSON-serialisable parts (checkpoint hash, dataset fingerprint, parameters ...)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
