import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ferx.data import (CKPLUS_7, FER2013_7, FERPLUS_8, DatasetLayoutError, get_label_set, label_mapping, load_ckplus,
                       load_fer2013, load_ferplus, load_image_folder, load_split, pack_split, to_model_input)
from ferx.data.datasets import ferplus_majority
from ferx.data.labels import canonical_name
from ferx.data.packed import PackedSplit
from ferx.models import get_model_info


# ------------------------------------------------------------------ labels

def test_label_aliases_and_mappings():
    assert canonical_name("Happiness") == canonical_name("happy") == "happy"
    assert canonical_name("anger") == "angry" and canonical_name("sadness") == "sad"
    with pytest.raises(KeyError, match="unknown expression label"):
        canonical_name("smirk")
    to_fer = label_mapping(FERPLUS_8, FER2013_7)
    assert [FER2013_7.classes[i] if i >= 0 else None for i in to_fer] == [
        "neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", None]
    assert label_mapping(FER2013_7, FERPLUS_8).min() >= 0  # every FER-2013 class exists in FERPlus
    assert get_label_set(["anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"]) is CKPLUS_7


def test_every_spelling_of_a_class_folder_names_its_own_class():
    """A folder named by a noun, adjective or participle of an expression, in any case, is that expression (a
    "Scared" folder was free to be read as surprise: no test named it)."""
    spellings = {"angry": ["Angry", "anger"], "disgust": ["disgust", "Disgusted"], "fear": ["fear", "fearful", "Scared"],
                 "happy": ["happy", "Happiness", "joy"], "sad": ["sad", "sadness"], "surprise": ["surprise", "surprised"],
                 "neutral": ["Neutral"], "contempt": ["contempt"]}
    assert {name: canonical_name(name) for names in spellings.values() for name in names} == \
        {name: c for c, names in spellings.items() for name in names}


# ------------------------------------------------------------------ real archives

def test_fer2013_counts(data_root):
    counts = {s: len(load_fer2013(data_root, s)) for s in ("train", "val", "test", "all")}
    assert counts == {"train": 28_709, "val": 3_589, "test": 3_589, "all": 35_887}
    every = load_fer2013(data_root, "all")
    per_class = dict(zip(FER2013_7.classes, np.bincount(every.targets).tolist()))
    assert per_class == {"angry": 4953, "disgust": 547, "fear": 5121, "happy": 8989, "sad": 6077,
                         "surprise": 4002, "neutral": 6198}
    assert all(p.split("/")[-1].startswith("PrivateTest_") for p in load_fer2013(data_root, "test").paths)


def test_fer2013_split_comes_from_the_file_name_in_two_folder_copies(data_root, tmp_path):
    """Many copies have only train/ and test/ (PublicTest + PrivateTest together)."""
    src = data_root / "fer2013"
    for folder, prefixes in (("train", ("Training",)), ("test", ("PublicTest", "PrivateTest"))):
        for prefix in prefixes:
            origin = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}[prefix]
            for f in sorted((src / origin / "happy").glob(f"{prefix}_*"))[:5]:
                dest = tmp_path / "fer2013" / folder / "happy"
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy(f, dest)
    assert [len(load_fer2013(tmp_path, s)) for s in ("train", "val", "test")] == [5, 5, 5]
    assert all("PublicTest_" in p for p in load_fer2013(tmp_path, "val").paths)


def test_ferplus_counts_and_majority_votes(data_root):
    raw = {"train": 28_558, "val": 3_579, "test": 3_573}
    kept = {"train": 26_940, "val": 3_396, "test": 3_371}
    for split in raw:
        data = load_ferplus(data_root, split)
        assert len(data) == kept[split]
        assert len(data) + sum(data.excluded.values()) == raw[split]
        assert np.allclose(data.soft_targets.sum(1), 1)
        assert (data.soft_targets.argmax(1) == data.targets).all()
    test = load_ferplus(data_root, "test")
    assert test.excluded == {"tie": 174, "unknown_or_not_face": 28}
    assert np.bincount(test.targets).tolist() == [1160, 908, 424, 424, 312, 20, 96, 27]


def test_ferplus_majority_rule():
    votes = np.array([[6, 0, 0, 0, 4, 0, 0, 0, 0, 0],   # neutral
                      [4, 4, 0, 0, 0, 0, 0, 0, 2, 0],   # tie -> excluded
                      [2, 0, 0, 0, 0, 0, 0, 0, 5, 3],   # unknown majority -> excluded
                      [0, 0, 0, 0, 0, 0, 0, 6, 0, 4]])  # contempt
    labels, reason = ferplus_majority(votes)
    assert labels.tolist() == [0, -1, -1, 7] and reason.tolist() == [0, 1, 2, 0]


