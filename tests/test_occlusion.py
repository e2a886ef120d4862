"""The occlusion brush on real faces: covering a happy face's mouth costs 'happy'."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from conftest import CHECKPOINTS, DEVICE
from ferx.checkpoint import load_checkpoint
from ferx.data import load_fer2013, pack_split
from ferx.explain.occlusion import FILLS, explain_occlusion, occlude, occlude_face, occlusion_effect, painted_mask
from ferx.faces import load_photo


@pytest.fixture(scope="module")
def happy_photo(data_root, tmp_path_factory):
    packed = pack_split(load_fer2013(data_root, "test"), progress=False)
    happy = np.flatnonzero(packed.targets == 3)[:5]
    path = tmp_path_factory.mktemp("occ") / "happy.png"
    Image.fromarray(packed.images[happy[0]]).resize((192, 192), Image.Resampling.BICUBIC).save(path)
    return load_photo(path)


def _mouth(shape) -> np.ndarray:
    mask = np.zeros(shape[:2], bool)
    h, w = shape[:2]
    mask[int(0.62 * h):int(0.92 * h), int(0.22 * w):int(0.78 * w)] = True  # FER crops put the mouth here
    return mask


@pytest.mark.parametrize("fill", list(FILLS))
def test_covering_the_mouth_of_a_happy_face_lowers_happy(happy_photo, fill):
    loaded = load_checkpoint(CHECKPOINTS / "mini_xception_fer2013", DEVICE)
    face = occlude_face(happy_photo, _mouth(happy_photo.rgb.shape), whole_image=True, fill=fill)
    assert 0.1 < face.covered < 0.3 and not np.array_equal(face.crop, face.occluded)
    effect = occlusion_effect(loaded.model, loaded.input_spec, loaded.classes, face)
    assert effect.classes[effect.label] == "happy"
    assert effect.change < -0.1, effect.to_dict()  # the smile was the evidence


def test_the_unpainted_crop_is_the_one_compare_scores(data_root, tmp_path):
    """A 48-px dataset face is scored whole by find_faces; the brush must score that same crop, not one
    padded by the margin (it did: a 58-px smeared crop, other probabilities than Compare's)."""
    from ferx.faces import find_faces

    packed = pack_split(load_fer2013(data_root, "test"), progress=False)
    path = tmp_path / "face48.png"
    Image.fromarray(packed.images[0]).save(path)
    photo = load_photo(path)
    face = occlude_face(photo, _mouth(photo.rgb.shape))
    assert np.array_equal(face.crop, find_faces(photo).faces[0].crop)


def test_covering_the_forehead_costs_less_than_the_mouth(happy_photo):
    loaded = load_checkpoint(CHECKPOINTS / "mini_xception_fer2013", DEVICE)
    mouth = _mouth(happy_photo.rgb.shape)
    forehead = np.roll(mouth, -int(0.55 * mouth.shape[0]), axis=0)  # the same area, high up
    effects = [occlusion_effect(loaded.model, loaded.input_spec, loaded.classes,
                                occlude_face(happy_photo, m, whole_image=True)) for m in (mouth, forehead)]
    assert effects[1].change > effects[0].change


def test_occlude_only_touches_the_painted_pixels():
    rgb = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    mask = np.zeros((40, 60), bool)
    mask[10:20, 5:25] = True
    for fill in FILLS:
        out = occlude(rgb, mask, fill)
        assert np.array_equal(out[~mask], rgb[~mask]) and not np.array_equal(out[mask], rgb[mask])
    assert (occlude(rgb, mask, "black")[mask] == 0).all()
    with pytest.raises(ValueError, match="fill must be one of"):
        occlude(rgb, mask, "paint")


def test_painted_layers_become_the_mask_at_the_photos_size():
    layer = np.zeros((50, 80, 4), np.uint8)
    layer[10:20, 30:40] = (204, 50, 50, 255)  # a brush stroke: colour and alpha
    second = np.zeros((100, 160, 4), np.uint8)  # an editor that exported its canvas at twice the size
    second[60:80, 0:20, 3] = 128
    mask = painted_mask([layer, second], (80, 50))
    assert mask.shape == (50, 80) and mask[10:20, 30:40].all() and mask[30:40, 0:10].all()
    assert mask.sum() == 10 * 10 + 10 * 10
    with pytest.raises(ValueError, match="face.png: the painted layer is 50x50 px but the photo is 80x50 px"):
        painted_mask([np.zeros((50, 50, 4), np.uint8)], (80, 50), "face.png")


def test_explained_occlusion_moves_the_happy_evidence(happy_photo):
    loaded = load_checkpoint(CHECKPOINTS / "lanmsff_fer2013", DEVICE)
    occluded = occlude_face(happy_photo, _mouth(happy_photo.rgb.shape), whole_image=True, fill="mean")
    result = explain_occlusion(loaded, occluded, ["native", "gradcam"])
    effect = result.effect
    assert effect.classes[effect.label] == "happy" and effect.change < -0.1, effect.to_dict()
    before, after = result.before, result.after
    assert [m.method for m in before.maps] == [m.method for m in after.maps] and len(after.maps) >= 2
    cam = [m for m in after.maps if m.method == "gradcam"][0]
    assert cam.target_label == "happy"  # the occluded face's map explains the class first predicted
    assert not np.allclose(cam.crop_values, before.maps[-1].crop_values)  # and it moved
    assert result.to_dict()["label"] == "happy"


def test_ferx_occlude_from_the_command_line(happy_photo, tmp_path, capsys):
    import json

    from ferx.cli import main

    photo = tmp_path / "happy.png"
    Image.fromarray(happy_photo.rgb).save(photo)
    mask = tmp_path / "mouth.png"
    Image.fromarray(_mouth(happy_photo.rgb.shape).astype(np.uint8) * 255).save(mask)  # white: painted
    out = tmp_path / "occluded.json"
    assert main(["occlude", str(photo), "--mask", str(mask), "--model", str(CHECKPOINTS / "mini_xception_fer2013"),
                 "--whole-image", "--fill", "black", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["fill"] == "black" and 0.1 < result["covered"] < 0.3
    assert result["models"][0]["label"] == "happy" and result["models"][0]["change"] < -0.1
    assert "painted over (black)" in capsys.readouterr().out
    figure = np.asarray(Image.open(out.with_suffix(".png")).convert("RGB"))  # the faces and the bars beside the JSON
    assert figure.shape[1] > 2 * figure.shape[0] and (figure < 50).all(2).any()  # the black fill is drawn
    out.unlink()
    assert main(["occlude", str(photo), "--mask", str(mask), "--model", str(CHECKPOINTS / "mini_xception_fer2013"),
                 "--whole-image", "--out", str(out.with_suffix(".png"))]) == 0  # a figure path: JSON beside it
    assert json.loads(out.read_text())["fill"] == "blur" and Image.open(out.with_suffix(".png")).format == "PNG"
    capsys.readouterr()
    Image.new("L", (10, 20), 255).save(mask)
    assert main(["occlude", str(photo), "--mask", str(mask), "--model", str(CHECKPOINTS / "mini_xception_fer2013")]) == 1
    assert f"--mask {mask}: the painted layer is 10x20 px but the photo is 192x192 px" in capsys.readouterr().err


@pytest.mark.parametrize("mask, message", [
    ("nosuch.png", "--mask nosuch.png: file not found"),  # "the mask cannot be read (FileNotFoundError)"
    ("folder", "--mask folder: not a file"),  # (IsADirectoryError)
    ("empty.png", "--mask empty.png: empty file"),
    ("notes.png", "--mask notes.png: not an image ferx reads (JPEG, PNG, WebP, BMP, GIF, TIFF or PGM)"),  # (Unidentified...)
    ("cut.png", "--mask cut.png: cannot decode (OSError: image file is truncated) — truncated or corrupt file?"),
])
def test_ferx_occlude_names_a_bad_mask_as_a_bad_photo_is_named_before_the_models_load(happy_photo, tmp_path,
                                                                                    monkeypatch, capsys, mask, message):
    from ferx.cli import main

    def never(*args, **kwargs):
        raise AssertionError("the models loaded for a refused mask")

    monkeypatch.setattr("ferx.explain.report.open_model", never)
    monkeypatch.chdir(tmp_path)
    Image.fromarray(happy_photo.rgb).save("happy.png")
    (tmp_path / "folder").mkdir()
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("not a picture")
    noise = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(noise, "PNG")
    (tmp_path / "cut.png").write_bytes(noise.getvalue()[:-200])  # a mask whose pixels stop short
    assert main(["occlude", "happy.png", "--mask", mask, "--model", "mini_xception_fer2013"]) == 1
    assert capsys.readouterr().err.strip() == f"ferx occlude: error: {message}"


def test_ferx_occlude_refuses_a_bad_fill_and_out_and_warns_of_an_empty_mask(happy_photo, tmp_path, monkeypatch, capsys):
    """--fill pink was refused after the models loaded; --out o.txt wrote o.json and o.png without a word; an
    all-black mask scored the face as it is, without a word."""
    from ferx.cli import main

    monkeypatch.chdir(tmp_path)
    Image.fromarray(happy_photo.rgb).save("happy.png")
    Image.new("L", happy_photo.original_size, 0).save("black.png")
    with pytest.raises(SystemExit):
        main(["occlude", "happy.png", "--mask", "black.png", "--model", "mini_xception_fer2013", "--fill", "pink"])
    assert "argument --fill: invalid choice: 'pink'" in capsys.readouterr().err
    assert main(["occlude", "happy.png", "--mask", "black.png", "--model", "mini_xception_fer2013", "--out", "o.txt"]) == 1
    assert capsys.readouterr().err.strip() == ("ferx occlude: error: --out o.txt: give a .json or .png path (both are "
                                               "written: o.json and o.png)")
    assert main(["occlude", "happy.png", "--mask", "black.png", "--model", "mini_xception_fer2013", "--whole-image",
                 "--out", "o"]) == 0
    printed = capsys.readouterr()
    assert printed.err.strip() == ("warning: nothing painted: --mask black.png has no pixel brighter than mid-grey (nor, "
                                   "with alpha, any pixel above alpha 0); the face is scored as it is")
    assert "0% of face 0's crop painted over" in printed.out and "wrote o.json and o.png" in printed.out
    assert "1 model loaded on cpu\n" in printed.out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["black.png", "happy.png", "o.json", "o.png"]
    assert "note:" not in printed.out  # a 192-px photo is searched for faces
    Image.fromarray(happy_photo.rgb).resize((48, 48)).save("small.png")  # as FER stores a face
    Image.new("L", (48, 48), 0).save("black48.png")
    assert main(["occlude", "small.png", "--mask", "black48.png", "--model", "mini_xception_fer2013"]) == 0
    assert "note: 48x48 px, under 96 px: scored as an already-cropped face" in capsys.readouterr().out


def _face_in_a_wide_photo(data_root, tmp_path, size, side):
    """A real happy FER-2013 test face, ``side`` px, in a grey ``size`` (width, height) photo: a face in a phone photo."""
    packed = pack_split(load_fer2013(data_root, "test"), progress=False)
    face = packed.images[int(np.flatnonzero(packed.targets == packed.classes.index("happy"))[0])]
    canvas = Image.new("RGB", size, (110, 118, 125))
    canvas.paste(Image.fromarray(face).convert("RGB").resize((side, side), Image.Resampling.BICUBIC),
                 ((size[0] - side) // 2, (size[1] - side) // 3))
    path = tmp_path / f"photo_{size[0]}.jpg"
    canvas.save(path, quality=90)
    photo = load_photo(path)
    x0, y0 = (size[0] - side) // 2, (size[1] - side) // 3
    mask = np.zeros(photo.rgb.shape[:2], bool)
    mask[y0 + int(0.62 * side):y0 + int(0.92 * side), x0 + int(0.22 * side):x0 + int(0.78 * side)] = True  # the mouth
    return photo, mask


def test_the_blur_fill_is_at_the_faces_scale_and_blurs_only_around_the_face_of_a_phone_photo(data_root, tmp_path,
                                                                                              monkeypatch):
    """The blur's sigma was a twelfth of the whole photo's side, computed over the whole photo: 15 s a stroke on a
    phone photo (2048 working px, sigma 170, the face's mouth blurred into the background), 3 s on a 1024x768 one.
    It is a twelfth of the face crop's side now, computed around the crop: the crop is exactly that of blurring the
    whole photo with that sigma."""
    import cv2

    from ferx.faces import square_crop

    photo, mask = _face_in_a_wide_photo(data_root, tmp_path, (800, 600), 300)
    face = occlude_face(photo, mask, fill="blur")
    box = tuple(v * photo.scale for v in face.face.box)
    _, (sx0, _, sx1, _), _ = square_crop(photo.rgb, box)
    blurred = cv2.GaussianBlur(photo.rgb, (0, 0), (sx1 - sx0) / 12)  # the whole photo, at the face's scale
    expected = photo.rgb.copy()
    expected[mask] = blurred[mask]
    assert np.array_equal(face.occluded, square_crop(expected, box)[0])
    assert np.array_equal(face.crop, square_crop(photo.rgb, box)[0]) and 0.1 < face.covered < 0.3

    photo, mask = _face_in_a_wide_photo(data_root, tmp_path, (2048, 1536), 420)
    blurred_sizes, blur = [], cv2.GaussianBlur

    def recorded(image, *args, **kwargs):
        blurred_sizes.append(image.shape[0] * image.shape[1])
        return blur(image, *args, **kwargs)

    monkeypatch.setattr(cv2, "GaussianBlur", recorded)
    face = occlude_face(photo, mask, fill="blur")
    # the window around the crop, not the 2048 x 1536 working photo (15 s a stroke; bench/ has no timing of it)
    assert 0.1 < face.covered < 0.3 and blurred_sizes and max(blurred_sizes) < 0.3 * photo.rgb.shape[0] * photo.rgb.shape[1]


def test_the_occlusion_figure_draws_each_classs_bars_before_and_after_on_its_own_row(happy_photo):
    """A FERPlus model's classes (neutral first) drawn in the canonical order (angry first): each row's grey bar is
    that class's probability on the unpainted face, its blue bar on the occluded one, both recomputed here from the
    model; the JSON's new top class is the occluded face's. (The grey bars were drawn in the model's order, the blue
    ones in the canonical order, and new_top1 could be read from the unpainted face: no test saw either.)"""
    import torch

    from ferx.data.preprocess import to_model_input
    from ferx.explain.occlusion import occlusion_figure

    loaded = load_checkpoint(CHECKPOINTS / "lanmsff_ferplus", DEVICE)
    face = occlude_face(happy_photo, _mouth(happy_photo.rgb.shape), whole_image=True, fill="black")
    effect = occlusion_effect(loaded.model, loaded.input_spec, loaded.classes, face)
    x = to_model_input(np.stack([face.crop, face.occluded]), loaded.input_spec).to(DEVICE)
    with torch.no_grad():
        p = torch.softmax(loaded.model.eval()(x).float(), 1).cpu().numpy()
    ax = occlusion_figure(face, [effect], ["LANMSFF"]).axes[2]
    shown = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt")
    first = loaded.classes[int(p[0].argmax())]
    assert [t.get_text() for t in ax.get_yticklabels()] == [c + (" *" if c == first else "") for c in shown]
    before, after = ax.containers
    for bars, probs in ((before, p[0]), (after, p[1])):
        assert [b.get_width() for b in bars] == pytest.approx([probs[loaded.classes.index(c)] for c in shown], abs=1e-4)
    k = loaded.classes.index(first)
    assert ax.get_title().endswith(f"{first} {p[0, k]:.2f} → {p[1, k]:.2f} ({p[1, k] - p[0, k]:+.2f})")
    assert effect.to_dict()["new_top1"] == loaded.classes[int(p[1].argmax())] != first == "happy"  # the smile covered
