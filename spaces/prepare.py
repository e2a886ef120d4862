"""Assemble a deployable Space folder: app.py, README.md, requirements.txt, ferx/, webapp/,
checkpoints/ and the analysis bundle (if built).  Usage: python spaces/prepare.py OUT"""

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def prepare(out: Path) -> Path:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in ("app.py", "README.md", "requirements.txt"):
        shutil.copy(HERE / name, out / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("ferx", "webapp", "checkpoints"):
        shutil.copytree(ROOT / folder, out / folder, ignore=ignore)
    if (HERE / "bundle").is_dir():
        shutil.copytree(HERE / "bundle", out / "bundle", ignore=shutil.ignore_patterns("numba", "zips"))
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(f"prepared {prepare(Path(sys.argv[1]))}")