def test_ckplus_counts_and_subject_wise_split(data_root):
    splits = {s: load_ckplus(data_root, s) for s in ("train", "val", "test")}
    assert sum(len(d) for d in splits.values()) == len(load_ckplus(data_root, "all")) == 981
    assert [len(d) for d in splits.values()] == [690, 147, 144]
    subjects = {s: {p.split("/")[-1].split("_")[0] for p in d.paths} for s, d in splits.items()}
    assert not (subjects["train"] & subjects["val"]) and not (subjects["train"] & subjects["test"])
    assert not (subjects["val"] & subjects["test"])


def test_load_split_by_name_and_layout_errors(data_root, tmp_path):
    assert len(load_split("ckplus", "all", data_root)) == 981
    with pytest.raises(DatasetLayoutError, match="does not look like FER-2013"):
        load_fer2013(tmp_path, "test")
    with pytest.raises(DatasetLayoutError, match="FERPlus"):
        load_ferplus(data_root / "fer2013", "test")
    with pytest.raises(ValueError, match="unknown split"):
        load_fer2013(data_root, "validation")
    with pytest.raises(ValueError, match="unknown dataset 'affectnet': use one of fer2013, ferplus, ckplus"):
        load_split("affectnet", "test", data_root)
    # a path that is not there is said to be missing (it was "unknown dataset '/.../my_faces': use one of fer2013 ...")
    for path in (str(tmp_path / "my_faces"), "./my_faces", "faces.zip"):
        with pytest.raises(ValueError, match=f"^{re.escape(path)}: no such folder or zip$"):
            load_split(path, "test", data_root)
    (tmp_path / "notes.txt").write_text("not faces")
    with pytest.raises(ValueError, match="notes.txt: not an image folder or zip$"):
        load_split(str(tmp_path / "notes.txt"), "test", data_root)


# ------------------------------------------------------------------ image folders and packing

def _write_folder(root, data_root):
    """A user folder with alias class names, a corrupt file and a non-image."""
    src = data_root / "ckplus48" / "CK+48"
    for name, origin in (("happiness", "happy"), ("anger", "anger"), ("surprised", "surprise")):
        (root / name).mkdir(parents=True)
        for f in sorted((src / origin).iterdir())[:4]:
            shutil.copy(f, root / name)
    (root / "anger" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "anger" / "notes.txt").write_text("not an image")


def test_image_folder_with_aliases_and_unreadable_files(data_root, tmp_path, caplog):
    _write_folder(tmp_path / "faces", data_root)
    data = load_image_folder(tmp_path / "faces")
    assert data.labels.classes == ("angry", "happy", "surprise") and len(data) == 13  # the .txt is not listed
    with caplog.at_level(logging.WARNING):
        packed = pack_split(data, cache_dir=tmp_path / "cache", progress=False)
    assert len(packed) == 12 and packed.skipped == 1
    assert "1 unreadable image(s) skipped" in caplog.text and "broken.png" in caplog.text
    # its name, relative to the dataset's root, is kept with the pack and its cached copy (the app names it)
    assert len(packed.unreadable) == 1 and packed.unreadable[0].endswith("broken.png")
    assert not Path(packed.unreadable[0]).is_absolute()
    assert pack_split(data, cache_dir=tmp_path / "cache", progress=False).unreadable == packed.unreadable
    assert data.mode == "L"  # CK+ frames are gray
    (tmp_path / "bad" / "smiles").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="class folders named by expression"):
        load_image_folder(tmp_path / "bad")


def test_packed_cache_is_reused_and_rebuilt_when_corrupt(data_root, tmp_path, monkeypatch, caplog):
    split = load_ckplus(data_root, "test")
    first = pack_split(split, cache_dir=tmp_path, progress=False)
    assert first.images.shape == (144, 48, 48) and first.images.dtype == np.uint8
    (cache_file,) = tmp_path.glob("*.npz")

    def no_decoding(*args, **kwargs):
        raise AssertionError("a cached pack must not decode images again")

    monkeypatch.setattr("ferx.data.packed.read_image", no_decoding)
    again = pack_split(split, cache_dir=tmp_path, progress=False)
    assert np.array_equal(again.images, first.images) and list(again.paths) == list(first.paths)

    monkeypatch.undo()
    cache_file.write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        rebuilt = pack_split(split, cache_dir=tmp_path, progress=False)
    assert "rebuilding" in caplog.text and np.array_equal(rebuilt.images, first.images)
    assert isinstance(PackedSplit.load(cache_file), PackedSplit)


