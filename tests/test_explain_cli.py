"""``ferx explain`` end to end on a photo made of real FER-2013 test faces."""

import json

import numpy as np
import pytest
from PIL import Image

from ferx.cli import main
from ferx.data import load_fer2013, pack_split

from conftest import CHECKPOINTS

MINI = str(CHECKPOINTS / "mini_xception_fer2013")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """As in test_explain.py: durations that do not depend on a neighbour holding the other core."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def photo(data_root, tmp_path_factory):
    """A 1200x900 'photo': a real happy face (FER-2013 test) pasted at 380 px on a smooth background."""
    split = pack_split(load_fer2013(data_root, "test"), progress=False)
    yy, xx = np.mgrid[0:900, 0:1200]
    bg = np.stack([120 + 60 * xx / 1200, 140 - 40 * yy / 900, 110 + 30 * np.sin(xx / 90)], -1).astype(np.uint8)
    canvas = Image.fromarray(bg)
    canvas.paste(Image.fromarray(split.images[1074]).convert("RGB").resize((380, 380), Image.Resampling.BICUBIC),
                 (150, 200))
    path = tmp_path_factory.mktemp("photos") / "happy.jpg"
    canvas.save(path, quality=92)
    return path


def test_explain_writes_a_panel_and_the_numbers(photo, tmp_path, capsys):
    out = tmp_path / "panel.png"
    code = main(["explain", str(photo), "--model", MINI, "--model", "lanmsff", "--untrained",
                 "--method", "native", "--method", "gradcam", "--method", "ig", "--ig-steps", "8",
                 "--deletion-steps", "8", "--random-maps", "1", "--scale", "shared", "--out", str(out)])
    assert code == 0
    assert Image.open(out).size[0] > 800
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["faces"] and report["face"] == 0 and report["photo"]["original_size"] == [1200, 900]
    mini, lan = report["models"]
    assert mini["trained"] and mini["predicted"] == "happy" and mini["probabilities"]["happy"] > 0.5
    assert not lan["trained"] and "UNTRAINED" in lan["model"]
    assert [m["method"] for m in mini["maps"]] == ["gradcam", "integrated_gradients"]
    assert "no native attention" in mini["notes"][0]
    assert [m["method"] for m in lan["maps"]] == ["massatt_block2_spatial", "massatt_block4_spatial", "gradcam",
                                                  "integrated_gradients"]
    crop = report["faces"][0]["crop_size"]
    for m in mini["maps"] + lan["maps"]:
        assert m["crop_size"] == crop and m["size"] == 64 and m["elapsed_s"] > 0
        f = m["faithfulness"]
        assert 0 <= f["deletion_auc"] <= 1 and "blur" in f["baseline"] and f["n_steps"] == 8
    assert len(lan["channel_weights"]["block4"]) == 84
    assert {"a", "b", "spearman", "top_k_iou"} <= set(mini["agreement"][0])
    (cross,) = [a for a in report["agreement_across_models"] if a["method"] == "gradcam"]
    assert -1 <= cross["spearman"] <= 1 and "UNTRAINED" in cross["b"]
    assert "UNTRAINED" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--model", "lanmsff"], "--untrained"),
    (["--model", MINI, "--target", "bored"], "not a class"),
    (["--model", MINI, "--target", "happiness", "--contrast", "sadness", "--face", "3"], "1 face found; it is face 0"),
    (["--model", MINI, "--method", "magic"], "unknown method"),
    (["--model", MINI, "--target", "happiness", "--contrast", "Happy"], "target and contrast are the same class (happy)"),
])
def test_explain_user_errors_are_one_line(photo, tmp_path, capsys, args, message):
    assert main(["explain", str(photo), *args, "--out", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_explain_no_face_and_broken_files(tmp_path, capsys):
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)).save(noise)
    assert main(["explain", str(noise), "--model", MINI, "--out", str(tmp_path / "n.png")]) == 1
    assert "--whole-image" in capsys.readouterr().err
    assert main(["explain", str(noise), "--model", MINI, "--whole-image", "--method", "gradcam",
                 "--no-faithfulness", "--out", str(tmp_path / "n.png")]) == 0
    broken = tmp_path / "broken.jpg"
    broken.write_text("not a jpeg")
    assert main(["explain", str(broken), "--model", MINI, "--out", str(tmp_path / "b.png")]) == 1
    assert "not an image" in capsys.readouterr().err


def test_explain_a_contrast_by_class_names(photo, tmp_path):
    out = tmp_path / "c.png"
    assert main(["explain", str(photo), "--model", MINI, "--method", "gradcam", "--target", "happiness",
                 "--contrast", "Sad", "--no-faithfulness", "--out", str(out)]) == 0
    (m,) = json.loads(out.with_suffix(".json").read_text())["models"][0]["maps"]
    assert (m["target_label"], m["contrast_label"], m["faithfulness"]) == ("happy", "sad", None)
