import json
import shutil
import struct
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from ferx.analysis import (agreement, analyze, cell_samples, confusion_frame, cross_cell_samples, cross_model_frame,
                           disagreements, failures, fit_temperature, per_class_table, summary_table)
from ferx.analysis.embeddings import project
from ferx.analysis.figures import confusion_figure, embedding_figure, write_figure
from ferx.analysis.metrics import negative_log_likelihood
from ferx.checkpoint import save_checkpoint
from PIL import Image

from ferx.data import FERPLUS_8, DatasetLayoutError, load_split, pack_split
from ferx.data.archive import ArchiveError, extract_images
from ferx.models import create_model

from conftest import CHECKPOINTS, DEVICE, face_zip

MINI = CHECKPOINTS / "mini_xception_fer2013"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("analysis-cache")


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """An 8-class mini-Xception with random weights: a second, different model (and label set) for the
    cross-model views, cheap enough to run over the whole split."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "untrained8"
    return save_checkpoint(create_model("mini_xception", num_classes=8), path, labels=FERPLUS_8,
                           card={"title": "mini-Xception with random weights (untrained, for tests)"})


@pytest.fixture(scope="module")
def ferplus_runs(data_root, cache, untrained):
    return analyze([MINI, untrained], "ferplus", "test", data_root=data_root, device=DEVICE,
                   progress=False, cache_dir=cache)


def test_metrics_on_real_ferplus_agree_with_scikit_learn(ferplus_runs):
    mini = ferplus_runs[0]
    assert len(mini) == 3_371 and (~mini.scored).sum() == 27  # contempt has no FER-2013 counterpart
    y, pred = mini.model_targets[mini.scored], mini.preds[mini.scored]
    summary = summary_table([mini]).loc["mini_xception_fer2013"]
    assert summary["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert summary["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", labels=range(7)))
    assert summary["accuracy"] > 0.6
    frame = confusion_frame(mini)
    assert (frame.values == confusion_matrix(y, pred, labels=range(7))).all()
    table = per_class_table(mini)
    assert table.loc["happy", "support"] == 908 and table.loc["happy", "recall"] == pytest.approx(795 / 908, abs=0.02)


def test_every_confusion_cell_resolves_to_its_samples(ferplus_runs):
    mini = ferplus_runs[0]
    frame = confusion_frame(mini)
    for true in frame.index:
        for pred in frame.columns:
            ids = cell_samples(mini, true, pred)
            assert len(ids) == frame.loc[true, pred]
    ids = cell_samples(mini, "neutral", "sad")
    rows = mini.frame().loc[ids]
    assert (rows["true"] == "neutral").all() and (rows["pred"] == "sad").all()
    assert np.allclose(rows[[f"p_{c}" for c in mini.model_classes]].sum(axis=1), 1, atol=1e-5)
    assert (rows["p_sad"] == rows["confidence"]).all()
    assert np.allclose(confusion_frame(mini, normalize=True).sum(axis=1), 1)


def test_cross_model_matrix_and_disagreements(ferplus_runs):
    mini, lan = ferplus_runs
    cross = cross_model_frame(mini, lan)
    assert cross.shape == (8, 8) and cross.values.sum() == len(mini)
    assert len(cross_cell_samples(mini, lan, "happy", "neutral")) == cross.loc["happy", "neutral"]
    # either model's classes on both axes, in one order: agreement is the diagonal; A never says contempt
    assert list(cross.index) == list(cross.columns) == list(mini.model_classes) + ["contempt"]
    assert cross.loc["contempt"].sum() == 0
    assert np.trace(cross.to_numpy()) == (np.asarray(mini.model_classes)[mini.preds]   # is the diagonal
                                          == np.asarray(lan.model_classes)[lan.preds]).sum()
    rate = agreement(mini, lan)
    names_a = np.asarray(mini.model_classes)[mini.preds]
    names_b = np.asarray(lan.model_classes)[lan.preds]
    assert rate == pytest.approx((names_a == names_b).mean())
    diff = disagreements(mini, lan, k=20)
    assert len(diff) == 20 and (diff["pred_mini_xception_fer2013"] != diff["pred_untrained8"]).all()
    assert diff["min_confidence"].is_monotonic_decreasing


def test_failure_rankings(ferplus_runs):
    mini = ferplus_runs[0]
    confident = failures(mini, "confident_mistakes", 25)
    assert (~confident["correct"]).all() and confident["confidence"].is_monotonic_decreasing
    assert failures(mini, "highest_loss", 25)["loss"].is_monotonic_decreasing
    assert failures(mini, "lowest_margin", 25)["margin"].is_monotonic_increasing
    with pytest.raises(ValueError, match="unknown failure kind"):
        failures(mini, "prettiest", 5)


def test_second_run_is_served_from_the_cache_and_corrupt_entries_are_rebuilt(ferplus_runs, data_root, cache,
                                                                             untrained, monkeypatch, tmp_path):
    assert not any(r.from_cache for r in ferplus_runs)

    def no_inference(*args, **kwargs):
        raise AssertionError("a cached analysis must not run the model")

    monkeypatch.setattr("ferx.analysis.runs.predict_logits_and_embeddings", no_inference)
    again = analyze([MINI, untrained], "ferplus", "test", data_root=data_root, device=DEVICE,
                    progress=False, cache_dir=cache)
    assert all(r.from_cache for r in again)
    assert np.array_equal(again[0].logits, ferplus_runs[0].logits)
    copy = shutil.copytree(untrained, tmp_path / "my_copy")  # the same weights under another name
    run = analyze([copy], "ferplus", "test", data_root=data_root, device=DEVICE, progress=False, cache_dir=cache)[0]
    assert run.from_cache and (run.name, run.checkpoint) == ("my_copy", str(copy))  # named as loaded now
    monkeypatch.undo()
    entry = cache / f"{ferplus_runs[0].key[:32]}.json"
    meta = json.loads(entry.read_text())
    entry.write_text(json.dumps({**meta, "version": -1}))  # stale format
    rebuilt = analyze([MINI], "ferplus", "test", data_root=data_root, device=DEVICE, progress=False, cache_dir=cache)
    assert not rebuilt[0].from_cache and np.allclose(rebuilt[0].logits, ferplus_runs[0].logits)


def test_temperature_fitted_on_validation_lowers_test_nll(data_root, cache):
    (run,) = analyze([MINI], "ferplus", "test", data_root=data_root, device=DEVICE, calibrate=True, progress=False,
                     cache_dir=cache)
    assert run.temperature != 1.0
    keep = run.scored
    nll_raw = negative_log_likelihood(run.logits[keep], run.model_targets[keep])
    nll_cal = negative_log_likelihood(run.logits[keep], run.model_targets[keep], run.temperature)
    assert nll_cal < nll_raw
    rng = np.random.default_rng(0)  # labels drawn from softmax(logits); logits x 3 are over-confident by T = 3
    logits = 2 * rng.normal(size=(4000, 5))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(5, p=p) for p in probs])
    assert fit_temperature(logits * 3, y) == pytest.approx(3, rel=0.1)


def test_temperature_scaling_is_refused_on_the_faces_it_is_fitted_on(data_root, monkeypatch, capsys):
    """`--split val --calibrate` fitted the temperature on the very faces whose ECE it then reported."""
    from ferx.cli import main

    def no_inference(*args, **kwargs):
        raise AssertionError("refused before any model runs")

    monkeypatch.setattr("ferx.analysis.runs.predict_logits_and_embeddings", no_inference)
    assert main(["analyze", str(MINI), "--dataset", "ckplus", "--split", "val", "--calibrate", "--data-root",
                 str(data_root), "--device", "cpu"]) == 1
    assert capsys.readouterr().err == (
        "ferx analyze: error: --calibrate fits its temperature on ckplus/val, and the split analysed (ckplus/val) "
        "holds 147 of its faces: the calibration would be judged on the faces it was fitted on. Analyse a split "
        "without them (test), or this one without --calibrate.\n")
    with pytest.raises(ValueError, match=r"the split analysed \(ckplus/all\) holds 147 of its faces"):  # all holds val
        analyze([MINI], "ckplus", "all", data_root=data_root, device=DEVICE, calibrate=True, progress=False)


def test_embeddings_are_cached_and_figures_carry_sample_ids(ferplus_runs, tmp_path):
    mini = ferplus_runs[0]
    coords = project(mini, "pca", cache_dir=tmp_path)
    assert coords.shape == (len(mini), 2)
    assert np.array_equal(project(mini, "pca", cache_dir=tmp_path), coords) and len(list(tmp_path.glob("*.npy"))) == 1
    fig = embedding_figure(coords, mini, "correct", "pca")
    ids = np.concatenate([np.asarray(trace.customdata)[:, 0].astype(int) for trace in fig.data])
    assert sorted(ids) == list(range(len(mini)))
    html = write_figure(confusion_figure(confusion_frame(mini)), tmp_path / "alone" / "cm.html")
    assert html.stat().st_size > 3_000_000 and len(list(html.parent.iterdir())) == 1  # self-contained: plotly.js inside
    shared = [write_figure(fig, tmp_path / "folder" / f"{i}.html", shared_js=True)
              for i, fig in enumerate([confusion_figure(confusion_frame(mini)), fig])]
    assert all(p.stat().st_size < 300_000 and 'src="plotly.min.js"' in p.read_text() for p in shared)
    assert (tmp_path / "folder" / "plotly.min.js").stat().st_size > 3_000_000  # once, beside them


def test_every_table_and_figure_shows_the_classes_in_one_order_and_one_colour_each(ferplus_runs):
    """A FERPlus-ordered model (neutral first) and a FER-2013 one (angry first): the same class order in
    their confusion matrices and per-class tables, and a class keeps its colour whatever colours the points."""
    from ferx.analysis.figures import embedding_figure
    from ferx.data.labels import CANONICAL, CLASS_COLOURS

    mini, eight = ferplus_runs
    assert eight.model_classes[0] == "neutral" and mini.model_classes[0] == "angry"
    for run in ferplus_runs:
        order = [c for c in CANONICAL if c in run.model_classes]
        frame = confusion_frame(run)
        assert list(frame.index) == list(frame.columns) == order == list(per_class_table(run).index)
        for true in ("neutral", "happy"):  # still each cell's own faces
            assert frame.loc[true, "sad"] == len(cell_samples(run, true, "sad"))
    coords = np.zeros((len(mini), 2))
    for colour_by in ("true", "pred"):
        fig = embedding_figure(coords, mini, colour_by)
        assert [t.name for t in fig.data] == [c for c in CANONICAL if c in {t.name for t in fig.data}]
        assert all(t.marker.color == CLASS_COLOURS[t.name] for t in fig.data)


# Machado, Oliveira & Fernandes (2009), severity 1: linear-RGB matrices that simulate deuteranopia and protanopia
DICHROMACY = {"deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                               [-0.011820, 0.042940, 0.968881]],
              "protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                             [-0.003882, -0.048116, 1.051998]]}


def assert_apart_for_colour_blind_readers(colours: dict, least: float = 15):
    """Every two of ``colours`` ({name: '#rrggbb'}) at least ``least`` CIELAB units apart as a deuteranope, a
    protanope and a reader with normal vision see them (10 is a difference seen at a glance)."""
    from itertools import combinations

    from skimage.color import rgb2lab

    names = list(colours)
    rgb = np.array([[int(colours[c][i:i + 2], 16) / 255 for i in (1, 3, 5)] for c in names])
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    for vision, matrix in {"normal": np.eye(3), **DICHROMACY}.items():
        seen = np.clip(linear @ np.asarray(matrix).T, 0, 1)
        seen = np.where(seen <= 0.0031308, 12.92 * seen, 1.055 * seen ** (1 / 2.4) - 0.055)
        lab = rgb2lab(seen[None])[0]
        gap, a, b = min((float(np.linalg.norm(lab[i] - lab[j])), names[i], names[j])
                        for i, j in combinations(range(len(names)), 2))
        assert gap >= least, f"{vision}: {a} and {b} are {gap:.1f} apart"


def test_the_class_colours_stay_apart_for_colour_blind_readers():
    """Every two classes' colours differ by at least 15 CIELAB units as a deuteranope or protanope sees them: with
    tab10, angry and disgust (red, green) came 7.3 apart for deuteranopia and disgust and happy 4.6 for protanopia,
    fear and sad 8.0 and 5.7: the pairs an embedding is read for."""
    from ferx.data.labels import CANONICAL, CLASS_COLOURS

    assert_apart_for_colour_blind_readers({c: CLASS_COLOURS[c] for c in CANONICAL})


def test_the_models_of_a_figure_are_told_apart_with_and_without_colour(ferplus_runs):
    """The reliability curves and the vote-vs-model bars took plotly's colour cycle, whose first and fourth colours
    (blue #636efa, purple #ab63fa) are 1.6 CIELAB units apart for protanopes and 12.4 for deuteranopes, and nothing
    but colour told the models apart. Four models (the app's count): colours 15+ apart (17.9 at least), each its own
    marker, dash and bar pattern."""
    from ferx.analysis.figures import reliability_figure
    from ferx.analysis.labelnoise import votes_figure

    runs = [*ferplus_runs, *(r.with_temperature(1.5) for r in ferplus_runs)]
    curves = [t for t in reliability_figure(runs).data if t.name != "perfectly calibrated"]
    assert len(curves) == 4 and all(t.line.color == t.marker.color for t in curves)
    assert_apart_for_colour_blind_readers({t.name: t.marker.color for t in curves})
    assert len({t.marker.symbol for t in curves}) == len({t.line.dash for t in curves}) == 4
    soft = np.full((len(runs[0].probs), len(runs[0].dataset_classes)), 1 / len(runs[0].dataset_classes))
    bars = votes_figure(0, runs, soft).data[1:]
    assert [b.marker.color for b in bars] == [t.marker.color for t in curves]  # a model is drawn alike in both
    assert len({b.marker.pattern.shape for b in bars}) == 4


def test_a_class_the_split_lacks_is_a_blank_row_of_the_matrix_and_the_title_says_what_was_left_out(ferplus_runs):
    from ferx.analysis.figures import confusion_figure

    counts = pd.DataFrame([[3, 1], [0, 0]], index=pd.Index(["happy", "neutral"], name="true"),
                          columns=pd.Index(["happy", "neutral"], name="predicted"))
    z = np.asarray(confusion_figure(counts).data[0].z, dtype=float)
    assert np.allclose(z[0], [0.75, 0.25]) and np.isnan(z[1]).all()  # CK+ has no neutral: no row of zeros
    mini, eight = ferplus_runs
    assert mini.scored_text() == "3344 faces scored (27 contempt left out: not a class of the model)"
    assert eight.scored_text() == "3371 faces scored"
    table = per_class_table(eight)  # the untrained model never predicts some classes: no precision to give
    never = [c for c in eight.model_classes if not (np.asarray(eight.model_classes)[eight.preds] == c).any()]
    assert never and table.loc[never, "precision"].isna().all() and table["recall"].notna().all()
    both = (np.asarray(eight.model_classes)[eight.preds] == np.asarray(mini.model_classes)[mini.preds]).sum()
    for a, b in ((mini, eight), (eight, mini)):  # the model with contempt on either axis: agreement stays diagonal
        assert np.trace(cross_model_frame(a, b).to_numpy()) == both


def test_an_ece_of_no_faces_is_none_and_a_table_csv_keeps_its_index_names(tmp_path):
    from ferx.analysis.metrics import expected_calibration_error
    from ferx.analysis.selection import write_csv

    assert expected_calibration_error(np.zeros((0, 7)), np.zeros(0, int)) is None  # null in JSON: not a perfect 0
    index = pd.MultiIndex.from_tuples([("m", "gradcam", "happy")], names=["model", "map", "true"])
    path = write_csv(pd.DataFrame({"faces": [3], "mouth": [0.41]}, index=index), tmp_path / "regions.csv")
    assert path.read_text().splitlines()[0] == "model,map,true,faces,mouth"  # a column name for every column


def test_the_reliability_figure_names_its_split_and_each_models_ece(ferplus_runs):
    from ferx.analysis import summary_table
    from ferx.analysis.figures import reliability_figure

    fig = reliability_figure(ferplus_runs)
    run = ferplus_runs[0]
    assert fig.layout.title.text == f"Reliability on {run.dataset}/{run.split}"
    eces = summary_table(ferplus_runs)["ece"]
    # mini-Xception scores 3,344 faces (no contempt), the 8-class model 3,371; ECE as the summary table has it
    for r, n, trace in zip(ferplus_runs, (3344, 3371), fig.data[1:]):
        assert trace.name == f"{r.name}: {n} faces, ECE {eces[r.name]:.3f}"
        assert sum(trace.customdata) == int(r.scored.sum())  # every scored face in one bin
    scaled = reliability_figure([r.with_temperature(2.0) for r in ferplus_runs])
    assert "temperature-scaled" in scaled.layout.title.text and ", T = 2.00" in scaled.data[1].name


def test_tsne_and_umap_on_a_small_real_slice(ferplus_runs, tmp_path):
    mini = ferplus_runs[0]
    small = mini.with_temperature(1.0)
    small.embeddings, small.paths, small.targets, small.logits = (mini.embeddings[:300], mini.paths[:300],
                                                                  mini.targets[:300], mini.logits[:300])
    small.key = "slice300"
    for method in ("tsne", "umap"):
        coords = project(small, method, cache_dir=tmp_path)
        assert coords.shape == (300, 2) and np.isfinite(coords).all()
    assert len(list(tmp_path.glob("*.umap.joblib"))) == 1  # the fitted UMAP, to place new faces with
    small.key, small.dataset = "slice300-zip", "zip:my_faces"
    project(small, "umap", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 3 and len(list(tmp_path.glob("*.umap.joblib"))) == 1  # a user's
    # faces: only their 2-D coordinates are kept


def test_png_export_when_a_browser_is_present(ferplus_runs, tmp_path):
    import shutil

    if not (shutil.which("chromium") or shutil.which("google-chrome") or shutil.which("chrome")):
        pytest.skip("PNG export needs Chrome or Chromium (Debian package 'chromium'); HTML export is tested above")
    png = write_figure(confusion_figure(confusion_frame(ferplus_runs[0])), tmp_path / "cm.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_user_zip_is_unpacked_safely(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("FERX_CACHE_DIR", str(tmp_path / "cache"))
    src = data_root / "ckplus48" / "CK+48"
    good = tmp_path / "faces.zip"
    with zipfile.ZipFile(good, "w") as z:
        for cls in ("happy", "surprise"):
            for f in sorted((src / cls).iterdir())[:6]:
                z.write(f, f"my_faces/{cls}/{f.name}")
        z.writestr("my_faces/README.txt", "not an image")
        z.writestr("__MACOSX/my_faces/._x.png", "resource fork")
    split = load_split(str(good), "all")
    assert len(split) == 12 and split.labels.classes == ("happy", "surprise")
    assert split.excluded == {"non_image_files": 2}
    assert len(load_split(str(good), "all")) == 12  # second time from the unpacked copy
    # one class folder, or one split folder, is the content, not a folder wrapping it
    for folder, split_name in (("happy", "all"), ("test/happy", "test")):
        archive = tmp_path / f"{folder.replace('/', '_')}.zip"
        with zipfile.ZipFile(archive, "w") as z:
            for f in sorted((src / "happy").iterdir())[:5]:
                z.write(f, f"{folder}/{f.name}")
        split = load_split(str(archive), split_name)
        assert len(split) == 5 and split.split == split_name and split.labels.classes == ("happy",)

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../escape.png", b"x")
    with pytest.raises(ArchiveError, match="unsafe path"):
        extract_images(evil, tmp_path / "out")
    assert not (tmp_path.parent / "escape.png").exists()

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("a/happy/big.png", b"\0" * (3 * 2**20))
    with pytest.raises(ArchiveError, match="unpacks to"):
        extract_images(bomb, tmp_path / "out", max_total_bytes=2**20)
    with pytest.raises(ArchiveError, match="not a readable zip"):
        extract_images(_write(tmp_path / "fake.zip", b"PK nonsense"),
                       tmp_path / "out")


def _write(path, data):
    path.write_bytes(data)
    return path


def _patch(path, old: bytes, new: bytes, count: int = 1):
    data = path.read_bytes()
    assert data.count(old) >= count
    path.write_bytes(data.replace(old, new, count))
    return path


def test_hostile_zips_are_refused_by_name_and_leave_nothing_behind(tmp_path):
    """Bad CRC, a size that lies (small or huge), encryption, Deflate64, a 1 GiB member in a 1 MB zip:
    one ArchiveError each, naming the zip and the entry; no .partial folder and no file is left."""
    face = np.full((48, 48), 128, np.uint8)
    out = tmp_path / "cache"

    def refused(zip_path, message, **limits):
        with pytest.raises(ArchiveError, match=message) as err:
            extract_images(zip_path, out / zip_path.stem, **limits)
        assert zip_path.name in str(err.value)
        assert not out.exists() or not any(out.rglob("*.png"))  # nothing extracted stays
        assert not out.exists() or not any(p.name.endswith(".partial") for p in out.iterdir())

    stored = tmp_path / "crc.zip"
    with zipfile.ZipFile(stored, "w") as z:  # stored: the pixels' bytes sit in the zip as they are
        z.writestr("happy/a.pgm", b"P5 4 4 255\n" + bytes(range(16)))
    refused(_patch(stored, bytes(range(16)), bytes(range(1, 17))), "'happy/a.pgm' is damaged.*CRC")

    lying = face_zip(tmp_path / "lying.zip", {"happy/a.png": face})
    info = zipfile.ZipFile(lying).getinfo("happy/a.png")
    size = struct.pack("<I", info.file_size)
    refused(_patch(lying, size, struct.pack("<I", info.file_size - 10), 2), "damaged")  # local + central header
    lying = face_zip(tmp_path / "lying_big.zip", {"happy/a.png": face})
    refused(_patch(lying, size, struct.pack("<I", info.file_size + 5000), 2), "damaged")

    encrypted = face_zip(tmp_path / "encrypted.zip", {"happy/a.png": face})
    flags = zipfile.ZipFile(encrypted).getinfo("happy/a.png").flag_bits
    data = bytearray(encrypted.read_bytes())
    for sig, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # the flag word of both headers
        i = data.find(sig)
        data[i + at:i + at + 2] = struct.pack("<H", flags | 1)
    encrypted.write_bytes(bytes(data))
    refused(encrypted, "'happy/a.png' is encrypted")

    deflate64 = face_zip(tmp_path / "deflate64.zip", {"happy/a.png": face})
    data = bytearray(deflate64.read_bytes())
    for sig, at in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):  # compression method 9 = Deflate64
        i = data.find(sig)
        data[i + at:i + at + 2] = struct.pack("<H", 9)
    deflate64.write_bytes(bytes(data))
    refused(deflate64, "compressed with .*which ferx cannot read")

    big = tmp_path / "one_big_file.zip"  # 2 MiB of zeros declared honestly: over a 1 MiB per-file limit
    with zipfile.ZipFile(big, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("happy/a.png", bytes(2 * 2**20))
    assert big.stat().st_size < 20_000
    refused(big, "'happy/a.png' unpacks to 2 MiB; the limit is 1 MiB per file", max_file_bytes=2**20)
    # the header says 100 bytes, the data inflates to 2 MiB: the bytes are counted as they are written
    refused(_patch(big, struct.pack("<I", 2 * 2**20), struct.pack("<I", 100), 2), "damaged|unpacks to more",
            max_file_bytes=2**20)


def test_a_zip_with_a_bomb_image_skips_and_counts_it(tmp_path, monkeypatch):
    """One bad image (a 177 MP PNG that Pillow would decode) is skipped and counted, not fatal; an
    unreadable or foreign marker is rebuilt; a zip of split folders loads by split."""
    from test_faces import write_png_bomb

    monkeypatch.setenv("FERX_CACHE_DIR", str(tmp_path / "cache"))
    write_png_bomb(tmp_path / "bomb.png", 13_300, "LA")
    rng = np.random.default_rng(0)
    faces = {f"{s}/{c}/{i}.png": rng.integers(0, 256, (48, 48), dtype=np.uint8)
             for s, n in (("train", 2), ("test", 3)) for c in ("happy", "sad") for i in range(n)}
    path = face_zip(tmp_path / "faces.zip", faces, [("test/happy/bomb.png", (tmp_path / "bomb.png").read_bytes())])
    with pytest.raises(DatasetLayoutError, match="faces.zip does not look like an image folder: expected a split"):
        load_split(str(path), "all")
    split = load_split(str(path), "test")
    assert len(split) == 7 and split.labels.classes == ("happy", "sad")
    packed = pack_split(split, progress=False)
    assert len(packed) == 6 and packed.skipped == 1
    for marker in (tmp_path / "cache" / "zips").glob("*.json"):
        for damage in ("", "garbage", '{"root": "gone", "skipped": 0}'):
            marker.write_text(damage)
            assert len(load_split(str(path), "test")) == 7  # rebuilt, not "not enough values to unpack"


def test_cli_names_a_damaged_zip_in_one_line(tmp_path, monkeypatch, capsys):
    from ferx.cli import main

    monkeypatch.setenv("FERX_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "faces.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("happy/a.pgm", b"P5 4 4 255\n" + bytes(range(16)))
    _patch(path, bytes(range(16)), bytes(range(1, 17)))
    assert main(["analyze", str(MINI), "--dataset", str(path), "--split", "all", "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ferx analyze: error: faces.zip: 'happy/a.pgm' is damaged") and "\n" not in err


def test_the_model_is_held_batch_by_batch_so_other_requests_get_in(tmp_path):
    """analyze_packed takes the app's model lock around each batch, not around the whole split (a
    request waiting on the lock waits for one batch), and the results do not change."""
    import threading
    from contextlib import contextmanager

    from ferx.analysis import analyze_packed
    from ferx.checkpoint import load_checkpoint
    from ferx.data.packed import PackedSplit

    loaded = load_checkpoint(MINI, "cpu")
    rng = np.random.default_rng(0)
    packed = PackedSplit("random", "all", "random-faces", loaded.labels.classes,
                         rng.integers(0, 256, (20, 48, 48), dtype=np.uint8), np.zeros(20, np.int64),
                         np.asarray([f"{i}.png" for i in range(20)]))
    lock, batches = threading.Lock(), []

    @contextmanager
    def hold(model):
        with lock:
            batches.append(model)
            yield
        assert not lock.locked()  # free between batches

    (held,) = analyze_packed([loaded], packed, batch_size=8, progress=False, cache_dir=tmp_path, hold=hold)
    assert batches == [loaded] * 3  # 20 faces in batches of 8: the lock was taken three times
    (plain,) = analyze_packed([loaded], packed, batch_size=20, progress=False, cache_dir=tmp_path / "plain")
    assert np.allclose(held.logits, plain.logits, atol=1e-5)


def test_an_unwritable_cache_costs_only_speed_or_one_line(tmp_path, monkeypatch, capsys):
    """A cache that cannot be written (here a path below a file: what root cannot chmod away): a folder
    dataset is analysed all the same; a zip, which must be unpacked, is refused in one line."""
    from ferx.cli import main

    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("FERX_CACHE_DIR", str(tmp_path / "file" / "cache"))
    rng = np.random.default_rng(0)
    faces = {f"{c}/{i}.png": rng.integers(0, 256, (48, 48), dtype=np.uint8) for c in ("happy", "sad") for i in range(3)}
    path = face_zip(tmp_path / "faces.zip", faces)
    zipfile.ZipFile(path).extractall(tmp_path / "faces")
    assert main(["analyze", str(MINI), "--dataset", str(tmp_path / "faces"), "--split", "all", "--device", "cpu"]) == 0
    assert "6 faces" in capsys.readouterr().out
    assert main(["analyze", str(MINI), "--dataset", str(path), "--split", "all", "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ferx analyze: error: cannot unpack faces.zip into") and "FERX_CACHE_DIR" in err
    assert "\n" not in err


def test_projection_time_estimate_learns_this_machines_rate(tmp_path):
    from ferx.analysis.embeddings import DEFAULT_S_PER_1000, _record_rate, expected_seconds

    assert expected_seconds("tsne", 2000, tmp_path) == pytest.approx(2 * DEFAULT_S_PER_1000["tsne"])
    _record_rate(tmp_path, "tsne", 500, 10.0)  # this machine: 20 s per 1,000 faces
    assert expected_seconds("tsne", 3000, tmp_path) == pytest.approx(60.0)
    assert expected_seconds("umap", 1000, tmp_path) == pytest.approx(DEFAULT_S_PER_1000["umap"])
    (tmp_path / "projection_rates.json").write_text("not json")  # a damaged file: back to the default
    assert expected_seconds("tsne", 1000, tmp_path) == pytest.approx(DEFAULT_S_PER_1000["tsne"])


def test_cli_analyze_says_its_precision_and_keys_its_cache_by_it(data_root, tmp_path, monkeypatch, capsys):
    """`ferx analyze --precision`: the header and the summary table say the precision the models ran at (its column
    'compute_dtype', as on the cards: 'precision' beside accuracy and macro-F1 read as a classification metric);
    a second fp32 run is served from the cache, a bf16 one (where this CPU has native bf16) is not."""
    from ferx.cli import main
    from ferx.device import cpu_has_bf16

    monkeypatch.setenv("FERX_CACHE_DIR", str(tmp_path / "cache"))
    args = ["analyze", str(MINI), "--dataset", "ckplus", "--split", "test", "--data-root", str(data_root),
            "--device", "cpu", "--top", "1"]
    assert main(args + ["--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    assert "ckplus/test: 144 faces (mini_xception_fer2013: fp32, computed)" in out
    header, _, row = out.split("\n\n")[1].splitlines()[:3]
    assert header.split()[-1] == "compute_dtype" and row.split()[0] == "mini_xception_fer2013" and row.split()[-1] == "fp32"
    assert main(args + ["--precision", "fp32"]) == 0
    assert "(mini_xception_fer2013: fp32, cache)" in capsys.readouterr().out
    if cpu_has_bf16():
        assert main(args + ["--precision", "bf16"]) == 0
        assert "(mini_xception_fer2013: bf16, computed)" in capsys.readouterr().out


def _ckplus_folder(data_root, out, classes, per_class):
    """``per_class`` CK+48 test faces of each of ``classes`` as an image folder ``out``."""
    packed = pack_split(load_split("ckplus", "test", data_root), progress=False)
    for name in classes:
        (out / name).mkdir(parents=True)
        for i in np.flatnonzero(packed.targets == packed.classes.index(name))[:per_class]:
            Image.fromarray(packed.images[i]).save(out / name / f"{i}.png")
    return out


@pytest.fixture(scope="module")
def tiny_folder(data_root, tmp_path_factory):
    """Two CK+48 test faces of each of two classes as an image folder: the CLI's map studies in seconds."""
    return _ckplus_folder(data_root, tmp_path_factory.mktemp("tiny"), ("happy", "surprise"), 2)


def test_faces_of_no_class_a_model_knows_are_one_line_for_evaluate_and_a_blank_row_for_analyze(data_root, tmp_path,
                                                                                            monkeypatch, capsys):
    """CK+ contempt faces scored by a FER-2013 model (it has no contempt): `ferx analyze` ended in scikit-learn's
    "Found empty input array", `ferx evaluate` in "no images to run the model on". Now evaluate says why in one
    line; analyze gives that model a row of n 0 and blank measures beside a model that knows contempt."""
    from ferx.cli import main

    monkeypatch.setenv("FERX_CACHE_DIR", str(tmp_path / "cache"))
    folder = str(_ckplus_folder(data_root, tmp_path / "contempt", ("contempt",), 3))
    assert main(["evaluate", str(MINI), "--dataset", folder, "--split", "all", "--device", "cpu"]) == 1
    assert capsys.readouterr().err == ("ferx evaluate: error: none of these 3 faces (contempt) is of a class mini_xception "
                                       "(mini_xception_fer2013) knows (angry, disgust, fear, happy, sad, surprise, "
                                       "neutral)\n")
    ferplus = CHECKPOINTS / "lanmsff_ferplus"
    assert main(["analyze", str(MINI), str(ferplus), "--dataset", folder, "--split", "all", "--device", "cpu",
                 "--top", "1"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[2].split()[:7] == ["n", "n_excluded", "accuracy", "macro_f1", "nll", "ece", "temperature"]
    assert printed[4].split()[:7] == ["mini_xception_fer2013", "0", "3", "NaN", "NaN", "NaN", "NaN"]
    assert printed[5].split()[:3] == ["lanmsff_ferplus", "3", "0"]
    runs = analyze([MINI, ferplus], folder, "all", device="cpu", progress=False)
    per_class = per_class_table(runs[0])
    assert (per_class["support"] == 0).all() and per_class[["precision", "recall", "f1"]].isna().all().all()
    from ferx.analysis.figures import reliability_figure

    legend = [trace.name for trace in reliability_figure(runs).data if trace.name != "perfectly calibrated"]
    assert legend[0] == "mini_xception_fer2013: 0 faces, ECE —" and legend[1].startswith("lanmsff_ferplus: 3 faces, ECE 0.")


def test_cli_analyze_prints_the_attention_and_map_agreement_tables(tiny_folder, tmp_path, monkeypatch, capsys):
    """`--attention N` and `--disagreement N` print their tables under the metrics (LANMSFF has native
    attention maps; the two models make one pair)."""
    from ferx.cli import main

    monkeypatch.setenv("FERX_CACHE_DIR", str(tmp_path / "cache"))
    lanmsff = CHECKPOINTS / "lanmsff_ferplus"
    assert main(["analyze", str(MINI), str(lanmsff), "--dataset", str(tiny_folder), "--split", "all", "--device",
                 "cpu", "--top", "1", "--attention", "1", "--disagreement", "2"]) == 0
    out = capsys.readouterr().out
    attention = out.split("is attention an explanation? (1 face; deletion lower and insertion higher is more "
                          "faithful)\n")[1].split("\n\n")[0].splitlines()
    assert attention[0].split() == ["faces", "deletion", "deletion_se", "random_deletion", "insertion", "insertion_se",
                                    "random_insertion", "beats_random_deletion", "beats_random_insertion"]
    assert attention[1].split() == ["model", "map"] and attention[2].split()[:2] == ["lanmsff_ferplus", "massatt_block2_spatial"]
    assert attention[-1].split()[0] == "gradcam"
    agreement = out.split("mini_xception_fer2013 vs lanmsff_ferplus: Grad-CAM agreement per true class (2 faces "
                          "each)\n")[1].split("\n\n")[0].splitlines()
    assert agreement[0].split() == ["faces", "labels", "agree", "spearman", "top-10", "%", "IoU", "spearman", "(labels",
                                    "agree)", "spearman", "(labels", "differ)"]
    assert [line.split()[0] for line in agreement[2:]] == ["happy", "surprise", "(all)"]
    assert agreement[-1].split()[1] == "4"  # the faces of both classes


def test_two_writers_of_one_cache_entry_do_not_share_a_temporary_file(tmp_path):
    """Two requests building one cache entry at once wrote into one temporary file (a fixed name): the
    second's replace took the first's file away from under it. Each writer has its own now; the last wins."""
    from ferx.cache import atomic_path

    target = tmp_path / "entry.json"
    with atomic_path(target) as first:
        first.write_text("first")
        with atomic_path(target) as second:
            second.write_text("second")
        assert target.read_text() == "second"
    assert target.read_text() == "first" and [p.name for p in tmp_path.iterdir()] == ["entry.json"]


def test_evaluate_and_analyze_say_an_unreadable_image_was_left_out_also_from_the_cache(tiny_folder, tmp_path,
                                                                                        monkeypatch, capsys):
    """A folder with a broken image: the summaries said "4 images" with no word of the file left out (the
    pack's log line names it once, when the split is first read, and never again once the pack is cached)."""
    import shutil

    from ferx.cli import main

    monkeypatch.setenv("FERX_CACHE_DIR", str(tmp_path / "cache"))
    folder = shutil.copytree(tiny_folder, tmp_path / "faces")
    (folder / "happy" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    for _ in range(2):  # computed, then from the cache
        assert main(["evaluate", str(MINI), "--dataset", str(folder), "--split", "all", "--device", "cpu"]) == 0
        assert "4 images (1 unreadable image skipped)" in capsys.readouterr().err
    assert main(["analyze", str(MINI), "--dataset", str(folder), "--split", "all", "--device", "cpu",
                 "--top", "1"]) == 0
    assert "4 faces (1 unreadable image skipped)" in capsys.readouterr().out


def test_cli_analyze_projects_a_handful_of_faces(tiny_folder, tmp_path, monkeypatch, capsys):
    """t-SNE of fewer than 50 faces failed after the report was printed (its PCA asked for 50 components of 4
    faces: "n_components=50 must be between 0 and min(n_samples, n_features)"), leaving half the folder; now the
    PCA takes at most as many components as there are faces, and too few faces are refused before any output."""
    from ferx.analysis.embeddings import MIN_FACES, compute_projection
    from ferx.cli import main

    monkeypatch.setenv("FERX_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "an"
    assert main(["analyze", str(MINI), "--dataset", str(tiny_folder), "--split", "all", "--device", "cpu", "--top", "1",
                 "--embeddings", "tsne", "--out", str(out)]) == 0
    assert "tsne_mini_xception_fer2013.html" in {p.name for p in out.iterdir()}
    assert "wrote tables and 3 figure(s)" in capsys.readouterr().out
    for n in (MIN_FACES["tsne"], 9):
        coords = compute_projection(np.random.default_rng(0).normal(size=(n, 256)), "tsne")
        assert coords.shape == (n, 2) and np.isfinite(coords).all()
    for method, n in MIN_FACES.items():
        with pytest.raises(ValueError, match=f"{method} needs at least {n} faces, not {n - 1}"):
            compute_projection(np.zeros((n - 1, 8)), method)
    few = tmp_path / "few" / "happy"  # 3 faces: too few for UMAP, refused before the report and any file
    few.mkdir(parents=True)
    for face in list((tiny_folder / "happy").iterdir()) + list((tiny_folder / "surprise").iterdir())[:1]:
        shutil.copy(face, few / face.name)
    assert main(["analyze", str(MINI), "--dataset", str(few.parent), "--split", "all", "--device", "cpu",
                 "--embeddings", "umap", "--out", str(tmp_path / "few_out")]) == 1
    printed = capsys.readouterr()
    assert printed.err.strip().splitlines()[-1] == "ferx analyze: error: umap needs at least 4 faces, not 3"
    assert "per class" not in printed.out
    assert not (tmp_path / "few_out").exists()


def test_the_cli_matches_each_analysed_face_to_its_own_votes(data_root):
    """`ferx analyze` reads FERPlus's votes from the label file: a face left out of the analysis (an unreadable
    image) must not shift every later face onto its neighbour's votes (vote_metrics refused the counts after the
    whole analysis had run)."""
    from types import SimpleNamespace

    from ferx.cli import _votes

    split = load_split("ferplus", "test", data_root)
    args = SimpleNamespace(dataset="ferplus", split="test", data_root=data_root)
    kept = [split.paths[i] for i in (0, 2, 3, 7)]  # face 1 left out
    assert np.array_equal(_votes(args, kept), split.soft_targets[[0, 2, 3, 7]])
    assert _votes(args, kept + ["elsewhere/mine.png"]) is None  # a file the label file does not name: no votes
    assert _votes(SimpleNamespace(dataset="ckplus", split="test", data_root=data_root), kept) is None


def test_analyze_out_over_an_earlier_analysis_keeps_no_file_of_it_and_saves_both_summaries(tiny_folder, data_root,
                                                                                          tmp_path, monkeypatch, capsys):
    """`ferx analyze --out` into the folder of an earlier analysis left that analysis's files of a model no longer
    analysed beside the new ones (samples, per-class, confusion, embedding of a model it did not run), one folder
    mixing two analyses; with --calibrate, summary.csv held only the calibrated metrics. A user's own file stays."""
    import pandas as pd

    from ferx.cli import main

    monkeypatch.setenv("FERX_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "analysis"
    lanmsff = CHECKPOINTS / "lanmsff_ferplus"
    common = ["--dataset", str(tiny_folder), "--split", "all", "--device", "cpu", "--top", "1", "--out", str(out)]
    assert main(["analyze", str(MINI), str(lanmsff)] + common) == 0
    first = {p.name for p in out.iterdir()}
    assert {"samples_lanmsff_ferplus.csv", "confusion_lanmsff_ferplus.html",
            "cross_mini_xception_fer2013_vs_lanmsff_ferplus.html", "analysis_files.json"} <= first
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(["analyze", str(MINI)] + common) == 0
    assert "removed 5 files of the earlier analysis there (" in capsys.readouterr().out
    now = {p.name for p in out.iterdir()}
    assert not any("lanmsff" in name for name in now) and "notes.txt" in now and "samples_mini_xception_fer2013.csv" in now
    assert set(json.loads((out / "analysis_files.json").read_text())["files"]) == now - {"notes.txt", "plotly.min.js",
                                                                                           "analysis_files.json"}
    summary = pd.read_csv(out / "summary.csv", index_col=0)
    assert list(summary.index) == ["mini_xception_fer2013"] and summary["temperature"].iloc[0] == 1.0
    calibrated = tmp_path / "calibrated"
    assert main(["analyze", str(MINI), "--dataset", "ckplus", "--split", "test", "--data-root", str(data_root),
                 "--device", "cpu", "--top", "1", "--calibrate", "--out", str(calibrated)]) == 0
    as_measured = pd.read_csv(calibrated / "summary.csv", index_col=0).iloc[0]
    after = pd.read_csv(calibrated / "summary_calibrated.csv", index_col=0).iloc[0]
    assert as_measured["temperature"] == 1.0 and after["temperature"] != 1.0 and after["ece"] != as_measured["ece"]
    assert after["accuracy"] == as_measured["accuracy"]  # a temperature does not change an argmax


def test_an_earlier_analysis_list_names_only_tables_and_figures_that_are_files_there(tmp_path):
    """analysis_files.json is read back to remove an earlier analysis's files: a hand-edited (or foreign) list naming
    a user's notes.txt removed it, and one naming a folder ended `ferx analyze --out` in 'Is a directory' after the
    whole analysis was written (its new list never saved). Only table and figure files there are taken."""
    from ferx.cli import ANALYSIS_FILES, _earlier_analysis

    out = tmp_path / "analysis"
    (out / "figures.html").mkdir(parents=True)
    for name in ("notes.txt", "summary.csv", "reliability.html", "confusion_a.png"):
        (out / name).write_text("x")
    listed = ["notes.txt", "figures.html", "summary.csv", "reliability.html", "confusion_a.png", "gone.csv",
              "../outside.csv", ANALYSIS_FILES]
    (out / ANALYSIS_FILES).write_text(json.dumps({"command": "ferx analyze", "files": listed}))
    assert _earlier_analysis(out) == ["summary.csv", "reliability.html", "confusion_a.png"]
    (out / ANALYSIS_FILES).write_text(json.dumps({"files": "summary.csv"}))  # not a list: its letters are no names
    assert _earlier_analysis(out) == []


def test_analyze_out_replaces_a_plotly_js_cut_short_by_an_earlier_run(tiny_folder, tmp_path, monkeypatch):
    """A run that hit a full disk (or was stopped) while plotly wrote ``plotly.min.js`` left 258,048 of its 4.7 MB;
    plotly writes the file only where none is, so every later analysis in that folder kept the cut one and its HTML
    figures drew nothing. The folder holds plotly's whole bundle after the next analysis."""
    from plotly.offline import get_plotlyjs

    from ferx.cli import main

    monkeypatch.setenv("FERX_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "analysis"
    out.mkdir()
    bundle = get_plotlyjs().encode()
    (out / "plotly.min.js").write_bytes(bundle[:258_048])
    assert main(["analyze", str(MINI), "--dataset", str(tiny_folder), "--split", "all", "--device", "cpu", "--top",
                 "1", "--format", "html", "--out", str(out)]) == 0
    assert (out / "plotly.min.js").read_bytes() == bundle
    assert 'src="plotly.min.js"' in (out / "confusion_mini_xception_fer2013.html").read_text()
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]
