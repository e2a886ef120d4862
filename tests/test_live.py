"""Live mode on real faces: a webcam-sized frame with two FER-2013 test faces, the largest one scored by
every model; the pacer drops frames that come too soon; maps on demand."""

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from conftest import CHECKPOINTS
from ferx.data import load_fer2013, pack_split
from ferx.live import FRAME_INTERVAL_S, Pacer, score_frame
from webapp.model_bank import ModelBank


@pytest.fixture(scope="module")
def bank():
    return ModelBank.load(CHECKPOINTS, "cpu")


@pytest.fixture(scope="module")
def frame(data_root, tmp_path_factory):
    """640x480, as a webcam sends it (JPEG): a happy face at 260 px, a surprised one at 150 px."""
    packed = pack_split(load_fer2013(data_root, "test"), progress=False)
    canvas = Image.new("RGB", (640, 480), (110, 118, 125))
    for true, side, at in (("happy", 260, (340, 110)), ("surprise", 150, (60, 60))):
        image = packed.images[int(np.flatnonzero(packed.targets == packed.classes.index(true))[0])]
        canvas.paste(Image.fromarray(image).convert("RGB").resize((side, side), Image.Resampling.BICUBIC), at)
    path = tmp_path_factory.mktemp("live") / "frame.jpg"
    canvas.save(path, quality=85)
    return path


def test_the_largest_face_of_a_frame_is_scored_by_every_model(bank, frame):
    result = score_frame(bank.names, frame, using=bank.using)
    assert result.n_faces == 2 and result.face is not None
    x0, y0, x1, y1 = result.face.box
    assert x0 > 300 and x1 - x0 > 150  # the 260-px face on the right, not the small one
    assert set(result.probs) == set(bank.names)
    assert all(result.top(name)[0] == "happy" for name in bank.names), {n: result.top(n) for n in bank.names}
    assert all(abs(result.probs[n].sum() - 1) < 1e-5 for n in bank.names)


def test_the_pacer_drops_frames_that_come_before_the_last_result_settled():
    pacer = Pacer()
    assert pacer.due(100.0)
    pacer.done(100.0)
    assert not pacer.due(100.0 + FRAME_INTERVAL_S / 4)  # queued behind a slow frame: dropped
    assert pacer.due(100.0 + FRAME_INTERVAL_S / 2)
    pacer.done(100.0 + FRAME_INTERVAL_S)
    pacer.done(100.0 + 2 * FRAME_INTERVAL_S)
    assert pacer.scored == 3 and pacer.dropped == 1 and pacer.rate == pytest.approx(1 / FRAME_INTERVAL_S)


def test_the_live_handlers_stream_a_frame_and_draw_maps_on_demand(bank, frame, tmp_path):
    from webapp.live_tab import live_maps, live_step

    chosen = ["mini_xception_fer2013", "lanmsff_ferplus"]
    status, crop, *rest = live_step(bank, str(frame), chosen, None)
    labels, (pacer, face) = rest[:-2], rest[-2:]
    assert "2 face(s) in view; scoring the largest" in status and crop.shape[0] == crop.shape[1]
    by_name = dict(zip(bank.names, labels))
    assert max(by_name["mini_xception_fer2013"], key=by_name["mini_xception_fer2013"].get) == "happy"
    assert by_name["lanmsff_fer2013"] is None  # not chosen, not scored
    skipped = live_step(bank, str(frame), chosen, pacer)  # at once: the pacer drops it
    assert skipped[-2] is pacer and all(x == gr.skip() for x in skipped[:-2]) and skipped[-1] == gr.skip()
    tiles = live_maps(bank, face, chosen)
    assert [caption.split(" · ")[0] for _, caption in tiles] == chosen
    assert all("Grad-CAM → happy" in caption for _, caption in tiles)
    blank = tmp_path / "wall.jpg"
    Image.new("RGB", (640, 480), (200, 200, 190)).save(blank)
    assert live_step(bank, str(blank), chosen, None)[0] == "No face in view."
    broken = tmp_path / "frame.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    message = live_step(bank, str(broken), chosen, None)[0]  # one bad frame: a message, the stream goes on
    assert message.startswith("**webcam frame: ") and str(tmp_path) not in message


def test_maps_pressed_before_any_stream_is_a_hint_not_an_error(bank, monkeypatch):
    """A first click on "Maps of this moment" before recording raised a red "Error" toast; it is a neutral
    hint now, and the gallery keeps what it showed."""
    from webapp.live_tab import live_maps

    hints = []
    monkeypatch.setattr(gr, "Info", hints.append)
    assert live_maps(bank, None, ["mini_xception_fer2013"]) == gr.skip()
    assert len(hints) == 1 and hints[0].startswith("Start the webcam stream first")


def test_a_stream_with_every_model_unticked_says_so_and_clears_the_last_answers(bank, frame):
    """Unticking every model mid-stream dropped each frame silently: the last status and probabilities stayed on
    screen as if they were live."""
    from webapp.live_tab import live_step

    status, crop, *rest = live_step(bank, str(frame), [], None)
    labels, (pacer, face) = rest[:-2], rest[-2:]
    assert status == "No model chosen: tick one to score the faces in view."
    assert crop is None and labels == [None] * len(bank.names) and face is None and pacer.scored == 0


def test_maps_pressed_with_every_model_unticked_mid_stream_ask_for_a_model(bank, frame, monkeypatch):
    """Unticking every model clears the last face, so "Maps of this moment" then said "Start the webcam stream
    first" while the stream ran; it asks for a model, as it did before the last face was cleared."""
    from webapp.live_tab import live_maps, live_step

    *_, face = live_step(bank, str(frame), [], None)
    hints = []
    monkeypatch.setattr(gr, "Info", hints.append)
    with pytest.raises(gr.Error, match="Choose at least one model"):
        live_maps(bank, face, [])
    assert hints == []


def test_maps_pressed_while_the_stream_shows_no_face_say_no_face_is_in_view(bank, monkeypatch, tmp_path):
    """Pressed while streaming a frame without a face, "Maps of this moment" said "Start the webcam stream
    first" (the stream was running); it says no face is in view now, and the gallery keeps what it showed."""
    from webapp.live_tab import live_maps, live_step

    wall = tmp_path / "wall.jpg"
    Image.new("RGB", (640, 480), (200, 200, 190)).save(wall)
    status, *_, pacer, face = live_step(bank, str(wall), ["mini_xception_fer2013"], None)
    assert status == "No face in view." and pacer.scored == 1
    hints = []
    monkeypatch.setattr(gr, "Info", hints.append)
    assert live_maps(bank, face, ["mini_xception_fer2013"]) == gr.skip()
    assert len(hints) == 1 and hints[0].startswith("No face in view"), hints