def test_fer2013_training_split_packs_small_enough_to_travel(data_root, tmp_path):
    packed = pack_split(load_fer2013(data_root, "train"), cache_dir=tmp_path, progress=False)
    assert packed.images.shape == (28_709, 48, 48)
    (cache_file,) = tmp_path.glob("*.npz")
    assert cache_file.stat().st_size < 60 * 2**20


def test_preprocessing_follows_each_models_input_spec():
    gray = torch.full((2, 48, 48), 255, dtype=torch.uint8)
    lan = to_model_input(gray, get_model_info("lanmsff").input_spec)
    assert lan.shape == (2, 1, 64, 64) and torch.allclose(lan, torch.ones_like(lan))
    mini = to_model_input(gray, get_model_info("mini_xception").input_spec)
    assert torch.allclose(mini, torch.ones_like(mini))  # (1 - 0.5) / 0.5
    conv = to_model_input(gray, get_model_info("convcut").input_spec)
    assert conv.shape == (2, 3, 224, 224)
    expected = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(conv[0, :, 100, 100], expected, atol=1e-5)
    rgb = torch.zeros((1, 96, 96, 3), dtype=torch.uint8)
    rgb[..., 1] = 255  # pure green -> luma 0.587
    assert torch.allclose(to_model_input(rgb, get_model_info("lanmsff").input_spec), torch.tensor(0.587), atol=1e-3)
    # colour photos' crops to a gray model: exactly the floats of the weighted sum of the channels
    from ferx.data.preprocess import LUMA, _scaled

    spec = get_model_info("mini_xception").input_spec
    for side, n in ((spec.size, 1), (190, 1), (33, 3)):
        crops = torch.randint(0, 256, (n, side, side, 3), generator=torch.Generator().manual_seed(side),
                              dtype=torch.uint8)
        x = crops.float().div(255).permute(0, 3, 1, 2)
        weighted = (x * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
        if side != spec.size:
            weighted = torch.nn.functional.interpolate(weighted, size=(spec.size, spec.size), mode="bilinear",
                                                       align_corners=False, antialias=side > spec.size)
        assert torch.equal(_scaled(crops, spec), weighted)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # a bf16 analysis embeds an uploaded photo this way
            assert torch.equal(_scaled(crops, spec), weighted)
    with pytest.raises(TypeError, match="uint8"):
        to_model_input(torch.zeros(1, 48, 48), get_model_info("lanmsff").input_spec)


def test_colour_image_folders_are_packed_in_rgb(tmp_path):
    from PIL import Image

    for name in ("happy", "sad"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("RGB", (120, 90), (200, 30 * i, 10)).save(tmp_path / name / f"{i}.jpg")
    data = load_image_folder(tmp_path)
    assert data.mode == "RGB"
    packed = pack_split(data, size=64, cache_dir=tmp_path / "cache", progress=False)
    assert packed.images.shape == (6, 64, 64, 3)


def test_data_info_of_a_folder_without_splits_says_it_once(tmp_path, capsys):
    """`ferx data info FOLDER` printed the folder's one split three times, once per default split asked."""
    from ferx.cli import main

    for name in ("happy", "sad"):
        (tmp_path / "faces" / name).mkdir(parents=True)
        Image.new("L", (48, 48), 128).save(tmp_path / "faces" / name / "a.png")
    assert main(["data", "info", str(tmp_path / "faces")]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "folder:faces/all: 2 images (happy 1, sad 1)",
        "  (no split folders: every image is in split all)"]
    assert main(["data", "info", str(tmp_path / "faces"), "--splits", "all"]) == 0
    assert capsys.readouterr().out.splitlines() == ["folder:faces/all: 2 images (happy 1, sad 1)"]


def test_a_class_folders_images_in_sub_folders_are_its_faces_in_a_folder_and_a_zip(tmp_path):
    """A zip of happy/x.png and happy/2019/y.png was analysed as its top-level images alone, without a word: the
    sub-folders' faces were left out (torchvision's ImageFolder takes them, at any depth). A hidden folder is not."""
    import zipfile

    layout = ["test/happy/a.png", "test/happy/2019/b.png", "test/happy/2019/june/c.png", "test/sad/d.png",
              "test/sad/.thumbnails/e.png"]
    with zipfile.ZipFile(tmp_path / "faces.zip", "w") as z:
        for i, name in enumerate(layout):
            path = tmp_path / "folder" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("L", (48, 48), 40 * i).save(path)
            z.write(path, name)
    expected = ["happy/2019/b.png", "happy/2019/june/c.png", "happy/a.png", "sad/d.png"]
    for data in (load_image_folder(tmp_path / "folder", "test"),
                 load_split(str(tmp_path / "faces.zip"), "test", tmp_path, cache_dir=tmp_path / "zips")):
        assert sorted(str(p).split("test/", 1)[1] for p in data.paths) == expected
        assert [data.labels.classes[t] for t in data.targets] == ["happy", "happy", "happy", "sad"]


def test_prepare_refuses_a_cut_short_archive_by_name_and_keeps_nothing_of_it(tmp_path, capsys):
    """``ferx data prepare`` of an archive cut short (a copy interrupted) ended in a traceback ('tarfile.ReadError:
    unexpected end of data') and left the half it had unpacked in the data root. It names the archive now, keeps
    nothing of it, and the whole archive then unpacks."""
    from ferx.cli import main
    from ferx.data.datasets import get_dataset_info
    from ferx.data.prepare import DEFAULT_SOURCE

    archive = DEFAULT_SOURCE / get_dataset_info("ckplus").archive
    if not archive.is_file():
        pytest.skip(f"{archive} not found")
    source, root = tmp_path / "source", tmp_path / "data"
    source.mkdir()
    (source / archive.name).write_bytes(archive.read_bytes()[:1_200_000])
    argv = ["data", "prepare", "ckplus", "--source", str(source), "--data-root", str(root)]
    assert main(argv) == 1
    assert capsys.readouterr().err.strip() == (f"ferx data prepare: error: {archive.name} is damaged or cut short "
                                               "(unexpected end of data): nothing of it was unpacked; copy the archive "
                                               "again")
    assert list(root.iterdir()) == []
    (source / archive.name).write_bytes(archive.read_bytes())
    assert main(argv) == 0
    assert sum(1 for p in (root / get_dataset_info("ckplus").folder).rglob("*.png")) == 981


def test_a_ferplus_face_without_its_row_in_label_csv_is_counted_as_left_out(data_root, tmp_path, capsys):
    """FERPlus's label.csv with one row missing (a hand edit, a copy cut short): its face was dropped without a word,
    3,370 test faces for 3,371. It is left out and counted now, as ties and non-faces are."""
    from ferx.cli import main

    real = data_root / "ferplus" / "data"
    copy = tmp_path / "ferplus" / "data"
    copy.mkdir(parents=True)
    for folder in ("FER2013Train", "FER2013Valid"):
        (copy / folder).symlink_to(real / folder)
    (copy / "FER2013Test").mkdir()
    for face in (real / "FER2013Test").glob("*.png"):
        (copy / "FER2013Test" / face.name).symlink_to(face)
    rows = (real / "FER2013Test" / "label.csv").read_text().splitlines(keepends=True)
    assert rows[2].startswith("fer0032223.png,") and rows[2].split(",")[-10:][0] == "6"  # a neutral face of 6 votes
    (copy / "FER2013Test" / "label.csv").write_text("".join(rows[:2] + rows[3:]))
    assert main(["data", "info", "ferplus", "--splits", "test", "--data-root", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == (
        "ferplus/test: 3370 images (neutral 1159, happy 908, surprise 424, sad 424, angry 312, disgust 20, fear 96, "
        "contempt 27); excluded tie 174, unknown_or_not_face 28, no_row_in_label_csv 1")


def test_a_registered_dataset_with_a_class_folder_missing_is_refused_by_name(data_root, tmp_path, capsys):
    """CK+48 without its fear folder (a copy cut short, a folder moved) was taken as CK+48: 'fear 0' in ferx data
    info, and ferx evaluate scored 129 test faces for 144 and would record them on a card as CK+ test."""
    from ferx.cli import main

    real = data_root / "ckplus48" / "CK+48"
    copy = tmp_path / "ckplus48" / "CK+48"
    copy.mkdir(parents=True)
    for folder in real.iterdir():
        if folder.name != "fear":
            (copy / folder.name).symlink_to(folder)
    assert main(["data", "info", "ckplus", "--splits", "test", "--data-root", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"ferx data info: error: {copy}: CK+48's test split has no fear face, and every split of CK+48 has faces of all "
        "7 classes: a class folder is missing or empty. Delete ckplus48 in the data root and run `ferx data prepare` "
        "to unpack it again")
