import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download weights or data

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

import ferx  # noqa: E402,F401  (torchvision compatibility before timm is imported)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CHECKPOINTS = REPO / "checkpoints"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# FERX_TEST_DEVICE=cuda moves the core's tests to a GPU (bench/gpu_train.sh tests): tensors and models the
# tests create land there by default, and tests that name a device use DEVICE. The app tests stay on CPU.
DEVICE = os.environ.get("FERX_TEST_DEVICE", "cpu")
if DEVICE != "cpu":
    torch.set_default_device(DEVICE)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real datasets, unpacked from ../shared/datasets into the ignored ./datasets folder."""
    if not (SHARED / "datasets").is_dir():
        pytest.skip(f"{SHARED / 'datasets'} not found: the real FER archives are needed for this test")
    from ferx.data.prepare import prepare_datasets

    prepare_datasets(REPO / "datasets", SHARED / "datasets")
    return REPO / "datasets"


def faces_of(packed, indices, folder: str = "") -> dict:
    """``packed``'s faces ``indices`` named as a class-folder zip names them: {'<folder>/<class>/<i>.png': pixels}."""
    prefix = f"{folder}/" if folder else ""
    return {f"{prefix}{packed.classes[packed.targets[i]]}/{i}.png": packed.images[i] for i in indices}


def face_zip(path: Path, faces: dict, extra=()) -> Path:
    """A zip at ``path`` of ``faces`` ({name inside it: uint8 pixels}, saved as PNG) plus ``extra`` entries
    ((name, bytes or text), written as they are); returns ``path``."""
    import io
    import zipfile

    from PIL import Image

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, pixels in faces.items():
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, "PNG")
            z.writestr(name, buf.getvalue())
        for name, data in extra:
            z.writestr(name, data)
    return path
