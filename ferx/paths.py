"""Where ferx's files are: the data root, the cache folder, and which files count as images.

A leaf module (it imports nothing from ferx), so every other module can ask it without an
import circle.

* Data root: the ``data_root`` argument where a function takes one, else ``$FERX_DATA_ROOT``,
  else the project checkout's ``datasets/`` (the folder ``ferx data prepare`` fills), whatever the
  working directory; ``./datasets`` only where ferx is installed without its checkout.
* Checkpoints: ``$FERX_CHECKPOINTS``, else the checkout's ``checkpoints/`` (likewise); a command
  takes a checkpoint as a folder path or by its folder's name there (``lanmsff_ferplus``).
* Cache: ``$FERX_CACHE_DIR``, else ``<data root>/.cache``; one sub-folder per kind of derived file
  (``packed``, ``analysis``, ``embeddings``, ``zips``, ``numba``). Functions that cache take a
  ``cache_dir=`` argument that replaces ``cache_dir(kind)``.
"""

from __future__ import annotations

import os
from pathlib import Path

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".pgm"})
# The Pillow decoders those files need, and the only ones ferx lets ``Image.open`` try: untrusted
# bytes never reach PostScript (Ghostscript), PDF, ICO or any other exotic plugin, whatever the
# file's name says. PPM reads .pgm; phones' multi-picture JPEGs open through JPEG.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "PPM")
CARD = "card.json"  # a checkpoint is a folder that holds its card (ferx.checkpoint writes and reads it)


# the checkout ferx runs from (an editable install or ``python -m`` in the repository), if any
_CHECKOUT = Path(__file__).resolve().parents[1]
PROJECT_ROOT = _CHECKOUT if (_CHECKOUT / "pyproject.toml").is_file() else None


def _project_folder(env: str, name: str) -> Path:
    if os.environ.get(env):
        return Path(os.environ[env])
    return PROJECT_ROOT / name if PROJECT_ROOT else Path(name)


def default_data_root() -> Path:
    return _project_folder("FERX_DATA_ROOT", "datasets")


def default_checkpoints() -> Path:
    return _project_folder("FERX_CHECKPOINTS", "checkpoints")


def checkpoint_folders(root: Path) -> list[Path]:
    """The checkpoint folders (those with a card) in ``root``, by name; none where ``root`` is no folder."""
    return sorted(card.parent for card in Path(root).glob(f"*/{CARD}")) if Path(root).is_dir() else []


def committed_checkpoints() -> list[str]:
    """The names of the checkpoint folders under :func:`default_checkpoints`."""
    return [folder.name for folder in checkpoint_folders(default_checkpoints())]


def checkpoint_path(value: str | Path) -> Path:
    """A checkpoint as a user names it: a folder path, or (where no such path exists here) the name
    of a folder under :func:`default_checkpoints`, as the app and ``ferx models`` show it."""
    path = Path(value)
    if not path.exists() and path.name == str(value) and str(value) in committed_checkpoints():
        return default_checkpoints() / path
    return path


def naming_a_checkpoint() -> str:
    """How to name a checkpoint, with those there are by name."""
    named = committed_checkpoints()
    return "give a checkpoint folder" + (f" or the name of one in {default_checkpoints()} ({', '.join(named)})"
                                         if named else " (e.g. checkpoints/mini_xception_fer2013)")


def no_checkpoint(value: str | Path) -> str:
    """Why ``value`` names no checkpoint, and how to name one: the one message of every command that takes
    a checkpoint (``ferx evaluate nosuch`` and ``ferx explain --model nosuch`` alike)."""
    what = f"{value} is a folder without {CARD}" if checkpoint_path(value).is_dir() else f"{value}: no such checkpoint"
    return f"{what}: {naming_a_checkpoint()}"


def cache_root() -> Path:
    return Path(os.environ["FERX_CACHE_DIR"]) if os.environ.get("FERX_CACHE_DIR") else default_data_root() / ".cache"


def cache_dir(kind: str) -> Path:
    return cache_root() / kind
