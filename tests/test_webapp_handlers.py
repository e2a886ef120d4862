"""The tabs' handlers on real faces, called as gradio calls them: a gallery face opens in Explain as the
very pixels the analysis scored (same probabilities), with its origin and true label; a zip's non-image
files are counted; the clickable confusion matrix is the coloured one; a wrong face number is one message."""

import datetime
import hashlib
import inspect
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from conftest import CHECKPOINTS, face_zip, faces_of
from ferx.analysis import analyze_packed, confusion_frame
from ferx.data import load_split, pack_split
from webapp.model_bank import ModelBank

def test_a_zips_unreadable_images_are_named_by_their_paths_inside_it(data_root, bank, tmp_path):
    """A zip with a broken image and a text file named .jpg: the status said "2 unreadable images skipped", and
    which ones reached only the server's log. Now it names them by their paths inside the zip, no server path."""
    from webapp.config import AppConfig
    from webapp.dataset_tab import run_analysis

    faces = pack_split(load_split("ferplus", "test", data_root), progress=False).head(4)
    archive = face_zip(tmp_path / "class.zip", faces_of(faces, range(4), "test"),
                       [("test/happy/broken.jpg", b"\xff\xd8\xff\xe0 cut short"),
                        ("test/sad/notes.jpg", "my notes, not a photo")])
    cfg = AppConfig(data_root=data_root, checkpoints=CHECKPOINTS)
    status = run_analysis(bank, cfg, None, "test", str(archive), [MODEL], False, None, lambda *a, **k: None)[1]
    assert ": 4 faces (2 unreadable images skipped: test/happy/broken.jpg, test/sad/notes.jpg) — " in status, status
    assert str(tmp_path) not in status and "/tmp" not in status


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
    path, whole, index, source, models, _ = open_in_explain(analysis, ids, 1, swept)
    assert models == [MODEL]  # the analysed models, not Explain's own default ticks
    assert swept == {path}  # deleted with the uploads (webapp/uploads.py)
    true = analysis.packed.classes[analysis.packed.targets[3]]
    votes = {c: round(float(v), 3) for c, v in zip(analysis.packed.classes, analysis.packed.soft_targets[3]) if v > 0}
    assert source == {"dataset": "ferplus", "split": "test", "sample": 3, "true": true, "votes": votes,
                      "png_sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}  # the file it is the origin of
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
    # what the analysis scored: to float error, or to bf16's where the card let the analysis run in bf16 (Explain
    # scores in fp32), with the same top class
    run = analysis.runs[0]
    assert np.allclose(probs, run.probs[3], atol=1e-4 if run.compute_dtype == "fp32" else 5e-3)
    assert probs.argmax() == run.probs[3].argmax()


def test_every_tile_explain_draws_is_explained_under_the_maps(bank, analysis):
    """The readings under the gallery say what each tile shows (product.md: the app must explain what every map
    means): LANMSFF's channel-weight chart was drawn with no word on what its bars are."""
    from webapp.dataset_tab import open_in_explain
    from webapp.explain_tab import explain

    path, whole, index, source, _, _ = open_in_explain(analysis, [3], 0, set())
    _, tiles, readings, *_ = explain(bank, path, whole, index, [MODEL], True, [], [], "predicted", "none", 0.5,
                                     "auto", 99, True, False, "blur", source=source)
    captions = [caption.split(" · deletion")[0] for _, caption in tiles]  # less the faithfulness tag
    assert f"{MODEL} · MassAtt channel weights" in captions
    for caption in captions:
        assert f"*{caption}*" in readings, caption


def test_a_dataset_face_explained_again_in_other_colours_is_redrawn_not_recomputed(bank, analysis, tmp_path,
                                                                                    monkeypatch):
    """The explanation of a dataset face is kept (by face, checkpoint hashes and the settings that change a
    number): another colormap, opacity or scale redraws it; another method is computed; an upload is never kept."""
    import shutil

    import webapp.explain_tab as tab
    from webapp.dataset_tab import open_in_explain

    computed = []

    def counting(*args, **kwargs):
        computed.append(args[3])
        return real(*args, **kwargs)

    real = tab.explain_photo
    monkeypatch.setattr(tab, "explain_photo", counting)
    monkeypatch.setattr(tab, "EXPLAINED", tab.Explained())
    path, whole, index, source, models, _ = open_in_explain(analysis, [5], 0, set())

    def run(path, cmap, cam, source=source):
        return tab.explain(bank, path, whole, index, [MODEL], False, [cam], [], "predicted", "none", 0.5, cmap, 99,
                           True, False, "blur", source=source)

    first, again = run(path, "auto", "gradcam"), run(path, "magma", "gradcam")
    assert computed == [["gradcam"]]  # the second, in magma, from the kept explanation
    assert first[3] == again[3] and not np.array_equal(first[1][0][0], again[1][0][0])  # same numbers, new colours
    run(path, "auto", "hirescam")
    assert computed == [["gradcam"], ["hirescam"]]
    upload = tmp_path / "my_face.png"
    shutil.copy(path, upload)
    run(str(upload), "auto", "gradcam", source=None)
    run(str(upload), "magma", "gradcam", source=None)
    assert len(computed) == 4  # an upload's explanation is computed each time: it is not kept
    # another photo while the first face's origin is still set (an example clicked, a link's face): not face #5's
    other, *_ = open_in_explain(analysis, [7], 0, set())
    status = run(other, "auto", "gradcam")[0]
    assert len(computed) == 5 and "face #5" not in status
    assert run(path, "auto", "gradcam")[0].startswith("ferplus/test face #5")  # face #5 itself: kept, with its origin
    assert len(computed) == 5


def test_zip_reports_non_image_files(data_root, tmp_path):
    from ferx.data.packed import left_out
    from webapp.dataset_tab import read_faces

    faces = pack_split(load_split("ferplus", "test", data_root), progress=False).head(6)
    archive = face_zip(tmp_path / "mine.zip", faces_of(faces, range(6)),
                       [("README.txt", "my faces"), ("happy/notes.docx", "not an image"),
                        ("happy/broken.png", b"not a png")])
    packed, non_images = read_faces("", "test", data_root, str(archive), tmp_path / "scratch", 100)
    assert len(packed) == 6 and non_images == 2 and packed.skipped == 1
    assert left_out(packed.skipped, non_images) == " (1 unreadable image and 2 files that are not an image skipped)"
    assert left_out(0, 0) == ""
    # a face of the zip's analysis opens in Explain with its origin (the zip's name, its number, its folder's label)
    from webapp.dataset_tab import Analysis, open_in_explain
    from webapp.explain_tab import explain

    bank = ModelBank.load(CHECKPOINTS, "cpu")
    analysis = Analysis(analyze_packed([bank.models[MODEL]], packed, progress=False, cache_dir=tmp_path / "c"), packed)
    path, whole, index, source, _, _ = open_in_explain(analysis, [2], 0, set())
    status = explain(bank, path, whole, index, [MODEL], False, ["gradcam"], [], "predicted", "none", 0.5, "auto", 99,
                     True, False, "blur", source=source)[0]
    true = packed.classes[packed.targets[2]]
    assert status.startswith(f"zip:mine/all face #2 (its exact pixels) · true label **{true}**"), status
    from dataclasses import replace

    other = replace(packed, images=255 - packed.images)  # another user's zip of the same name and labels, other pixels
    theirs, _, _, their_source, _, _ = open_in_explain(Analysis(analysis.runs, other), [2], 0, set())
    assert theirs != path and np.array_equal(np.asarray(Image.open(path)), packed.images[2])  # neither overwritten
    assert np.array_equal(np.asarray(Image.open(theirs)), other.images[2])


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


def contrast(style: str) -> float:
    """The WCAG contrast ratio of a cell's text colour and its background, from its CSS."""
    def luminance(hex_colour):
        c = np.array([int(hex_colour[i:i + 2], 16) for i in (0, 2, 4)]) / 255
        c = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        return float(c @ [0.2126, 0.7152, 0.0722])

    css = dict(p.strip().split(": ") for p in style.split(";") if p.strip())
    lum = sorted((luminance(css["background-color"][1:7]), luminance(css["color"][1:7])))
    return (lum[1] + 0.05) / (lum[0] + 0.05)


def test_every_matrix_cell_number_has_aa_contrast_with_its_shade():
    """A cell's count stays readable at every share of its row (WCAG AA, 4.5:1): pandas wrote #f1f1f1 on the mid
    blues, 2.7:1 for a 32 of 54 (light and dark theme alike: the cells carry their own colours)."""
    import pandas as pd

    from webapp.dataset_tab import matrix_table

    counts = pd.DataFrame([[k, 100 - k] for k in range(101)], columns=pd.Index(["happy", "sad"], name="predicted"),
                          index=pd.Index([f"r{k}" for k in range(101)], name="true"))
    styles = gr.Dataframe(interactive=False).postprocess(matrix_table(counts)).metadata["styling"]
    ratios = [contrast(style) for row in styles for style in row[1:]]
    assert len(ratios) == 202 and min(ratios) >= 4.5, f"lowest contrast {min(ratios):.2f}:1"


def test_controls_a_source_cannot_honour_are_disabled_and_say_why():
    from webapp.dataset_tab import source_controls

    split, calibrate, faces, face = source_controls("bundle:ferplus/test", None)
    assert split["value"] == "test" and split["interactive"] is False and "one split" in split["info"]
    assert calibrate["value"] is False and calibrate["interactive"] is False and "val split" in calibrate["info"]
    assert faces["interactive"] is False and "a configured dataset's images are faces" in faces["info"]
    split, calibrate, faces, face = source_controls("ferplus", "faces.zip")
    assert split["interactive"] is True and calibrate["interactive"] is False
    assert faces["interactive"] is True and face["interactive"] is False and face["info"].startswith("with detect")
    *_, face = source_controls("ferplus", "faces.zip", "detect")
    assert face["interactive"] is True and face["info"].startswith("best: ")
    split, calibrate, faces, face = source_controls("ferplus", None)
    assert split["interactive"] is True and calibrate["interactive"] is True
    assert faces["interactive"] is False and face["interactive"] is False


def test_stop_ends_the_face_search_of_a_zip_of_photos(data_root, bank, tmp_path):
    """Finding the faces of a zip of photos takes a while before any model batch starts: Stop ends it
    with the photos being searched when it is pressed, not after the last."""
    import types

    import ferx.data.packed as packing
    from ferx.data import load_fer2013
    from ferx.data.photos import write_photo_folder
    from webapp.config import AppConfig
    from webapp.dataset_tab import STOPS, run_analysis

    folder = tmp_path / "photos"
    photos = write_photo_folder(pack_split(load_fer2013(data_root, "test"), progress=False), folder, 12, seed=2)
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in photos:
            z.write(path, path.relative_to(folder))
    searched, real = [], packing.read_faces

    def search_then_press_stop_at_the_third(path, *args, **kwargs):
        searched.append(path.name)
        if len(searched) == 3:
            STOPS.stop("stopper")  # what the Stop button does for this session
        return real(path, *args, **kwargs)

    cfg = AppConfig(data_root=data_root, checkpoints=CHECKPOINTS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(packing, "read_faces", search_then_press_stop_at_the_third)
        with pytest.raises(gr.Error, match="The analysis was stopped"):
            run_analysis(bank, cfg, None, "test", str(archive), ["mini_xception_fer2013"], False,
                         types.SimpleNamespace(session_hash="stopper"), lambda *a, **k: None, "detect", "best")
    # photos are searched PHOTO_WORKERS at a time: the one the other thread had already taken may finish,
    # no later photo is searched (with one thread: photos 4 to 12 never are)
    assert 3 <= len(searched) <= 3 + packing.PHOTO_WORKERS - 1


def test_a_zip_of_photos_is_scored_as_ferx_analyze_faces_detect_scores_it(data_root, bank, tmp_path, monkeypatch,
                                                                           capsys):
    """The Dataset tab's zip upload with 'detect': each photo's face found and cropped through the CLI's
    core path (the same faces and probabilities as `ferx analyze --faces detect`), the photos without a
    face counted in the summary; 'given' (the default) shrinks each whole photo as before."""
    from ferx.analysis import analyze
    from ferx.cli import main
    from ferx.data import load_fer2013
    from ferx.data.photos import write_photo_folder
    from webapp.config import AppConfig
    from webapp.dataset_tab import run_analysis

    folder = tmp_path / "photos"
    photos = write_photo_folder(pack_split(load_fer2013(data_root, "test"), progress=False), folder, 36, seed=1)
    Image.new("RGB", (256, 256), (128, 128, 128)).save(folder / "happy" / "blank.jpg")  # surely no face
    archive = tmp_path / "my_photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in photos + [folder / "happy" / "blank.jpg"]:
            z.write(path, path.relative_to(folder))
    monkeypatch.setenv("FERX_CACHE_DIR", str(tmp_path / "cache"))  # the CLI's packs and runs; the app's go to scratch
    model = "mini_xception_fer2013"
    cfg = AppConfig(data_root=data_root, checkpoints=CHECKPOINTS)

    def app(faces: str):
        return run_analysis(bank, cfg, None, "test", str(archive), [model], False, None, lambda *a, **k: None,
                            faces, "best")

    analysis, status = app("detect")[:2]
    (cli_run,) = analyze([CHECKPOINTS / model], str(archive), "test", device="cpu", progress=False, faces="detect")
    (run,) = analysis.runs
    assert run.faces == cli_run.faces == "detect:best:mtcnn" and 1 <= run.no_face == cli_run.no_face < 12
    assert list(run.paths) == list(cli_run.paths) and len(run) == len(run.paths) == 37 - run.no_face
    assert np.allclose(run.logits, cli_run.logits, atol=1e-5)
    assert analysis.packed.images.shape[1:] == (64, 64)  # the crop at the model's input, as a photo's is scored
    note = (f"{len(run)} faces (faces found by mtcnn: the most face-like face of each photo, as a single photo is "
            f"scored; {run.no_face} photos without a face left out)")
    assert status.startswith(f"**my_photos.zip**: {note} — {model} (computed)")  # a zip without split folders
    assert main(["analyze", str(CHECKPOINTS / model), "--dataset", str(archive), "--faces", "detect", "--device", "cpu",
                 "--top", "1"]) == 0
    assert f"my_photos.zip: {note} ({model}: fp32, cache)" in capsys.readouterr().out

    analysis, status = app("given")[:2]
    assert status.startswith(f"**my_photos.zip**: 37 faces — {model} (computed)")
    assert analysis.packed.faces == "given" and analysis.packed.images.shape[1:3] == (48, 48)  # the photo shrunk

    blank = tmp_path / "blank.zip"
    with zipfile.ZipFile(blank, "w") as z:
        for name in ("happy", "sad"):
            z.write(folder / "happy" / "blank.jpg", f"{name}/blank.jpg")
    with pytest.raises(gr.Error) as err:
        run_analysis(bank, cfg, None, "test", str(blank), [model], False, None, lambda *a, **k: None, "detect", "all")
    assert err.value.message == "no faces found in blank.zip"  # no server path in the message


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


def test_a_bundle_built_where_the_cpu_has_bf16_is_found_where_it_has_none(data_root, bank, tmp_path, monkeypatch):
    """A run's cache key holds its precision; 'auto' is bf16 on a CPU with native bf16 for a checkpoint whose
    card says bf16 agrees. The Space's CPU may lack it: the bundle must still answer, computing nothing."""
    from ferx.analysis.bundle import build_bundle
    from ferx.checkpoint import LoadedModel
    from webapp.config import AppConfig
    from webapp.dataset_tab import run_analysis

    model = "mini_xception_fer2013"
    with monkeypatch.context() as m:  # the machine that builds the bundle
        m.setattr("ferx.device.cpu_has_bf16", lambda: True)
        m.setattr(LoadedModel, "bf16_agrees", property(lambda self: True))
        build_bundle([CHECKPOINTS / model], "ckplus", "test", tmp_path / "bundle", data_root=data_root, methods=())
    monkeypatch.setenv("FERX_CACHE_DIR", str(tmp_path / "bundle"))
    monkeypatch.setattr("ferx.device.cpu_has_bf16", lambda: False)  # the Space's

    def no_inference(*args, **kwargs):
        raise AssertionError("a bundled analysis must not run the model")

    monkeypatch.setattr("ferx.analysis.runs.predict_logits_and_embeddings", no_inference)
    cfg = AppConfig(data_root=tmp_path / "no-datasets", checkpoints=CHECKPOINTS)
    status = run_analysis(bank, cfg, "bundle:ckplus/test", "test", None, [model], False, None,
                          lambda *a, **k: None)[1]
    assert status.endswith(f"{model} (from cache)")


def test_temperature_scaling_of_the_val_split_is_refused_in_one_message(data_root, bank):
    """Split 'val' with 'Temperature scaling (fitted on the val split)' ticked fitted T on the faces it scored."""
    from webapp.config import AppConfig
    from webapp.dataset_tab import run_analysis

    cfg = AppConfig(data_root=data_root, checkpoints=CHECKPOINTS)
    with pytest.raises(gr.Error) as err:
        run_analysis(bank, cfg, "ckplus", "val", None, ["mini_xception_fer2013"], True, None, lambda *a, **k: None)
    assert err.value.message == (
        "Temperature scaling fits its temperature on ckplus/val, and the split analysed (ckplus/val) holds 147 of its "
        "faces: the calibration would be judged on the faces it was fitted on. Analyse a split without them (test), "
        "or this one without temperature scaling.")


def test_a_zip_of_faces_of_a_class_one_model_lacks_gives_it_a_blank_row_not_an_error(data_root, bank, tmp_path):
    """CK+ contempt faces, a FER-2013 model (no contempt) beside a FERPlus one: the analysis ended in scikit-learn's
    "Found empty input array"; now the FER-2013 row has n 0 and blank measures, its views open."""
    from webapp.config import AppConfig
    from webapp.dataset_tab import run_analysis, show_matrix

    packed = pack_split(load_split("ckplus", "test", data_root), progress=False)
    contempt = np.flatnonzero(packed.targets == packed.classes.index("contempt"))[:3]
    archive = face_zip(tmp_path / "contempt.zip", faces_of(packed, contempt))
    cfg = AppConfig(data_root=data_root, checkpoints=CHECKPOINTS)
    fer = "mini_xception_fer2013"
    out = run_analysis(bank, cfg, None, "test", str(archive), [fer, MODEL], False, None, lambda *a, **k: None)
    summary = out[2].set_index("model")
    assert summary.loc[fer, ["n", "n_excluded"]].tolist() == [0, 3]
    assert summary.loc[fer, ["accuracy", "macro_f1", "nll", "ece"]].isna().all()  # blank
    assert summary.loc[MODEL, "n"] == 3 and summary.loc[MODEL, ["accuracy", "ece"]].notna().all()
    assert summary.columns[-1] == "compute_dtype" and "precision" not in summary.columns  # not a classification metric
    per_class = show_matrix(out[0], fer, False)[1].value
    assert all(row[4] == 0 for row in per_class["data"])  # no face of any of its classes


def test_native_attention_alone_for_a_model_without_any_says_so(bank, analysis):
    """It ended in "Something went wrong (IndexError)": no tile to put on the slider."""
    from webapp.dataset_tab import open_in_explain
    from webapp.explain_tab import explain

    path = open_in_explain(analysis, [0], 0, set())[0]
    with pytest.raises(gr.Error) as err:
        explain(bank, path, True, 0, ["mini_xception_fer2013"], True, [], [], "predicted", "none", 0.5, "auto", 99,
                True, False, "blur")
    assert err.value.message == ("No map to draw: mini_xception_fer2013 has no native attention. Tick Grad-CAM "
                                 "or a Captum method as well.")


def test_a_new_photo_that_is_not_an_image_clears_the_last_photos_results(bank, tmp_path, monkeypatch):
    """In the browser a refused upload empties the panels (they held the previous photo's verdicts) and
    says why once; the /predict API still raises the same message."""
    from webapp.compare_tab import compare, compare_new_photo

    fake = tmp_path / "holiday.jpg"
    fake.write_text("not a picture")
    shown = []
    monkeypatch.setattr(gr, "Warning", shown.append)
    out = compare_new_photo(bank, str(fake), True, 0)
    assert len(shown) == 1 and shown[0].startswith("holiday.jpg: ") and str(tmp_path) not in shown[0]
    assert out[0] == f"**{shown[0]}**" and len(out) == 3 + 4 * len(bank.names) and all(o is None for o in out[1:])
    with pytest.raises(gr.Error) as err:
        compare(bank, str(fake), True, 0)
    assert err.value.message == shown[0]


def test_without_data_the_examples_are_two_portraits_whose_face_is_found(tmp_path):
    """A Space (or a machine without ../shared) still has examples: public-domain portraits that ship inside
    installed packages; each is a real photo whose face the detector finds."""
    from ferx.faces import find_faces, load_photo
    from webapp.compare_tab import example_photos

    examples = example_photos(tmp_path / "no-data")
    assert [caption.split(" (")[0] for _, caption in examples] == ["Photo: Eileen Collins", "Photo: Grace Hopper"]
    for path, _ in examples:
        assert len(find_faces(load_photo(path)).faces) >= 1


def test_a_cross_model_cell_click_selects_the_faces_of_the_cell_shown(bank, analysis):
    """A FER-2013 model against a FERPlus one: both axes hold either model's classes in one order (agreement on the
    diagonal), and a click on the cell (happy, happy) selects exactly the faces both call happy."""
    from types import SimpleNamespace

    from ferx.analysis import cross_model_frame
    from webapp.dataset_tab import Analysis, cross_click

    other = analyze_packed([bank.models["mini_xception_fer2013"]], analysis.packed, progress=False)[0]
    both = Analysis([other, analysis.runs[0]], analysis.packed)
    frame = cross_model_frame(other, analysis.runs[0])
    row = col = list(frame.index).index("happy")
    chosen = cross_click(both, other.name, MODEL, SimpleNamespace(index=(row, col + 1)))
    happy_a = np.asarray(other.model_classes)[other.preds] == "happy"
    happy_b = np.asarray(analysis.runs[0].model_classes)[analysis.runs[0].preds] == "happy"
    assert sorted(chosen["ids"]) == list(np.flatnonzero(happy_a & happy_b)) and frame.iloc[row, col] == len(chosen["ids"])


def test_the_cross_model_matrix_of_two_models_each_with_a_class_the_other_lacks_has_agreement_on_its_diagonal():
    """FER-2013 (neutral, no contempt) against CK+ (contempt, no neutral): A's own class was the last row and B's the
    last column, so 'A neutral, B contempt', a disagreement, sat on the diagonal (trace 10 of 10 faces, agreement 4)."""
    from types import SimpleNamespace

    from ferx.analysis import agreement, cross_model_frame
    from ferx.analysis.runs import ModelRun
    from ferx.data.labels import CKPLUS_7, FER2013_7
    from webapp.dataset_tab import Analysis, cross_click, show_cross

    def run(name, classes, said):
        logits = np.where(np.asarray(classes)[None] == np.asarray(said)[:, None], 5.0, -5.0).astype(np.float32)
        return ModelRun(name, "", "", classes, "ckplus", "test", "fp", CKPLUS_7.classes,
                        np.array([f"{i}.png" for i in range(len(said))]), np.zeros(len(said), np.int64), logits,
                        np.zeros((len(said), 2), np.float32))

    fer = run("fer", FER2013_7.classes, ["neutral"] * 6 + ["happy"] * 4)
    ck = run("ck", CKPLUS_7.classes, ["contempt"] * 6 + ["happy"] * 4)
    frame = cross_model_frame(fer, ck)
    assert list(frame.index) == list(frame.columns) == ["angry", "disgust", "fear", "happy", "sad", "surprise",
                                                        "neutral", "contempt"]
    assert np.trace(frame.to_numpy()) == 4 == agreement(fer, ck) * 10 and frame.loc["neutral", "contempt"] == 6
    analysis = Analysis([fer, ck], None)
    table, line = show_cross(analysis, "fer", "ck")
    shown = table.data.set_index(table.data.columns[0])  # as the app shows it: row labels in its first column
    assert np.trace(shown.to_numpy()) == 4 and "they agree on **40.0%** of the faces" in line
    row, col = list(shown.index).index("neutral"), list(shown.columns).index("contempt")
    chosen = cross_click(analysis, "fer", "ck", SimpleNamespace(index=(row, col + 1)))
    assert chosen["ids"] == [0, 1, 2, 3, 4, 5] and "fer (A) says *neutral*, ck (B) says *contempt*" in chosen["title"]
    assert cross_click(analysis, "fer", "ck", SimpleNamespace(index=(col, col + 1)))["ids"] == []  # contempt twice


def test_every_handler_of_the_app_turns_errors_into_one_message(bank, data_root):
    """A handler outside webapp.errors.user_errors shows gradio's str(error) (an AttributeError's text, a
    server path) and logs a traceback: a gallery face clicked after its analysis had expired did."""
    import functools

    from webapp.app import build_app
    from webapp.config import AppConfig

    demo = build_app(AppConfig(data_root=data_root, checkpoints=CHECKPOINTS), bank)
    bare = []
    for block_fn in demo.fns.values():
        fn = block_fn.fn.func if isinstance(block_fn.fn, functools.partial) else block_fn.fn
        if fn is None or not getattr(fn, "__module__", "").startswith("webapp") or fn.__name__ == "<lambda>":
            continue  # front-end only, gradio's own (examples), or a lambda that returns constants
        if not getattr(fn, "refuses_user_errors", False):
            bare.append(fn.__qualname__)
    assert not bare, bare


def test_a_gallery_face_clicked_after_its_analysis_expired_says_so():
    from webapp.dataset_tab import open_in_explain

    with pytest.raises(gr.Error) as err:
        open_in_explain(None, [0], 0, set())
    assert err.value.message == "This analysis is no longer kept on the server: run it again to open its faces."


def test_a_refusal_names_a_folder_by_its_own_name_not_where_the_server_keeps_it(tmp_path):
    """Paths in the server's folders (here the temporary one) are cut to their last part; every other slash
    (the layout hint, a zip's own entry names, "cheeks/jaw") stays."""
    from ferx.data import DatasetLayoutError, load_split
    from webapp.errors import user_errors

    @user_errors
    def handler():
        load_split("fer2013", "test", tmp_path / "datasets")

    with pytest.raises(gr.Error) as err:
        handler()
    assert err.value.message == ("datasets does not look like FER-2013: expected <split folder>/<class>/"
                                 "<Training|PublicTest|PrivateTest>_<n>.jpg; found nothing (folder does not exist). "
                                 "Run `ferx data prepare` to unpack ../shared/datasets into the data root.")
    with pytest.raises(DatasetLayoutError, match=str(tmp_path)):  # the CLI and the log keep the whole path
        load_split("fer2013", "test", tmp_path / "datasets")
    from webapp.errors import without_server_paths

    for kept in ("mine.zip: unsafe path '/happy/a.png' (absolute or outside the archive)",
                 "file names Training_*/PublicTest_*/PrivateTest_*", "cheeks/jaw 54% (area 31%)", "zip:my_photos/all",
                 "see http://127.0.0.1:7860/?view=explain&sample=3"):
        assert without_server_paths(kept) == kept


def test_studies_of_a_zips_faces_leave_nothing_in_the_cache(data_root, bank, tmp_path, monkeypatch):
    """The README promises that only the 2-D coordinates of a zip's faces are cached: the disagreement
    explorer's maps, the region shares and the attention study of a zip's faces wrote per-face files there."""
    import tempfile

    from webapp.config import AppConfig
    from webapp.dataset_tab import run_analysis, show_attention, show_disagreement, show_regions

    faces = pack_split(load_split("ferplus", "test", data_root), progress=False).head(16)
    monkeypatch.setenv("FERX_CACHE_DIR", str(tmp_path / "cache"))
    archive = face_zip(tmp_path / "mine.zip", faces_of(faces, range(16)))
    scratch_before = set(Path(tempfile.gettempdir()).glob("ferx-study-*"))
    cfg = AppConfig(data_root=data_root, checkpoints=CHECKPOINTS)
    quiet = lambda *a, **k: None  # noqa: E731 (gr.Progress outside a request)
    analysis = run_analysis(bank, cfg, None, "test", str(archive), [MODEL, "mini_xception_fer2013"], False, None,
                            quiet)[0]
    out = show_disagreement(bank, analysis, MODEL, "mini_xception_fer2013", "both most confident", 4, 2, set(),
                            progress=quiet)
    assert len(out[1]) >= 1  # they disagree on some of the 16 faces
    assert len(show_regions(bank, analysis, 2, set(), progress=quiet)[0])
    assert len(show_attention(bank, analysis, 2, set(), progress=quiet)[0])
    kept = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert kept == [], kept  # neither faces nor maps, region shares, attention scores or runs
    assert set(Path(tempfile.gettempdir()).glob("ferx-study-*")) == scratch_before


def test_a_damaged_checkpoint_is_named_on_the_models_tab_without_the_servers_folders(tmp_path):
    """A weight file that is not what its card says (e.g. a Git LFS pointer on a Space) is not offered; the
    Models tab says why by the file's own name (it showed the absolute path of the weights)."""
    import shutil

    from webapp.models_tab import card_sections

    folder = shutil.copytree(CHECKPOINTS / "mini_xception_fer2013", tmp_path / "checkpoints" / "broken")
    (folder / "model.safetensors").write_text("version https://git-lfs.github.com/spec/v1\n")  # an LFS pointer
    bank = ModelBank.load(tmp_path / "checkpoints", "cpu")
    assert "broken" in bank.unusable and str(tmp_path) in bank.unusable["broken"]  # the log gets the whole path
    _, sections = card_sections(bank)
    ((heading, why, _),) = sections[-1:]
    assert heading == "### Checkpoint `broken` — not offered" and str(tmp_path) not in why
    assert "model.safetensors" in why


def test_compare_reads_out_the_maps_it_draws_and_says_when_one_is_nearly_flat(data_root, bank, tmp_path):
    """LANMSFF's block-2 gate sits at about 0.15-0.165 everywhere; its own colour range drew that as a striking
    grid of red and blue with no word of warning (Explain says "nearly flat"), and the reading quoted block 4,
    which Compare does not draw."""
    from ferx.data.photos import example_faces
    from webapp.compare_tab import compare

    packed = pack_split(load_split("ferplus", "test", data_root), progress=False)
    ((photo, _),) = example_faces(packed, tmp_path, classes=["happy"])
    out = compare(bank, str(photo), False, 0)
    reading = out[3 + 4 * bank.names.index("lanmsff_ferplus") + 1]
    assert "MassAtt block 2 (**nearly flat: 0.1" in reading and "its colours exaggerate it" in reading
    assert "block 4" not in reading and "\nGrad-CAM → " in reading and "massatt_" not in reading


def test_the_models_tab_opens_with_one_row_per_model_and_its_measured_accuracy(bank):
    """The cards run to 13,000 px, a sha256 table first: the figures a user compares models by come first now."""
    from ferx.checkpoint import read_card
    from webapp.models_tab import card_sections

    table, _ = card_sections(bank)  # the head, before the first card
    # three columns, the input and size under what it is: five broke "input", "112×112" and "52,906,984" mid-way
    # in a 1,024-px window
    assert "| checkpoint | what it is | measured by `ferx evaluate` |" in table
    for name in bank.names:
        card = read_card(CHECKPOINTS / name)
        run = next(m for m in card["metrics"] if m["split"] == "test")
        row = next(line for line in table.splitlines() if line.startswith(f"| `{name}` |"))
        assert f"accuracy **{run['accuracy']:.2%}**" in row and f"{run['n']:,} faces" in row
        size = bank.models[name].input_spec.size
        what = row.split(" | ")[1]
        assert f"<br>{size}×{size} " in what and what.endswith(" parameters")
    assert "64×64 gray · 57 k parameters" in table  # mini-Xception's 56,951


def test_the_models_tab_says_what_each_model_is_in_plain_words_and_folds_the_training_log(bank):
    """Each card's notes are a training log for developers (learning rates, sha256s, epochs); a teacher saw
    30,000 characters of them. Each checkpoint now opens with its card's plain summary; the rest is folded."""
    from webapp.models_tab import card_sections

    _, sections = card_sections(bank)
    offered = {heading.split("`")[1]: (summary, body) for heading, summary, body in sections if "offered as" in heading}
    assert set(offered) == set(bank.names)
    for name, (summary, body) in offered.items():
        assert summary == bank.models[name].card["summary"] and summary not in body  # said once, unfolded
        assert "sha256" not in summary and "sha256" in body
    assert all("## Notes" in body for name, (_, body) in offered.items() if name != "mini_xception_fer2013")


def test_stop_pressed_after_the_analysis_finished_keeps_its_results_and_says_so(data_root, bank):
    """A cached analysis returns in a second: Stop pressed just after it said "Analysis stopped: nothing was
    kept." over the complete results (which had been kept)."""
    import types

    from webapp.config import AppConfig
    from webapp.dataset_tab import run_analysis, stop_analysis

    session = types.SimpleNamespace(session_hash="finished-then-stop")
    cfg = AppConfig(data_root=data_root, checkpoints=CHECKPOINTS)
    out = run_analysis(bank, cfg, "ckplus", "test", None, ["mini_xception_fer2013"], False, session,
                       lambda *a, **k: None)
    assert "**ckplus/test**: 144 faces" in out[1]
    assert stop_analysis(session) == gr.skip()  # the status line and the results stay
    again = run_analysis(bank, cfg, "ckplus", "test", None, ["mini_xception_fer2013"], False, session,
                         lambda *a, **k: None)  # and the next analysis is not stopped by that press
    assert "144 faces" in again[1]


def test_a_zip_without_a_readable_image_is_named_by_its_file_and_says_why(data_root, bank, tmp_path):
    """It said "no readable images in zip:junk/all": an internal id, and no reason (the log had it)."""
    from webapp.config import AppConfig
    from webapp.dataset_tab import run_analysis

    junk = tmp_path / "junk.zip"
    with zipfile.ZipFile(junk, "w") as z:
        z.writestr("happy/a.txt", "not a face")
        z.writestr("sad/b.png", b"\x89PNG\r\n\x1a\n garbage")
        z.writestr("readme.md", "# my faces")
    cfg = AppConfig(data_root=data_root, checkpoints=CHECKPOINTS)
    with pytest.raises(gr.Error) as err:
        run_analysis(bank, cfg, None, "test", str(junk), ["mini_xception_fer2013"], False, None, lambda *a, **k: None)
    assert err.value.message.startswith("no readable images in junk.zip (b.png: ")
    assert err.value.message.endswith("; 2 files that are not an image)") and "zip:" not in err.value.message


def test_each_stability_cell_gives_the_probability_of_the_label_it_names(bank, data_root):
    """A flipped version read "✗ angry 0.12": angry was the new top-1, 0.12 the original label's (neutral's)
    probability, and users read "angry 12 %". Every label in a cell now stands beside its own probability,
    checked here against the model's scores of the very versions the gallery shows."""
    import re

    import torch

    from ferx.data.preprocess import to_model_input
    from webapp.stability_tab import run_stability

    photo = data_root / "ferplus" / "data" / "FER2013Test" / "fer0032220.png"  # a frown the model half-reads as anger
    summary, table, gallery = run_stability(bank, str(photo), True, 0, [MODEL])
    cells = table[MODEL].tolist()
    loaded = bank.models[MODEL]
    with torch.inference_mode():
        x = to_model_input(torch.as_tensor(np.stack([image for image, _ in gallery])), loaded.input_spec)
        probs = torch.softmax(loaded.model(x).float(), dim=1).numpy()
    classes = list(loaded.classes)
    original = classes[int(probs[0].argmax())]
    assert f"**{MODEL}**: *{original}*" in summary
    flipped = 0
    for cell, p, (_, version) in zip(cells, probs[1:], gallery[1:]):
        named = re.findall(r"([a-z]+)\s(\d\.\d\d)", cell)  # every "label probability" pair the cell shows
        top = classes[int(p.argmax())]
        if top == original:
            assert cell.startswith(f"✓ {top}") and [label for label, _ in named] == [top], (version, cell)
        else:
            flipped += 1
            assert cell.startswith(f"✗ now {top}") and [label for label, _ in named] == [top, original], (version, cell)
        for label, shown in named:
            assert abs(float(shown) - p[classes.index(label)]) <= 0.005 + 1e-6, (version, cell)
    assert flipped >= 1  # the face has versions whose label flips: the ✗ cells are checked too


def test_a_number_out_of_range_is_taken_as_the_nearest_allowed_not_an_error_on_every_panel(bank, analysis, data_root):
    """Page 0 raised gradio's "Value 0 is less than minimum value 1." twice, red "Error" pills over the status
    lines and the Page box, and the gallery emptied, while page 9 (past the last) quietly showed the last page;
    face -1 on Compare did the same. Both ends now take the nearest number allowed, and the page box shows it."""
    from webapp.app import build_app
    from webapp.compare_tab import compare
    from webapp.config import AppConfig
    from webapp.dataset_tab import open_in_explain, page_of, selection

    demo = build_app(AppConfig(data_root=data_root, checkpoints=CHECKPOINTS), bank)
    page_box = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "dataset-gallery-page")
    face_box = next(b for b in demo.blocks.values() if getattr(b, "label", None) == "Face to score (0 = the most "
                    "face-like)")
    chosen = selection(MODEL, range(len(analysis.packed)), "all the faces", "ranking")
    for typed in (0, -3, 1, 9):
        items, _, title, summary, page = page_of(analysis, chosen, "as given", page_box.preprocess(typed))
        assert page == 1 and len(items) == len(analysis.packed), typed  # one page of 40: the box shows 1
        assert title == "all the faces" and summary.startswith(f"**{len(analysis.packed)} faces**")
    assert face_box.preprocess(-1) == 0 and face_box.preprocess(2.4) == 2
    path = open_in_explain(analysis, [0], 0, set())[0]
    assert "scoring face 0" in compare(bank, path, True, face_box.preprocess(-1))[0]


def test_every_example_caption_is_shown_whole_in_the_examples_table(data_root, tmp_path):
    """gradio's examples table shows a caption's first 60 characters: the portraits' read "Photo: Eileen Collins,
    NASA portrait (public domain) · no la...", the "no label" lost. Every caption, with data or without, fits."""
    import re

    from webapp.compare_tab import EXAMPLE_CAPTION_CHARS, example_photos

    examples = example_photos(data_root)
    assert len(examples) == 6  # four FER-2013 faces, two portraits
    for _, caption in examples:
        assert len(caption) <= EXAMPLE_CAPTION_CHARS, caption
        assert caption.endswith(" · no label") or re.search(r" · true label: [a-z]+$", caption), caption


def test_the_disagreement_gallery_says_how_many_of_all_disagreements_it_shows_and_both_labels(bank, analysis,
                                                                                             monkeypatch):
    """It said "60 faces · lanmsff_fer2013: accuracy 58.3%" beside an A x B matrix of 1,109 disagreements, and its
    captions showed model A alone ("#3367 surprise ✓ 0.85" read like an agreement). Now the title counts what is
    shown of all the disagreements, each caption gives both models' labels, the summary both models' figures."""
    from ferx.analysis import cross_model_frame
    from webapp import dataset_tab
    from webapp.dataset_tab import Analysis, first_page, show_failures

    other = analyze_packed([bank.models["mini_xception_fer2013"]], analysis.packed, progress=False)[0]
    both = Analysis([other, analysis.runs[0]], analysis.packed)
    a, b = other.name, MODEL
    total = len(analysis.packed) - int(np.trace(cross_model_frame(other, analysis.runs[0]).to_numpy()))
    assert total > 5
    monkeypatch.setattr(dataset_tab, "GALLERY_LIMIT", 5)  # a page of 5: the 40 faces' disagreements run past it
    chosen = show_failures(both, "Model A vs B disagreement", a, a, b)
    items, shown, title, summary, _ = first_page(both, chosen, "as given")
    assert title == f"**5 of {total} faces** where {a} (A) and {b} (B) disagree, both surest first"
    names_a, names_b = (np.asarray(r.model_classes)[r.preds] for r in both.runs)
    for (_, caption), i in zip(items, shown):
        true = analysis.packed.classes[analysis.packed.targets[i]]
        assert names_a[i] != names_b[i]
        assert caption.replace("\u00a0", " ") == (f"#{i} {true} · A {names_a[i]} {other.confidence[i]:.2f} · "
                                                  f"B {names_b[i]} {analysis.runs[0].confidence[i]:.2f}")
    assert len(items) == 5 and summary.startswith(f"**5 faces** · A {a}: accuracy **")
    assert f" · B {b}: accuracy **" in summary
    monkeypatch.setattr(dataset_tab, "GALLERY_LIMIT", 60)  # every disagreement on one page: no "of"
    title = first_page(both, show_failures(both, "Model A vs B disagreement", a, a, b), "as given")[2]
    assert title.startswith(f"**{total} faces** where {a} (A) and {b} (B) disagree")


def test_stop_while_an_analysis_waits_in_the_queue_stops_it_and_a_failed_one_leaves_nothing_to_stop(bank, data_root):
    """Marked on the click, not when the queue starts the analysis: a Stop pressed while it waited behind another
    user's said "Nothing to stop" (gradio's cancels= did drop it); an analysis that failed is not under way."""
    import types

    from webapp.config import AppConfig
    from webapp.dataset_tab import analysis_asked, run_analysis, stop_analysis

    waiting = types.SimpleNamespace(session_hash="queued")
    analysis_asked(waiting)  # the click; the analysis itself waits in the queue
    assert stop_analysis(waiting) == "Analysis stopped: nothing was kept."
    assert stop_analysis(waiting) == gr.skip()  # pressed twice: the second has nothing to stop
    failed = types.SimpleNamespace(session_hash="failed")
    with pytest.raises(gr.Error, match="Choose at least one model"):
        run_analysis(bank, AppConfig(data_root=data_root, checkpoints=CHECKPOINTS), "ckplus", "test", None, [],
                     False, failed, lambda *a, **k: None)
    assert stop_analysis(failed) == gr.skip()


def test_what_a_tab_keeps_of_a_photo_is_dropped_within_two_minutes_as_its_files_are(bank, data_root):
    """The intro says the server's copies of a photo are deleted within two minutes: the session state that
    holds a face's pixels (Explain's slider tiles and card, Live's last face) lives that long, not the 30
    minutes of a session's other state (an analysis), and goes when its page closes (gradio would keep a
    closed page's state an hour, whatever its time_to_live)."""
    from gradio.routes import App

    from webapp.app import build_app
    from webapp.config import AppConfig
    from webapp.uploads import PHOTO_KEPT_S, drop_photos

    cfg = AppConfig(data_root=data_root, checkpoints=CHECKPOINTS)
    demo = build_app(cfg, bank)
    fns = {f.api_name: f for f in demo.fns.values() if f.api_name}
    held = [o for o in fns["explain"].outputs if isinstance(o, gr.State)]
    held += [i for name in ("card", "live_maps") for i in fns[name].inputs if isinstance(i, gr.State)]
    held = list(dict.fromkeys(held))  # the card's state is the explanation's output and the card's input
    assert len(held) == 3 and {s.time_to_live for s in held} == {PHOTO_KEPT_S} and PHOTO_KEPT_S <= 120
    intro = next(b.value for b in demo.blocks.values() if isinstance(b, gr.Markdown) and b.value.startswith("# ferx"))
    assert "deleted within 2 minutes" in intro and "30 minutes from when it was run" in intro
    App.create_app(demo)  # as launch does: the page's sessions
    session = demo.state_holder["closing-page"]
    others = [s for s in (demo.blocks[i] for i in demo.blocks) if isinstance(s, gr.State) and s not in held]
    for state in held + others:
        session[state._id] = "kept"
    closed = next(f for f in demo.fns.values() if getattr(f.fn, "__name__", None) == "forget_photos")
    assert [t[1] for t in closed.targets] == ["unload"]
    closed.fn(gr.Request(session_hash="closing-page"))
    assert not any(s._id in session.state_data for s in held) and all(s._id in session.state_data for s in others)
    # an explanation still running when its page closed writes after the unload: the sweep drops it, and any photo
    # state older than PHOTO_KEPT_S of a page still open, not a fresh one
    late, open_page = session, demo.state_holder["open-page"]
    late.is_closed = True  # as gradio marks a page whose connection went (after running its unload)
    for state in held:
        late[state._id] = open_page[state._id] = "written"
    stale = held[0]._id
    open_page._state_ttl[stale] = (PHOTO_KEPT_S, open_page._state_ttl[stale][1] - datetime.timedelta(seconds=PHOTO_KEPT_S + 1))
    assert drop_photos(demo) == len(held) + 1
    assert not any(s._id in late.state_data for s in held) and all(s._id in late.state_data for s in others)
    assert stale not in open_page.state_data and all(s._id in open_page.state_data for s in held[1:])


def test_the_occlusion_brush_shows_a_small_face_large_enough_to_see_the_paint(bank, data_root, tmp_path):
    """The strip of the face crop, unpainted and occluded, drew a 48-px face (every example) at 48 px in a
    200-px-high box; it is enlarged by a whole factor now, each pixel a block, the paint where it was."""
    from webapp.occlusion_tab import occlude_view

    packed = pack_split(load_split("fer2013", "test", data_root), progress=False)
    face = packed.images[int(np.flatnonzero(packed.targets == packed.classes.index("happy"))[0])]
    photo, layer = tmp_path / "smile.png", tmp_path / "layer.png"
    Image.fromarray(face).save(photo)
    paint = np.zeros((48, 48, 4), np.uint8)
    paint[32:42, 12:36] = (255, 0, 255, 255)  # a stroke over the mouth
    Image.fromarray(paint).save(layer)
    edited = {"background": str(photo), "layers": [str(layer)], "name": "smile.png"}
    status, strip, *per_model = occlude_view(bank, edited, True, 0, "black", ["mini_xception_fer2013"], False)
    assert status.startswith("10% of the face crop painted over (black)")
    k = strip.shape[0] // 48
    assert strip.shape[0] >= 160 and strip.shape == (48 * k, 2 * 48 * k + 6, 3)
    unpainted, occluded = strip[:, :48 * k], strip[:, 48 * k + 6:]
    assert np.array_equal(unpainted[::k, ::k], np.repeat(face[..., None], 3, 2))  # the face, pixel for pixel
    assert (occluded[32 * k:42 * k, 12 * k:36 * k] == 0).all() and np.array_equal(occluded[:32 * k], unpainted[:32 * k])


@pytest.mark.parametrize("tab", ["sanity", "stability", "explain", "compare"])
def test_a_photo_without_a_face_is_named_in_the_tabs_message(bank, tmp_path, tab):
    """"No face found." did not say in which photo (the Occlusion brush and the command line name it)."""
    import skimage.data

    from webapp.compare_tab import compare
    from webapp.explain_tab import explain, show_faces
    from webapp.sanity_tab import run_sanity
    from webapp.stability_tab import run_stability

    photo = tmp_path / "coffee_cup.png"
    Image.fromarray(skimage.data.coffee()).save(photo)  # a cup, no face
    if tab == "compare":  # the status line, with the photo's boxes (none) still drawn
        message = compare(bank, str(photo), False, 0)[0].replace("**", "'")
    else:
        with pytest.raises(gr.Error) as err:
            if tab == "sanity":
                run_sanity(bank, str(photo), False, 0, "mini_xception_fer2013", ["gradcam"], 2)
            elif tab == "stability":
                run_stability(bank, str(photo), False, 0, ["mini_xception_fer2013"])
            else:
                explain(bank, str(photo), False, 0, ["mini_xception_fer2013"], False, ["gradcam"], [], "predicted",
                        "none", 0.5, "jet", 99, False, False, "blur")
        message = err.value.message
    assert message.startswith("No face found in coffee_cup.png. Tick 'Score the whole image as a face'")
    assert str(tmp_path) not in message
    if tab == "explain":  # the line under the photo, as it is uploaded
        assert show_faces(str(photo), False) == "No face found in coffee_cup.png: tick 'Score the whole image as a face'."


def test_the_sanity_checks_progress_moves_with_each_randomisation_step(bank, data_root):
    """The progress bar was told once, at 0, and sat there for the whole check (a minute for Conv-cut with several
    methods); it is told before each step now."""
    from webapp.sanity_tab import run_sanity

    told = []
    photo = data_root / "ferplus" / "data" / "FER2013Test" / "fer0032220.png"
    verdicts, _, table = run_sanity(bank, str(photo), True, 0, "mini_xception_fer2013", ["gradcam"], 3,
                                    progress=lambda fraction, desc=None: told.append((fraction, desc)))
    fractions = [f for f, _ in told]
    assert len(table.data) == 4 and fractions == sorted(fractions) and len(set(fractions)) >= 4, told
    assert all(desc.startswith("mini_xception_fer2013: ") for _, desc in told), told
    import gradio as gr

    shown = gr.Dataframe(interactive=False).postprocess(table)  # ρ with two decimals, as the figure and verdicts
    assert shown.data[0][1] == 1.0 and shown.metadata["display_value"][0][1] == "1.00"  # it read "1"
    assert all(len(cell.split(".")[-1]) == 2 for row in shown.metadata["display_value"] for cell in row[1:])


def test_every_switch_of_the_occlusion_brush_rescores_the_painted_face(bank, data_root):
    """Only the editor and the fill re-scored: a model unticked kept its column's old probabilities and maps (it
    read as if still scored), unticking the maps kept them, and the whole-image switch changed nothing shown,
    until the next stroke or the button."""
    import functools

    from webapp.app import build_app
    from webapp.config import AppConfig

    demo = build_app(AppConfig(data_root=data_root, checkpoints=CHECKPOINTS), bank)
    rescoring, switches = set(), None
    for block_fn in demo.fns.values():
        fn = block_fn.fn.func if isinstance(block_fn.fn, functools.partial) else block_fn.fn
        if getattr(fn, "__name__", "") in ("rescore", "occlude_view"):
            rescoring |= {(getattr(block, "_id", block), event) for block, event in block_fn.targets}
            # its inputs: the editor, whole image, face number, fill, models, maps
            whole, _, _, models, maps = block_fn.inputs[1:6]
            switches = {"whole image": whole._id, "models": models._id, "maps": maps._id}
            face_number = block_fn.inputs[2]._id
    assert switches is not None
    for name, block in switches.items():
        assert (block, "input") in rescoring, (name, rescoring)
    # the face number: once the user leaves its box or presses Enter (the previous face's result stood until a stroke)
    assert {(face_number, "blur"), (face_number, "submit")} <= rescoring


def test_a_tiny_image_taken_as_a_face_is_said_so_in_stability_sanity_live_and_the_brush(bank, tmp_path):
    """Compare says when an image under SMALL_FACE_SIDE px is scored as an already-cropped face; Stability, Sanity
    check and Live scored a 1x1 PNG as a face ("sad 33%", "1 face(s) in view") without a word. Each shows the
    face search's own note now (ferx.faces.find_faces declares it)."""
    import skimage.data

    from ferx.faces import find_faces, load_photo
    from webapp.live_tab import live_step
    from webapp.sanity_tab import run_sanity
    from webapp.stability_tab import run_stability

    dot = tmp_path / "dot.png"
    Image.fromarray(np.full((1, 1), 128, np.uint8)).save(dot)
    note = find_faces(load_photo(dot)).note
    assert note and "scored as an already-cropped face" in note
    model = "mini_xception_fer2013"
    assert note in run_stability(bank, str(dot), False, 0, [model])[0]
    assert note in run_sanity(bank, str(dot), False, 0, model, ["gradcam"], 2, progress=lambda *a, **k: None)[0]
    assert note in live_step(bank, str(dot), [model], None)[0]
    from webapp.occlusion_tab import occlude_view

    edited = {"background": str(dot), "layers": [], "name": "dot.png"}
    assert occlude_view(bank, edited, False, 0, "blur", [model], False)[0].endswith(f"_{note}_")  # the brush too
    # a photo searched for faces has no such note, and says nothing more
    portrait = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(portrait)
    assert "already-cropped" not in run_stability(bank, str(portrait), False, 0, [model])[0]


def test_a_new_photo_in_the_occlusion_brush_is_scored_once_though_the_editor_fires_several_events(bank, data_root,
                                                                                                  tmp_path):
    """One upload fires the editor's upload and change events (and an example its upload twice): each listener
    scored the photo, so every new photo was scored twice (4 models and their maps, on a 2-vCPU Space). Run
    here as gradio runs them, one listener call per event fired, the state carried from call to call: the photo
    is scored once, and a stroke after it once more."""
    import functools

    from webapp.app import build_app
    from webapp.config import AppConfig

    demo = build_app(AppConfig(data_root=data_root, checkpoints=CHECKPOINTS), bank)
    editor = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "occlusion-editor")
    listeners = [(f, event) for f in demo.fns.values() for block, event in f.targets
                 if getattr(block, "_id", block) == editor._id and event in ("upload", "change")]
    assert {event for _, event in listeners} == {"upload", "change"}
    photo = data_root / "ferplus" / "data" / "FER2013Test" / "fer0032220.png"
    paint = np.zeros((48, 48, 4), np.uint8)
    paint[32:42, 12:36] = (255, 0, 255, 255)
    Image.fromarray(paint).save(tmp_path / "layer.png")
    state = {}

    def fire(layers):  # every listener of the events one edit fires; how many scored the face
        scored = 0
        for f, _ in listeners:
            fn = f.fn.func if isinstance(f.fn, functools.partial) else f.fn
            edited = {"background": str(photo), "layers": layers, "name": "fer0032220.png"}
            args = [edited, True, 0, "black", ["mini_xception_fer2013"], False]
            held = [i for i in f.inputs if isinstance(i, gr.State)]
            out = (f.fn if fn is f.fn else functools.partial(fn, *f.fn.args))(*args, *(state.get(s._id) for s in held))
            if isinstance(out[0], str):
                scored += 1
                for s, value in zip([o for o in f.outputs if isinstance(o, gr.State)], out[len(f.outputs) - len(held):]):
                    state[s._id] = value
        return scored

    assert fire([]) == 1  # the photo, unpainted
    assert fire([str(tmp_path / "layer.png")]) == 1  # a stroke


