"""The tabs' handlers on real faces, called as gradio calls them: a gallery face opens in Explain as the
very pixels the analysis scored (same probabilities), with its origin and true label; a zip's non-image
files are counted; the clickable confusion matrix is the coloured one; a wrong face number is one message."""

import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import CHECKPOINTS
from ferx.analysis import analyze_packed, confusion_frame
from ferx.data import load_split, pack_split
from webapp.model_bank import ModelBank

MODEL = "lanmsff_ferplus"


@pytest.fixture(scope="module")
def bank():
    return ModelBank.load(CHECKPOINTS, "cpu")


@pytest.fixture(scope="module")
def analysis(data_root, bank, tmp_path_factory):
    from webapp.dataset_tab import Analysis

    packed = pack_split(load_split("ferplus", "test", data_root), progress=False).head(40)
    runs = analyze_packed([bank.models[MODEL]], packed, progress=False, cache_dir=tmp_path_factory.mktemp("cache"))
    return Analysis(runs, packed)


def test_gallery_face_opens_in_explain_with_the_analysed_pixels_and_label(bank, analysis):
    from webapp.dataset_tab import open_in_explain
    from webapp.explain_tab import explain

    ids = [7, 3]
    swept = set()
    path, whole, index, source, _ = open_in_explain(analysis, ids, 1, swept)
    assert swept == {path}  # deleted with the uploads (webapp/uploads.py)
    true = analysis.packed.classes[analysis.packed.targets[3]]
    votes = {c: round(float(v), 3) for c, v in zip(analysis.packed.classes, analysis.packed.soft_targets[3]) if v > 0}
    assert source == {"dataset": "ferplus", "split": "test", "sample": 3, "true": true, "votes": votes}
    assert max(votes, key=votes.get) == true  # the annotators' majority is the label
    assert np.array_equal(np.asarray(Image.open(path)), analysis.packed.images[3])  # lossless, not a thumbnail
    assert whole is True and index == 0

    out = explain(bank, path, whole, index, [MODEL], True, ["gradcam"], [], "predicted", "none", 0.5, "auto", 99,
                  True, False, "blur", source=source)
    status, numbers = out[0], out[3]
    assert "ferplus/test face #3" in status and f"true label **{true}**" in status
    assert f"annotators: {true} {votes[true]:.0%}" in status  # the votes beside the models' probabilities
    assert numbers["photo"]["sample"] == source
    probs = np.array(list(numbers["models"][0]["probabilities"].values()))
    assert np.allclose(probs, analysis.runs[0].probs[3], atol=1e-4)  # what the analysis scored, to float error


def test_zip_reports_non_image_files(data_root, tmp_path):
    from webapp.dataset_tab import left_out, read_faces

    faces = pack_split(load_split("ferplus", "test", data_root), progress=False).head(6)
    archive = tmp_path / "mine.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i, image in enumerate(faces.images):
            png = tmp_path / f"{i}.png"
            Image.fromarray(image).save(png)
            z.write(png, f"{faces.classes[faces.targets[i]]}/{i}.png")
        z.writestr("README.txt", "my faces")
        z.writestr("happy/notes.docx", "not an image")
        z.writestr("happy/broken.png", b"not a png")
    packed, non_images = read_faces("", "test", data_root, str(archive), tmp_path / "scratch", 100)
    assert len(packed) == 6 and non_images == 2 and packed.skipped == 1
    assert left_out(packed.skipped, non_images) == " (1 unreadable image and 2 files that are not an image skipped)"
    assert left_out(0, 0) == ""


def brightness(style: str) -> int:
    colour = style.split("background-color: #")[1][:6]
    return sum(int(colour[i:i + 2], 16) for i in (0, 2, 4))


def test_confusion_matrix_is_clickable_and_coloured_by_row_share(analysis):
    import gradio as gr

    from webapp.dataset_tab import matrix_table

    counts = confusion_frame(analysis.runs[0])
    shown = gr.Dataframe(interactive=False).postprocess(matrix_table(counts))  # what the browser is sent
    assert [row[0] for row in shown.data] == list(counts.index)  # first column: the row labels a click maps back to
    styles = shown.metadata["styling"]
    for r, (_, row) in enumerate(counts.iterrows()):
        if row.sum() == 0:
            continue
        full, empty = int(np.argmax(row.to_numpy())), int(np.argmin(row.to_numpy()))
        assert brightness(styles[r][full + 1]) < brightness(styles[r][empty + 1])  # the larger share is darker
        if row.iloc[empty] == 0:
            assert styles[r][empty + 1].startswith("background-color: #f7fbff")  # an empty cell: the scale's white


def test_controls_a_source_cannot_honour_are_disabled_and_say_why():
    from webapp.dataset_tab import source_controls

    split, calibrate = source_controls("bundle:ferplus/test", None)
    assert split["value"] == "test" and split["interactive"] is False and "one split" in split["info"]
    assert calibrate["value"] is False and calibrate["interactive"] is False and "val split" in calibrate["info"]
    split, calibrate = source_controls("ferplus", "faces.zip")
    assert split["interactive"] is True and calibrate["interactive"] is False
    split, calibrate = source_controls("ferplus", None)
    assert split["interactive"] is True and calibrate["interactive"] is True


def test_a_wrong_face_number_is_one_message_and_the_panels_keep_their_content(bank, analysis, monkeypatch):
    import gradio as gr

    from webapp.compare_tab import compare
    from webapp.dataset_tab import open_in_explain
    from webapp.explain_tab import explain

    path = open_in_explain(analysis, [0], 0, set())[0]
    shown = []
    monkeypatch.setattr(gr, "Warning", shown.append)  # the toast
    out = compare(bank, path, True, 3)
    assert out[0] == "**face 3: 1 face found; it is face 0**" and shown == ["face 3: 1 face found; it is face 0"]
    assert len(out) == 3 + 4 * len(bank.names) and all(o == gr.skip() for o in out[3:])  # left as they were
    out = explain(bank, path, True, 2, [MODEL], True, ["gradcam"], [], "predicted", "none", 0.5, "auto", 99, True,
                  False, "blur")
    assert out[0].startswith("**face 2:") and len(out) == 9 and all(o == gr.skip() for o in out[1:])


def test_without_data_the_examples_are_two_portraits_whose_face_is_found(tmp_path):
    """A Space (or a machine without ../shared) still has examples: public-domain portraits that ship inside
    installed packages; each is a real photo whose face the detector finds."""
    from ferx.faces import find_faces, load_photo
    from webapp.compare_tab import example_photos

    examples = example_photos(tmp_path / "no-data")
    assert [caption.split(",")[0] for _, caption in examples] == ["Photo: Eileen Collins", "Photo: Grace Hopper"]
    for path, _ in examples:
        assert len(find_faces(load_photo(path)).faces) >= 1
