"""Hugging Face Space entry point: starts the ferx app on CPU with the committed checkpoints.

Works both inside the ferx repository (``python spaces/app.py``) and in a folder prepared by
``spaces/prepare.py`` (where ferx/, webapp/ and checkpoints/ sit beside this file).
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE if (HERE / "ferx").is_dir() else HERE.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("FERX_CACHE_DIR", str(HERE / "bundle"))  # the precomputed Dataset-tab bundle
os.environ.setdefault("NUMBA_CACHE_DIR", "/tmp/numba-cache")

import ferx  # noqa: E402,F401  (before timm / torchvision)
from webapp.app import launch  # noqa: E402
from webapp.config import AppConfig  # noqa: E402

if __name__ == "__main__":
    # the platform's port and, on a Space, every interface: given as FERX_PORT / FERX_HOST, which AppConfig reads
    # and checks (webapp.config.SETTINGS), so a malformed value is one line, not a traceback
    if os.environ.get("PORT"):
        os.environ["FERX_PORT"] = os.environ["PORT"]
    if os.environ.get("SPACE_ID"):
        os.environ.setdefault("FERX_HOST", "0.0.0.0")
    try:
        config = AppConfig(checkpoints=ROOT / "checkpoints", data_root=HERE / "data", device="cpu")
    except ValueError as err:
        sys.exit(f"error: {err}")
    launch(config)