def test_paint_outside_the_face_crop_is_said_to_be_elsewhere_in_the_photo(bank, tmp_path):
    """Paint beside the face read "0% of the face crop painted over" with no reason (ferx occlude warns that the
    mask paints elsewhere in the photo); the status says so now."""
    import skimage.data

    from webapp.occlusion_tab import occlude_view

    photo, layer = tmp_path / "astronaut.png", tmp_path / "layer.png"
    Image.fromarray(skimage.data.astronaut()).save(photo)
    paint = np.zeros((512, 512, 4), np.uint8)
    paint[450:500, 400:500] = (255, 0, 255, 255)  # the bottom-right corner, far from her face
    Image.fromarray(paint).save(layer)
    edited = {"background": str(photo), "layers": [str(layer)], "name": "astronaut.png"}
    status = occlude_view(bank, edited, False, 0, "black", ["mini_xception_fer2013"], False)[0]
    assert status.startswith("nothing painted over face 0: the paint is elsewhere in the photo"), status


def test_a_thin_strip_of_an_image_is_scored_shown_and_explained_not_a_failure(bank, tmp_path):
    """A 3x10000 PNG (1x2048 at work size) is taken as a face, but Compare drew it enlarged to 240x491,520 (354 MB),
    which gradio could not encode: "Could not postprocess output component at index 1"; Explain said "Something went
    wrong (error)": the card's copy of the photo was resized to 0x1024."""
    from webapp.compare_tab import compare
    from webapp.explain_tab import explain

    strip = tmp_path / "strip.png"
    Image.fromarray(np.full((10_000, 3, 3), 150, np.uint8)).save(strip)
    out = compare(bank, str(strip), False, 0)
    assert "scoring face 0 (whole image)" in out[0] and "already-cropped face" in out[0]
    shown = out[1]
    assert max(shown.shape[:2]) <= 2048 and shown.shape[1] >= 1  # drawn at most as large as the work size
    gr.Image(format="webp").postprocess(shown)  # what gradio does with it before it reaches the page
    out = explain(bank, str(strip), False, 0, ["mini_xception_fer2013"], False, ["gradcam"], [], "predicted", "none",
                  0.5, "auto", 99, True, False, "blur")
    assert "explaining face 0 (whole image)" in out[0]
    card_photo = out[-1]["result"].search.photo.rgb
    assert card_photo.shape[0] == 1024 and card_photo.shape[1] >= 1


