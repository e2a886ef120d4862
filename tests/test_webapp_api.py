"""The app's API as a client sees it: gradio_client against the real server on loopback."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from conftest import CHECKPOINTS, face_zip, faces_of
from ferx.checkpoint import load_checkpoint, read_card
from ferx.data import load_fer2013, pack_split
from webapp_server import running_app


@pytest.fixture(scope="module")
def server(data_root):
    with running_app(data_root) as url:
        yield url


@pytest.fixture(scope="module")
def face_png(data_root, tmp_path_factory):
    packed = pack_split(load_fer2013(data_root, "test"), progress=False)
    path = tmp_path_factory.mktemp("faces") / "happy_face.png"
    happy = int(np.flatnonzero(packed.targets == 3)[0])
    Image.fromarray(packed.images[happy]).resize((192, 192), Image.Resampling.BICUBIC).save(path)
    return path


def test_predict_and_explain_endpoints(server, face_png, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    out = client.predict(path=handle_file(str(face_png)), whole_image=True, index=0, api_name="/predict")
    status, boxes, crops = out[:3]
    assert "scoring face 0 (whole image)" in status
    offered = sorted(p.parent.name for p in CHECKPOINTS.glob("*/card.json") if read_card(p.parent).get("metrics"))
    columns = dict(zip(offered, (out[i:i + 4] for i in range(3, len(out), 4))))  # per model, in the bank's order
    assert len(out) == 3 + 4 * len(offered)
    probs, summary, native, gradcam = columns["mini_xception_fer2013"]
    confidences = {c["label"]: c["confidence"] for c in probs["confidences"]}
    assert set(confidences) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    assert sum(confidences.values()) == pytest.approx(1, abs=1e-3)
    assert "margin" in summary and gradcam is not None and native is None  # mini-Xception has no native attention
    probs, summary, native, gradcam = columns["lanmsff_ferplus"]
    assert len(probs["confidences"]) == 8 and probs["label"] == "happy"  # the trained LANMSFF, FERPlus classes
    assert native is not None and gradcam is not None  # MassAtt spatial map and Grad-CAM

    out = client.predict(path=handle_file(str(face_png)), whole_image=True, index=0, chosen=["mini_xception_fer2013"],
                         use_native=True, cam_methods=["gradcam"], captum_methods=["saliency"], target_name="happy",
                         contrast_name="none", opacity=0.5, colormap_name="auto", clip_pct=99, shared_scale=True,
                         faithfulness=True, baseline_kind="blur", api_name="/explain")
    status, gallery, readings, numbers = out[:4]
    assert len(gallery) == 2
    maps = numbers["models"][0]["maps"]
    assert [m["method"] for m in maps] == ["gradcam", "saliency"] and all(m["target_label"] == "happy" for m in maps)
    assert all(m["faithfulness"]["deletion_auc"] >= 0 for m in maps)
    assert "deletion AUC" in readings
    for item, m in zip(gallery, maps):  # each map's faithfulness beside it, in its caption
        caption = item["caption"]
        f = m["faithfulness"]
        assert f"deletion {f['deletion_auc']:.3f} vs random {f['random_deletion_auc']:.3f}" in caption, caption


def test_bad_inputs_become_clear_errors_and_the_server_survives(server, face_png, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    fake = tmp_path / "not_an_image.png"
    fake.write_text("this is text, not a picture")
    with pytest.raises(Exception, match="(?i)image"):
        client.predict(path=handle_file(str(fake)), whole_image=True, index=0, api_name="/predict")
    with pytest.raises(Exception, match="Upload a photo"):
        client.predict(path=None, whole_image=True, index=0, api_name="/predict")
    with pytest.raises(Exception, match="target .contempt.: not a class of mini_xception"):  # LANMSFF has it
        client.predict(path=handle_file(str(face_png)), whole_image=True, index=0, chosen=["mini_xception_fer2013"],
                       use_native=False, cam_methods=["gradcam"], captum_methods=[], target_name="contempt",
                       contrast_name="none", opacity=0.5, colormap_name="auto", clip_pct=99, shared_scale=True,
                       faithfulness=False, baseline_kind="blur", api_name="/explain")
    status = client.predict(path=handle_file(str(face_png)), whole_image=True, index=0, api_name="/predict")[0]
    assert "scoring face 0" in status  # still answering


def _predict(client, path):
    from gradio_client import handle_file

    return client.predict(path=handle_file(str(path)), whole_image=True, index=0, api_name="/predict")


def test_every_bad_photo_gets_one_message_naming_it_and_no_server_path(server, face_png, tmp_path, capfd):
    """Nothing is decoded before ferx's own check: the 13,300² gray+alpha PNG (344 kB; gradio's RGB
    conversion cost 1.3 GB before it) is refused by its declared size, as is every other bad file,
    by its own name."""
    from gradio_client import Client

    from test_faces import write_png_bomb

    client = Client(server, verbose=False)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("this is text, not a picture\n")
    (tmp_path / "scan.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
    write_png_bomb(tmp_path / "gray_alpha_bomb.png", 13_300, "LA")
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * (16 * 2**20), zip=True)  # inflates past Pillow's text-chunk limit
    Image.new("RGB", (8, 8)).save(tmp_path / "big_text.png", pnginfo=info)
    expected = {"empty.png": "empty file", "notes.png": "not an image", "scan.pdf": "not an image",
                "gray_alpha_bomb.png": "declares 13300x13300 = 177 MP.*decompression bomb",
                "big_text.png": "cannot read it.*MAX_TEXT_CHUNK"}
    for name, problem in expected.items():
        with pytest.raises(Exception) as err:
            _predict(client, tmp_path / name)
        message = str(err.value)
        assert re.search(f"{re.escape(name)}: {problem}", message), message
        assert "Could not preprocess" not in message and "/tmp" not in message and "gradio" not in message
    from gradio_client import handle_file

    # a face number below 0 is face 0 (webapp.inputs.Count), not gradio's "Value -1 is less than minimum value 0"
    status = client.predict(path=handle_file(str(face_png)), whole_image=True, index=-1, api_name="/predict")[0]
    assert "scoring face 0" in status
    assert "Traceback" not in capfd.readouterr().err  # an ordinary user error is no trace in the server log


def test_the_app_scores_the_pixels_the_cli_scores(server, face_png, tmp_path):
    """16-bit gray and transparency reach ferx's decoder untouched: a 16-bit copy of a face scores
    exactly like the 8-bit face, and a transparent border scores like a white one (not black)."""
    from gradio_client import Client

    client = Client(server, verbose=False)
    face = np.asarray(Image.open(face_png).convert("L"))
    Image.fromarray(face.astype(np.uint16) * 257).save(tmp_path / "face16.png")
    framed = np.pad(face, 40)
    alpha = np.pad(np.full(face.shape, 255, np.uint8), 40)
    Image.fromarray(np.stack([framed, alpha], -1), "LA").save(tmp_path / "transparent_frame.png")
    Image.fromarray(np.pad(face, 40, constant_values=255)).save(tmp_path / "white_frame.png")

    def probs(name):
        out = _predict(client, face_png if name is None else tmp_path / name)[3]
        return {c["label"]: c["confidence"] for c in out["confidences"]}

    assert probs("face16.png") == pytest.approx(probs(None), abs=1e-6)
    assert probs("transparent_frame.png") == pytest.approx(probs("white_frame.png"), abs=1e-6)


def test_an_uploaded_zip_is_analysed_by_split_and_leaves_no_faces_on_disk(server, data_root, tmp_path):
    """A ``<split>/<class>/`` zip (which the CLI accepts) is analysed by the chosen split; its faces are
    unpacked and packed in a scratch folder that is gone when the answer arrives; a damaged zip is
    named in one message without 'ferx data prepare' advice."""
    import tempfile
    import zipfile

    from gradio_client import Client, handle_file

    from ferx.paths import cache_dir

    packed = pack_split(load_fer2013(data_root, "test"), progress=False)
    path = tmp_path / "my_faces.zip"
    face_zip(path, faces_of(packed, range(12), "train") | faces_of(packed, range(100, 112), "test"))
    before = set(cache_dir("zips").glob("*")), set(cache_dir("packed").glob("*zip*"))
    scratch_before = set(Path(tempfile.gettempdir()).glob("ferx-upload-*"))
    client = Client(server, verbose=False)
    out = client.predict(name=None, split_name="test", zip_file=handle_file(str(path)),
                         chosen=["mini_xception_fer2013"], calib=False, api_name="/analyze")
    assert "**my_faces.zip/test**: 12 faces" in out[0]
    out = client.predict(name=None, split_name="test", zip_file=handle_file(str(path)), faces="detect",
                         face="largest", chosen=["mini_xception_fer2013"], calib=False, api_name="/analyze")
    assert ("**my_faces.zip/test**: 12 faces (faces found by mtcnn: the largest face of each photo; 0 photos without "
            "a face left out)") in out[0]  # 48-px images are taken as faces, as a small photo is
    assert (set(cache_dir("zips").glob("*")), set(cache_dir("packed").glob("*zip*"))) == before
    assert set(Path(tempfile.gettempdir()).glob("ferx-upload-*")) == scratch_before

    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(damaged, "w") as z:
        z.writestr("happy/a.pgm", b"P5 4 4 255\n" + bytes(range(16)))
    damaged.write_bytes(damaged.read_bytes().replace(bytes(range(16)), bytes(range(1, 17))))
    with pytest.raises(Exception) as err:
        client.predict(name=None, split_name="test", zip_file=handle_file(str(damaged)),
                       chosen=["mini_xception_fer2013"], calib=False, api_name="/analyze")
    message = str(err.value)
    assert "damaged.zip: 'happy/a.pgm' is damaged" in message
    assert "prepare" not in message and "Something went wrong" not in message and "/tmp" not in message


def _analysis_threads() -> list:
    import threading

    from ferx.background import THREAD_NAME

    return [t for t in threading.enumerate() if t.name == THREAD_NAME]  # ferx.background's batch threads


def test_stop_ends_the_analysis_work_not_only_the_request(server, tmp_path, monkeypatch):
    """gradio's cancels= drops a request but its thread would run on for a minute, holding the cores:
    Stop must end the batches themselves and keep nothing of the run."""
    import time

    from gradio_client import Client

    monkeypatch.setenv("FERX_CACHE_DIR", str(tmp_path / "cache"))  # a first-time analysis: a minute of batches
    client = Client(server, verbose=False)
    client.submit(name="ferplus", split_name="test", zip_file=None,
                  chosen=["lanmsff_ferplus", "mini_xception_fer2013"], calib=False, api_name="/analyze")
    deadline = time.time() + 60
    while not _analysis_threads() and time.time() < deadline:
        time.sleep(0.1)
    assert _analysis_threads(), "the analysis never started"
    time.sleep(1)
    assert client.predict(api_name="/stop_analysis").startswith("Analysis stopped")
    deadline, quiet_since = time.time() + 30, None
    while time.time() < deadline and (quiet_since is None or time.time() - quiet_since < 2):
        quiet_since = (quiet_since or time.time()) if not _analysis_threads() else None
        time.sleep(0.1)
    assert not _analysis_threads(), "the stopped analysis is still running"
    assert not list((tmp_path / "cache").glob("analysis/*"))  # nothing of the stopped run was kept


def test_a_page_closed_during_its_analysis_stops_the_analysis_work(server, tmp_path, monkeypatch):
    """A closed tab (its client gone: gradio runs the page's unload) left its analysis running to the end for
    nobody, holding both cores: a 600-photo zip ran 35 s on after its page had gone."""
    import subprocess
    import sys
    import time

    monkeypatch.setenv("FERX_CACHE_DIR", str(tmp_path / "cache"))  # a first-time analysis: a minute of batches
    page = subprocess.Popen([sys.executable, "-c", f"""
from gradio_client import Client
Client({server!r}, verbose=False).predict(name="ferplus", split_name="test", zip_file=None,
    chosen=["lanmsff_ferplus", "mini_xception_fer2013"], calib=False, api_name="/analyze")
"""])
    try:
        deadline = time.time() + 60
        while not _analysis_threads() and time.time() < deadline:
            time.sleep(0.1)
        assert _analysis_threads(), "the analysis never started"
        time.sleep(1)
    finally:
        page.kill()  # the tab is closed: its connections drop
        page.wait()
    deadline, quiet_since = time.time() + 30, None
    while time.time() < deadline and (quiet_since is None or time.time() - quiet_since < 2):
        quiet_since = (quiet_since or time.time()) if not _analysis_threads() else None
        time.sleep(0.1)
    assert not _analysis_threads(), "the analysis of the closed page is still running"
    assert not list((tmp_path / "cache").glob("analysis/*"))  # nothing of the stopped run was kept


def test_sanity_check_through_the_api(server, face_png):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    verdicts, plot, table = client.predict(path=handle_file(str(face_png)), whole_image=True, index=0,
                                           model_name="lanmsff_ferplus", methods=["native", "gradcam"], n_steps=2,
                                           api_name="/sanity")
    assert "class *happy*" in verdicts and "**Grad-CAM**: mean ρ" in verdicts
    assert "**MassAtt block 4**: mean ρ" in verdicts  # LANMSFF's own attention is checked too, named for people
    assert plot is not None
    assert table["headers"] == ["randomised from the head down to", "MassAtt block 2", "MassAtt block 4", "Grad-CAM"]
    assert [row[0] for row in table["data"]][0] == "0: trained" and len(table["data"]) == 3  # the trained + 2 steps
    assert [row[1] for row in table["data"]][0] == 1.0  # each map matches itself before any randomisation
    import json
    import urllib.request

    config = json.load(urllib.request.urlopen(f"{server.rstrip('/')}/config"))
    for tab in ("sanity", "stability"):  # each tab offers the example faces, as Explain does
        photo = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == f"{tab}-photo")
        examples = [c for c in config["components"] if c["type"] == "dataset" and photo in c["props"]["component_ids"]]
        assert examples and len(examples[0]["props"]["samples"]) >= 2, tab


def test_stability_probe_through_the_api(server, face_png):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    summary, table, gallery = client.predict(path=handle_file(str(face_png)), whole_image=True, index=0,
                                             chosen=["mini_xception_fer2013", "lanmsff_ferplus"], api_name="/stability")
    assert "**mini_xception_fer2013**: *happy*" in summary and "**lanmsff_ferplus**: *happy*" in summary
    assert "keeps it in **100%** of the versions" in summary
    assert table["headers"] == ["version", "mini_xception_fer2013", "lanmsff_ferplus"] and len(table["data"]) == 8
    assert table["data"][-1][0] == "crop shifted 6\u00a0%"  # no line break between a number and its unit
    assert all(cell.startswith("✓ happy") for row in table["data"] for cell in row[1:])
    assert len(gallery) == 9  # the original and its 8 versions


def _mouth_layer(face_png, path, covered: bool = True):
    """A painted layer as the ImageEditor sends it: RGBA at the photo's size, opaque where painted (the mouth)."""
    w, h = Image.open(face_png).size
    layer = np.zeros((h, w, 4), np.uint8)
    if covered:
        layer[int(0.62 * h):int(0.92 * h), int(0.22 * w):int(0.78 * w)] = (255, 0, 255, 255)
    Image.fromarray(layer).save(path)
    return path


def test_occlusion_brush_through_the_api(server, face_png, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    offered = sorted(p.parent.name for p in CHECKPOINTS.glob("*/card.json") if read_card(p.parent).get("metrics"))
    edited = {"background": handle_file(str(face_png)), "layers": [handle_file(str(_mouth_layer(face_png, tmp_path / "m.png")))],
              "composite": None}
    out = client.predict(edited, True, 0, "mean", ["mini_xception_fer2013"], True, api_name="/occlude")
    status, strip = out[:2]
    columns = dict(zip(offered, (out[i:i + 3] for i in range(2, len(out), 3))))
    assert "of the face crop painted over (mean grey)" in status and strip is not None
    probs, change, maps = columns["mini_xception_fer2013"]
    assert probs["label"] != "happy" or max(c["confidence"] for c in probs["confidences"]) < 0.5
    assert re.search(r"\*\*happy\*\* \d+% → \d+% \(▼ \d+\.\d points\)", change), change  # the smile was the evidence
    assert maps is not None  # Grad-CAM before | after
    assert not columns["lanmsff_ferplus"][0] and not columns["lanmsff_ferplus"][1]  # a model not chosen is not scored
    blank = {"background": handle_file(str(face_png)), "layers": [handle_file(str(_mouth_layer(face_png, tmp_path / "b.png", False)))],
             "composite": None}
    assert "nothing painted yet" in client.predict(blank, True, 0, "blur", ["mini_xception_fer2013"], False,
                                                   api_name="/occlude")[0]
    fake = tmp_path / "holiday.png"
    fake.write_text("not a picture")
    with pytest.raises(Exception, match="holiday.png: not an image"):
        client.predict({"background": handle_file(str(fake)), "layers": [], "composite": None}, True, 0, "blur",
                       ["mini_xception_fer2013"], False, api_name="/occlude")


def test_the_explanation_card_of_what_is_on_screen(server, face_png):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    with pytest.raises(Exception, match="Explain a face first"):
        client.predict(api_name="/card")
    client.predict(path=handle_file(str(face_png)), whole_image=True, index=0, chosen=["lanmsff_ferplus"],
                   use_native=True, cam_methods=["gradcam"], captum_methods=[], target_name="predicted",
                   contrast_name="none", opacity=0.7, colormap_name="viridis", clip_pct=97, shared_scale=False,
                   faithfulness=True, baseline_kind="mean", api_name="/explain")
    files, png, note, link = client.predict(api_name="/card")  # the same session: the explanation just shown
    assert sorted(Path(f).suffix for f in files) == [".json", ".pdf", ".png"]
    assert Path(png).name == "happy_face_card.png" and Image.open(png).width > 1000
    card = json.loads(Path(next(f for f in files if f.endswith(".json"))).read_text())
    assert card["card"]["view"] == {"scale": "per-map", "clip_percentile": 97, "opacity": 0.7, "colormap": "viridis",
                                    "target": "predicted", "contrast": None}
    assert card["card"]["faithfulness"]["lanmsff (lanmsff_ferplus)"]["baseline"].startswith("mean")
    assert card["card"]["checkpoints"]["lanmsff (lanmsff_ferplus)"]["sha256"] == \
        load_checkpoint(CHECKPOINTS / "lanmsff_ferplus").sha256
    assert card["photo"]["name"] == "happy_face.png" and "/" not in json.dumps(card["photo"])  # no server path
    assert link == "" and "an uploaded photo is not stored" in note  # an upload has no link


def test_the_api_offers_no_click_handler_and_keeps_its_endpoints(server):
    """The handlers of clicks on the page (a matrix cell, an embedding selection, a gallery face, a detected face's
    box) were API endpoints that failed inside gradio without a click ("'NoneType' object is not subscriptable",
    a traceback in the server log). The API lists none of them now; the endpoints that work through it stay."""
    from gradio_client import Client

    client = Client(server, verbose=False)
    named = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    clicks = {"/confusion_click", "/cross_click", "/embedding_select", "/noise_row_click", "/open_face",
              "/open_pair_face"}
    assert not named & clicks, named & clicks
    assert {"/predict", "/explain", "/analyze", "/sanity", "/stability", "/occlude", "/card"} <= named
    with pytest.raises(ValueError, match="Cannot find a function with `api_name`: /confusion_click"):
        client.predict(None, None, api_name="/confusion_click")
