"""Unpack the dataset archives of ``../shared/datasets`` into the (git-ignored) data root."""

from __future__ import annotations

import tarfile
from pathlib import Path

ARCHIVES = {"fer2013": "fer2013.tar", "ferplus": "ferplus.tar", "ckplus": "ckplus48.tar"}
UNPACKS_TO = {"fer2013": "fer2013", "ferplus": "ferplus", "ckplus": "ckplus48"}
DEFAULT_SOURCE = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def prepare_datasets(data_root: str | Path, source: str | Path = DEFAULT_SOURCE,
                     names: list[str] | None = None) -> list[Path]:
    """Extract each archive unless its folder is already there; returns the dataset folders."""
    data_root, source = Path(data_root), Path(source)
    out = []
    for name in names or list(ARCHIVES):
        if name not in ARCHIVES:
            raise ValueError(f"unknown dataset {name!r}; known: {', '.join(ARCHIVES)}")
        target = data_root / UNPACKS_TO[name]
        if not target.is_dir():
            archive = source / ARCHIVES[name]
            if not archive.is_file():
                raise FileNotFoundError(f"{archive} not found: pass --source pointing at the folder with {ARCHIVES[name]}")
            data_root.mkdir(parents=True, exist_ok=True)
            tmp = data_root / f".{UNPACKS_TO[name]}.partial"
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")  # 'data' filter: no absolute paths, links or traversal
            (tmp / UNPACKS_TO[name]).rename(target)
            tmp.rmdir()
        out.append(target)
    return out