def test_no_face_in_the_first_frame_of_an_animation_says_only_that_frame_was_searched(bank, tmp_path):
    """'No face found in clip.gif' did not say that only the first of its frames was looked at."""
    from webapp.compare_tab import compare
    from webapp.stability_tab import run_stability

    clip = tmp_path / "clip.gif"
    Image.new("L", (200, 200), 0).save(clip, save_all=True, append_images=[Image.new("L", (200, 200), 255)])
    said = "clip.gif has 2 frames: only the first frame is used"
    assert said in compare(bank, str(clip), False, 0)[0]
    with pytest.raises(gr.Error, match=f"No face found in clip.gif. .*{said}"):
        run_stability(bank, str(clip), False, 0, ["mini_xception_fer2013"])


def test_the_sanity_check_leaves_its_model_free_for_other_users_while_it_runs(bank, data_root):
    """The check held the shared model from its first map to its last: every other user's Compare (which needs every
    model) waited for it, 17.3 s instead of 1.3 s during a Conv-cut check of 8 steps. It holds the model only to copy
    it now, and its numbers are the core's on the shared model itself."""
    from ferx.explain.sanity import cascading_randomization
    from ferx.faces import find_faces, load_photo
    from webapp.sanity_tab import run_sanity

    model = "mini_xception_fer2013"
    photo = data_root / "ferplus" / "data" / "FER2013Test" / "fer0032220.png"
    held = []
    _, _, table = run_sanity(bank, str(photo), True, 0, model, ["gradcam"], 3,
                             progress=lambda fraction, desc=None: held.append(model in bank._gate._busy))
    assert held and not any(held), held  # at no step of the check is the shared model taken
    loaded = bank.models[model]
    face = find_faces(load_photo(photo), whole_image=True).faces[0]
    core = cascading_randomization(loaded.model, face.model_input(loaded.input_spec), ["gradcam"], n_steps=3)
    assert np.allclose(table.data.iloc[:, 1].to_numpy(float), core.spearman_table().loc["gradcam"].to_numpy(float))


