"""Assemble a deployable Space folder: app.py, README.md, requirements.txt, ferx/, webapp/,
checkpoints/, the analysis bundle (if built) and a .gitattributes that sends every binary file
through Git LFS (the Hub refuses a push with binary files outside LFS/Xet, whatever their size).
Usage: python spaces/prepare.py OUT"""

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LFS = "filter=lfs diff=lfs merge=lfs -text"


def is_binary(path: Path) -> bool:
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def lfs_patterns(folder: Path) -> list[str]:
    """A ``*.suffix`` pattern for every kind of binary file under ``folder`` (its path if it has no suffix)."""
    found = set()
    for path in folder.rglob("*"):
        if path.is_file() and ".git" not in path.relative_to(folder).parts and is_binary(path):
            found.add(f"*{path.suffix}" if path.suffix else path.relative_to(folder).as_posix())
    return sorted(found)


def prepare(out: Path, bundle: Path = HERE / "bundle") -> Path:
    """The Space folder at ``out`` (replaced), with ``bundle`` (``ferx bundle``'s folder) if it exists."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in ("app.py", "README.md", "requirements.txt"):
        shutil.copy(HERE / name, out / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyi")
    for folder in ("ferx", "webapp", "checkpoints"):
        shutil.copytree(ROOT / folder, out / folder, ignore=ignore)
    if bundle.is_dir():
        shutil.copytree(bundle, out / "bundle", ignore=shutil.ignore_patterns("numba", "zips"))
    (out / ".gitattributes").write_text("".join(f"{pattern} {LFS}\n" for pattern in lfs_patterns(out)))
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(f"prepared {prepare(Path(sys.argv[1]))}")
