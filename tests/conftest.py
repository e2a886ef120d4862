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