def test_an_explanation_leaves_its_models_free_for_other_users_and_draws_the_same_maps(bank, data_root):
    """Explain held each chosen model for all of its methods: another user's Compare waited 117 s for an Explain of
    Conv-cut with Score-CAM, occlusion and faithfulness (1.6 s alone). Each model's methods run on a copy now."""
    from ferx.explain.report import explain_photo
    from webapp.explain_tab import explain
    from webapp.explaining import search_faces

    photo = str(data_root / "ferplus" / "data" / "FER2013Test" / "fer0032220.png")
    model = "lanmsff_ferplus"
    held = []
    out = explain(bank, photo, True, 0, [model], True, ["gradcam"], ["saliency"], "predicted", "none", 0.5, "auto", 99,
                  True, False, "blur", progress=lambda fraction, desc=None: held.append(model in bank._gate._busy))
    assert held and not any(held), held  # at no method is the shared model taken
    shared = explain_photo([model], search_faces(photo, True), 0, ["native", "gradcam", "saliency"], using=bank.using,
                           faithfulness=False).rows[0]
    got = out[-1]["result"].rows[0]
    assert np.allclose(got.probs, shared.probs)
    assert [m.method for m in got.maps] == [m.method for m in shared.maps]
    assert all(np.allclose(g.values, s.values) for g, s in zip(got.maps, shared.maps))


