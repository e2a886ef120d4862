"""App configuration from CLI flags, with environment variables as defaults.

The environment is read when a config is built (``AppConfig()``), not when this module is imported:
the CLI's parser imports it for every command, and a malformed ``FERX_PORT`` must not break ``ferx
models``. Each setting is declared once in :data:`SETTINGS` (its variable, its default and, for a
number, the range it must lie in); a value outside it is refused in one line naming the variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ferx.paths import default_checkpoints, default_data_root

PORTS = (1, 65535)  # the TCP ports a server may listen on (--port and FERX_PORT alike)
# setting -> (environment variable, default, (lowest, highest) for a whole number, None for text)
SETTINGS = {
    "device": ("FERX_DEVICE", "auto", None),
    "host": ("FERX_HOST", "127.0.0.1", None),
    "port": ("FERX_PORT", 7860, PORTS),
    "concurrency": ("FERX_CONCURRENCY", 2, (1, None)),
    "max_upload_mb": ("FERX_MAX_UPLOAD_MB", 200, (1, None)),
    "max_zip_files": ("FERX_MAX_ZIP_FILES", 10000, (1, None)),
    "max_sessions": ("FERX_MAX_SESSIONS", 200, (1, None)),
    "state_ttl_s": ("FERX_STATE_TTL_S", 1800, (1, None)),
}


def in_range(value: int, bounds: tuple[int, int | None]) -> bool:
    low, high = bounds
    return value >= low and (high is None or value <= high)


def range_text(bounds: tuple[int, int | None]) -> str:
    low, high = bounds
    return f"a whole number from {low} to {high}" if high is not None else f"a whole number, {low} or more"


def setting_text(name: str) -> str:
    """A setting's default as ``ferx app --help`` shows it: the environment's value as written, else
    the built-in one (not converted: help never fails on a malformed variable)."""
    var, default, _ = SETTINGS[name]
    return f"{os.environ[var]} (from ${var})" if os.environ.get(var, "").strip() else str(default)


def env_setting(name: str):
    """A setting's value from its environment variable (or its default), checked: a malformed or
    out-of-range number raises ValueError naming the variable."""
    var, default, bounds = SETTINGS[name]
    text = os.environ.get(var, "").strip()
    if not text:
        return default
    if bounds is None:
        return text
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not in_range(value, bounds):
        raise ValueError(f"{var}={text}: give {range_text(bounds)} (default {default}), or unset it")
    return value


def _env(name: str):
    return field(default_factory=lambda: env_setting(name))


@dataclass(frozen=True)
class AppConfig:
    data_root: Path = field(default_factory=default_data_root)  # never relative to the working directory
    checkpoints: Path = field(default_factory=default_checkpoints)
    device: str = _env("device")
    host: str = _env("host")
    port: int = _env("port")
    concurrency: int = _env("concurrency")
    max_upload_mb: int = _env("max_upload_mb")
    # files one uploaded zip may hold: bounds the work one user can start (100,000 tiny PNGs kept the server
    # busy for 12 minutes); the CLI's limit is ferx.data.archive.MAX_FILES
    max_zip_files: int = _env("max_zip_files")
    # sessions whose state (map tiles, a dataset analysis) the server keeps, oldest dropped first: gradio keeps
    # 10,000, and every API client is a new session, so memory grew with each /explain and never levelled off
    max_sessions: int = _env("max_sessions")
    # seconds a session's state lives after its last update (gradio: for ever, until the browser tab closes)
    state_ttl_s: int = _env("state_ttl_s")
