"""Unpack the dataset archives of ``../shared/datasets`` into the (git-ignored) data root.

Which archive holds which folder is declared with each dataset's loader
(:func:`ferx.data.datasets.register_dataset`).
"""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

from ferx.data.datasets import get_dataset_info, list_datasets

DEFAULT_SOURCE = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def prepare_datasets(data_root: str | Path, source: str | Path = DEFAULT_SOURCE,
                     names: list[str] | None = None) -> list[Path]:
    """Extract each archive unless its folder is already there; returns the dataset folders."""
    data_root, source = Path(data_root), Path(source)
    out = []
    for name in names or list_datasets():
        info = get_dataset_info(name)
        target = data_root / info.folder
        if not target.is_dir():
            archive = source / info.archive
            if not archive.is_file():
                raise FileNotFoundError(f"{archive} not found: pass --source pointing at the folder with {info.archive}")
            data_root.mkdir(parents=True, exist_ok=True)
            tmp = data_root / f".{info.folder}.partial"
            try:
                with tarfile.open(archive) as tar:
                    tar.extractall(tmp, filter="data")  # 'data' filter: no absolute paths, links or traversal
            except (tarfile.TarError, OSError) as err:  # a cut-short archive was a traceback, a full disk
                shutil.rmtree(tmp, ignore_errors=True)  # '[Errno 28] No space left on device' with the half kept
                if isinstance(err, OSError):
                    raise OSError(err.errno, f"unpacking {archive.name} into {data_root}: {err.strerror or err}; "
                                  "nothing of it was kept") from None
                raise ValueError(f"{archive.name} is damaged or cut short ({err}): nothing of it was unpacked; "
                                 "copy the archive again") from None
            (tmp / info.folder).rename(target)
            tmp.rmdir()
        out.append(target)
    return out


def prepare_available(data_root: str | Path, source: str | Path = DEFAULT_SOURCE) -> list[Path]:
    """Unpack whichever registered archives ``source`` holds (none there: nothing to do)."""
    source = Path(source)
    present = [n for n in list_datasets() if (source / get_dataset_info(n).archive).is_file()]
    return prepare_datasets(data_root, source, present) if present else []