def test_closing_the_page_stops_its_explanation_and_sanity_check_at_their_next_step(bank, data_root):
    """A page closed during an Explain or a sanity check left it running to its end for nobody (only a dataset
    analysis was stopped by the page's unload). Each stops at its next step now; gradio gives the wired handlers
    the page's session (a partial's gr.Request parameter stayed None)."""
    import types

    from gradio.helpers import special_args

    from webapp.errors import given
    from webapp.explain_tab import explain
    from webapp.sanity_tab import run_sanity
    from webapp.stops import STOPS

    photo = str(data_root / "ferplus" / "data" / "FER2013Test" / "fer0032220.png")
    model, page = "lanmsff_ferplus", types.SimpleNamespace(session_hash="closing-page")
    runs = {"explanation": lambda step: explain(bank, photo, True, 0, [model], True, ["gradcam", "scorecam"],
                                                ["saliency", "integrated_gradients"], "predicted", "none", 0.5, "auto",
                                                99, True, False, "blur", request=page, progress=step),
            "sanity check": lambda step: run_sanity(bank, photo, True, 0, model, ["gradcam"], 4, request=page,
                                                    progress=step)}
    for task, run in runs.items():
        steps, closed_at = [], []

        def close_the_page_at_its_first_step(fraction, desc=None):
            steps.append(desc)
            if not closed_at and STOPS.stop(page.session_hash):  # what the page's unload does (stop_when_closed)
                closed_at.append(len(steps))

        with pytest.raises(gr.Error, match=f"The {task} was stopped"):
            run(close_the_page_at_its_first_step)
        assert closed_at and len(steps) == closed_at[0], (task, steps)  # not one step more
        whole = []
        run(lambda fraction, desc=None: whole.append(desc))  # the page open: it runs to its end
        assert len(whole) > len(steps) + 1, (task, whole)
    for handler in (given(explain, bank), given(run_sanity, bank)):
        inputs = [None] * len([p for p in inspect.signature(handler).parameters if p not in ("request", "progress")])
        filled = special_args(handler, inputs, request=gr.Request(session_hash="a-page"))[0]
        assert any(getattr(v, "session_hash", None) == "a-page" for v in filled)


