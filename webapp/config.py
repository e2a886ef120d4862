"""App configuration from CLI flags, with environment variables as defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ferx.paths import default_checkpoints, default_data_root


@dataclass(frozen=True)
class AppConfig:
    data_root: Path = field(default_factory=default_data_root)  # never relative to the working directory
    checkpoints: Path = field(default_factory=default_checkpoints)
    device: str = os.environ.get("FERX_DEVICE", "auto")
    host: str = os.environ.get("FERX_HOST", "127.0.0.1")
    port: int = int(os.environ.get("FERX_PORT", "7860"))
    concurrency: int = int(os.environ.get("FERX_CONCURRENCY", "2"))
    max_upload_mb: int = int(os.environ.get("FERX_MAX_UPLOAD_MB", "200"))
    # files one uploaded zip may hold: bounds the work one user can start (100,000 tiny PNGs kept the server
    # busy for 12 minutes); the CLI's limit is ferx.data.archive.MAX_FILES
    max_zip_files: int = int(os.environ.get("FERX_MAX_ZIP_FILES", "10000"))
    # sessions whose state (map tiles, a dataset analysis) the server keeps, oldest dropped first: gradio keeps
    # 10,000, and every API client is a new session, so memory grew with each /explain and never levelled off
    max_sessions: int = int(os.environ.get("FERX_MAX_SESSIONS", "200"))
    # seconds a session's state lives after its last update (gradio: for ever, until the browser tab closes)
    state_ttl_s: int = int(os.environ.get("FERX_STATE_TTL_S", "1800"))
