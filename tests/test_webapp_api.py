"""The app's API as a client sees it: gradio_client against the real server on loopback."""

import numpy as np
import pytest
from PIL import Image

from conftest import CHECKPOINTS
from ferx.checkpoint import read_card
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