def test_an_explanation_runs_its_model_copies_through_the_twins_the_app_made_at_start(data_root, monkeypatch):
    """Explain works on a copy of each model (``ModelBank.own_copy``), and a copy had none of the fast twins the app
    makes for each model as it starts (``ModelBank.build``): every Explain of Grad-CAM traced and froze one per small
    model (three of the four shipped ones, 0.15-0.33 s each on 2 busy cores) before scoring the face. The copies
    share one frozen twin per model, made by the first Explain, and give the probabilities each copy's own gave."""
    import contextlib
    import copy
    import ferx.memory_format as memory_format
    from ferx.checkpoint import LoadedModel
    from ferx.explain.report import explain_photo
    import ferx.opencv_twin as opencv_twin
    from webapp.explain_tab import explain
    from webapp.explaining import search_faces

    bank = ModelBank.load(CHECKPOINTS, "cpu", defer=True)
    bank.build()  # as `ferx app` starts
    photo = str(data_root / "ferplus" / "data" / "FER2013Test" / "fer0032220.png")
    explain(bank, photo, True, 0, bank.names, False, ["gradcam"], [], "predicted", "none", 0.5, "auto", 99, True,
            False, "blur", progress=lambda *a, **k: None)  # the first makes its copies' twins
    made = []
    for module, name in [(memory_format, "_frozen_twin"), (opencv_twin, "opencv_twin")]:
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, real=real, name=name, **k: made.append(name) or real(*a, **k))
    out = explain(bank, photo, True, 0, bank.names, False, ["gradcam"], [], "predicted", "none", 0.5, "auto", 99,
                  True, False, "blur", progress=lambda *a, **k: None)
    assert made == [], made  # no twin made for a later request's copies

    @contextlib.contextmanager
    def copy_of_its_own(name):  # a copy that makes its own twin, as each request's copy did
        with bank.using(name) as loaded:
            yield LoadedModel(copy.deepcopy(loaded.model), loaded.name, loaded.labels, loaded.input_spec, loaded.card,
                              loaded.path)

    own = explain_photo(bank.names, search_faces(photo, True), 0, ["gradcam"], using=copy_of_its_own,
                        faithfulness=False)
    # the JSON's probabilities (6 decimals) and the verdicts: as a copy's own twin gave them
    assert [m["probabilities"] for m in out[3]["models"]] == [row.to_dict()["probabilities"] for row in own.rows]
    assert [m["margin"] for m in out[3]["models"]] == [row.to_dict()["margin"] for row in own.rows]
