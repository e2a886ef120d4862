"""The stability probe on a fixed real face: camera-like changes, one batch, labels and maps compared."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import CHECKPOINTS, DEVICE
from ferx.checkpoint import load_checkpoint
from ferx.data import load_fer2013, pack_split
from ferx.explain.faithfulness import map_agreement
from ferx.explain.stability import VARIANTS, stability_probe


@pytest.fixture(scope="module")
def happy_crop(data_root):
    packed = pack_split(load_fer2013(data_root, "test"), progress=False)
    face = packed.images[int(np.flatnonzero(packed.targets == 3)[0])]
    return cv2.resize(np.repeat(face[..., None], 3, 2), (192, 192), interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize("name", ["mini_xception_fer2013", "lanmsff_ferplus"])
def test_stability_table_of_a_clearly_happy_face(happy_crop, name):
    loaded = load_checkpoint(CHECKPOINTS / name, DEVICE)
    probe = stability_probe(loaded.model, loaded.input_spec, loaded.classes, happy_crop, name=loaded.display)
    frame = probe.frame
    assert list(frame["variant"]) == [v.name for v in VARIANTS]
    assert loaded.classes[probe.label] == "happy" and frame.attrs["original_prob"] > 0.9
    # a face this clear keeps its label through every change a camera makes
    assert probe.kept_share == 1.0 and (frame["top1"] == "happy").all()
    photometric = frame.set_index("variant").loc[["brighter", "darker", "blur", "JPEG q30"], "map_spearman"]
    assert (photometric > 0.9).all()  # exposure, blur and compression move no pixel: the map stays put
    assert probe.to_dict()["kept_share"] == 1.0 and set(probe.thumbnails) == set(frame["variant"])


def test_geometric_changes_are_undone_before_maps_are_compared(happy_crop):
    """The mirror's map is compared at the original pixels: undone, it matches far better than as drawn."""
    loaded = load_checkpoint(CHECKPOINTS / "mini_xception_fer2013", DEVICE)
    mirror = next(v for v in VARIANTS if v.name == "mirror")
    assert np.array_equal(mirror.undo(mirror.apply(happy_crop)), happy_crop)
    probe = stability_probe(loaded.model, loaded.input_spec, loaded.classes, happy_crop, variants=(mirror,))
    from ferx.data.preprocess import to_model_input
    from ferx.explain.methods import get_method
    import torch

    x = to_model_input(torch.as_tensor(np.stack([happy_crop, mirror.apply(happy_crop)])), loaded.input_spec)
    original, mirrored = get_method("gradcam")(loaded.model, x.to(DEVICE), targets=[probe.label] * 2)
    as_drawn = map_agreement(original.values, mirrored.values)["spearman"]
    assert probe.frame["map_spearman"][0] > as_drawn + 0.03  # a near-symmetric face: 0.90 vs 0.85
