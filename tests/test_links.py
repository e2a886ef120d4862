"""Links that restore an Explain view: the face a link names is found again, and nothing else is opened."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ferx.data import pack_split
from ferx.data.datasets import load_split
from webapp.links import face_of, restore_face, restore_settings, view_link


def test_a_dataset_face_link_reopens_its_exact_pixels(data_root, tmp_path):
    swept = set()
    path, restored = restore_face({"dataset": "ckplus", "split": "test", "sample": "7"}, data_root, [], swept)
    packed = pack_split(load_split("ckplus", "test", data_root), progress=False)
    assert np.array_equal(np.asarray(Image.open(path)), packed.images[7]) and swept == {path}
    assert restored == {"dataset": "ckplus", "split": "test", "sample": 7, "true": packed.classes[packed.targets[7]],
                        "png_sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}
    link = view_link("http://host:7860/?old=1", face_of(path, restored, []), {"chosen": ["a", "b"], "opacity": 0.5})
    assert link.startswith("http://host:7860/?view=explain&dataset=ckplus&split=test&sample=7&chosen=")
    other = tmp_path / "mine.png"  # other bytes under a face's origin (one left from before)
    Image.fromarray(packed.images[8]).save(other)
    assert face_of(str(other), restored, []) is None


def test_a_ferplus_face_link_brings_its_annotators_votes_as_the_gallery_does(data_root):
    """A link to a FERPlus face restores the same origin, votes included, as opening it from the Dataset tab."""
    swept = set()
    _, restored = restore_face({"dataset": "ferplus", "split": "test", "sample": "3"}, data_root, [], swept)
    packed = pack_split(load_split("ferplus", "test", data_root), progress=False)
    votes = packed.soft_targets[3]
    assert restored["votes"] == {c: round(float(v), 3) for c, v in zip(packed.classes, votes) if v > 0}
    assert sum(restored["votes"].values()) == pytest.approx(1, abs=0.01)


@pytest.mark.parametrize("params, message", [
    ({"dataset": "/etc", "split": "test", "sample": "0"}, "names no face this server can open"),
    ({"dataset": "ckplus", "split": "../x", "sample": "0"}, "names no face this server can open"),
    ({"dataset": "ckplus", "split": "test", "sample": "99999"}, "ckplus/test has no face #99999"),
    ({"dataset": "ckplus", "split": "test", "sample": "1e3"}, "ckplus/test has no face #1e3"),
    ({"example": "passwd"}, "example 'passwd' is not one of this server's examples"),
])
def test_a_link_opens_nothing_but_a_configured_face(data_root, params, message):
    with pytest.raises(ValueError, match=message):
        restore_face(params, data_root, [], set())


def test_an_upload_has_no_link_and_an_example_is_known_by_its_bytes(tmp_path):
    example = tmp_path / "examples" / "face.png"
    example.parent.mkdir()
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(example)
    upload = tmp_path / "face.png"  # an upload of the same name but other pixels
    Image.fromarray(np.full((8, 8, 3), 91, np.uint8)).save(upload)
    assert face_of(str(upload), None, [(str(example), "caption")]) is None
    assert face_of(str(example), None, [(str(example), "caption")]) == {"example": "face.png"}
    assert restore_face({"example": "face.png"}, tmp_path, [(str(example), "caption")], set()) == (str(example), None)
    # a file's hash is read once per version of it (each explanation asked for the photo's twice and every
    # example's): the upload rewritten with the example's bytes is the example now
    upload.write_bytes(example.read_bytes())
    assert face_of(str(upload), None, [(str(example), "caption")]) == {"example": "face.png"}


def test_a_hand_edited_setting_out_of_its_range_is_left_out_by_name(monkeypatch):
    import gradio as gr

    shown = []
    monkeypatch.setattr(gr, "Warning", shown.append)
    components = {"opacity": gr.Slider(0, 1, render=False), "clip_pct": gr.Slider(90, 100, render=False),
                  "index": gr.Number(0, minimum=0, render=False), "faithfulness": gr.Checkbox(render=False),
                  "colormap_name": gr.Dropdown(["auto", "viridis"], render=False)}
    params = {"opacity": "7", "clip_pct": "abc", "index": "2", "faithfulness": "1", "colormap_name": '"viridis"'}
    assert restore_settings(params, components) == {"index": 2, "colormap_name": "viridis"}
    assert shown == ["this link's opacity 7 is outside 0-1; left out", "this link's clip_pct 'abc' cannot be read; left out",
                     "this link's faithfulness 1 is not true or false; left out"]
    assert restore_settings({"opacity": "0.6", "index": "-1"}, components) == {"opacity": 0.6}
    assert shown[-1] == "this link's index -1 is below 0; left out"


def test_a_bundle_face_link_reopens_on_a_server_without_the_data(data_root, tmp_path, monkeypatch):
    """A Space has no dataset, only its precomputed bundle: a link made there to one of the bundle's faces (named as
    the dataset's face, which it is) opens the same pixels from the bundle."""
    import json

    from ferx.analysis.bundle import MANIFEST
    from ferx.data.packed import PackedSplit

    packed = pack_split(load_split("ckplus", "test", data_root), progress=False)
    bundle = tmp_path / "bundle"
    PackedSplit.save(packed, bundle / "faces" / "ckplus-test.npz")
    (bundle / MANIFEST).write_text(json.dumps({"splits": {"ckplus/test": "faces/ckplus-test.npz"}}))
    no_data = tmp_path / "no-data"
    no_data.mkdir()
    params = {"dataset": "ckplus", "split": "test", "sample": "11"}
    with pytest.raises(ValueError, match="comes from ckplus/test, which this server does not have"):
        restore_face(params, no_data, [], set())  # no bundle either
    monkeypatch.setenv("FERX_CACHE_DIR", str(bundle))
    path, restored = restore_face(params, no_data, [], set())
    assert np.array_equal(np.asarray(Image.open(path)), packed.images[11])
    assert face_of(path, restored, []) == {"dataset": "ckplus", "split": "test", "sample": 11}
