"""App configuration from CLI flags, with environment variables as defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AppConfig:
    data_root: Path = Path(os.environ.get("FERX_DATA_ROOT", "datasets"))
    checkpoints: Path = Path(os.environ.get("FERX_CHECKPOINTS", "checkpoints"))
    device: str = os.environ.get("FERX_DEVICE", "auto")
    host: str = os.environ.get("FERX_HOST", "127.0.0.1")
    port: int = int(os.environ.get("FERX_PORT", "7860"))
    concurrency: int = int(os.environ.get("FERX_CONCURRENCY", "2"))
    max_upload_mb: int = int(os.environ.get("FERX_MAX_UPLOAD_MB", "200"))
