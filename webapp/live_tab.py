"""Live tab: a webcam stream for a classroom — the largest face's probabilities, maps on demand.

The core is :mod:`ferx.live` (the rate, the largest face, the scoring and the pacer are declared
there); this tab streams the webcam at that rate and draws the answers.
"""

from __future__ import annotations

import functools

import gradio as gr

from ferx.explain.methods import map_caption
from ferx.explain.overlay import map_scales
from ferx.faces import ImageError
from ferx.live import FRAME_INTERVAL_S, Pacer, map_face, score_frame
from ferx.memory_format import SMALL_MODEL
from webapp.app_context import AppContext
from webapp.errors import at_least_one, user_errors
from webapp.explaining import tile, verdict
from webapp.inputs import Photo
from webapp.uploads import KEPT_AT_MOST, photo_state

NO_FACE = "no face in view"  # what the last face's state holds when the last frame scored had none
STREAM_LIMIT_S = 600  # one stream runs at most ten minutes; pressing record again starts another
INTRO = ("### Live: the webcam, for a classroom\n"
         f"Allow the webcam and press record: about every {FRAME_INTERVAL_S:g} s a frame is sent, the largest face in "
         "it (the person nearest the camera) is found and scored by each chosen model. Frames that arrive while "
         "the server is still busy are dropped, so the answers keep up with the faces. No map is drawn while "
         "streaming (a map costs more than a frame): press **Maps of this moment** for each model's Grad-CAM of the "
         f"last face. Frames are not kept (the last face is, for at most {KEPT_AT_MOST}, for those maps); a stream stops after "
         f"{STREAM_LIMIT_S // 60} minutes.")


@user_errors
def live_step(bank, frame, chosen, pacer):
    """One streamed frame: the status, the face, each model's probabilities, the pacer, the face kept for maps."""
    pacer = pacer or Pacer()
    n_out = 2 + len(bank.names)
    if frame and not chosen:  # every model unticked: said, and the last answers cleared (they stood as if live)
        return (["No model chosen: tick one to score the faces in view.", None] + [None] * len(bank.names)
                + [pacer, None])
    if not frame or not pacer.due():  # a frame that arrived while the last was scored: dropped
        return [gr.skip()] * n_out + [pacer, gr.skip()]
    try:
        result = score_frame(chosen, frame, using=bank.using, name="webcam frame")
    except ImageError as err:  # one unreadable frame: said in the status, the stream goes on
        return [f"**{err}**"] + [gr.skip()] * (n_out - 1) + [pacer, gr.skip()]
    finally:
        pacer.done()
    if result.face is None:
        return ["No face in view.", None] + [None] * len(bank.names) + [pacer, NO_FACE]
    labels = [{c: float(p) for c, p in zip(result.classes[n], result.probs[n])} if n in result.probs else None
              for n in bank.names]
    rate = "" if pacer.rate is None else f" · {pacer.rate:.1f} frames/s held, {pacer.dropped} dropped"
    status = (f"{result.n_faces} face(s) in view; scoring the largest · {result.elapsed_s:.2f} s for this frame "
              f"(one asked every {FRAME_INTERVAL_S:g} s){rate}" + (f"  \n_{result.note}_" if result.note else ""))
    return [status, result.face.crop] + labels + [pacer, result.face]


@user_errors
def live_maps(bank, face, chosen):
    """Grad-CAM of each chosen model's prediction on the last streamed face, with its verdict. Pressed before
    any face was streamed (a natural first click), or while the stream shows no face, a hint, not an error: the
    gallery stays as it was."""
    at_least_one(chosen, "model")  # first: every model unticked mid-stream also clears the last face (live_step)
    if face == NO_FACE:
        gr.Info("No face in view: the last frame the stream scored had none. Face the camera, then press "
                "Maps of this moment again.")
        return gr.skip()
    if face is None:
        gr.Info("Start the webcam stream first (allow the webcam, press record): the maps are of the last face "
                f"it scored in the last {KEPT_AT_MOST}.")
        return gr.skip()
    tiles = []
    for name in chosen:
        with bank.using(name) as loaded:
            ex = map_face(loaded, face)
        scale = map_scales([ex], "per-map")[0][0]
        tiles.append((tile(face.crop, ex.maps[0].crop_values, scale),
                      f"{name} · {map_caption(ex.maps[0])} · {verdict(ex).replace('**', '')}"))
    return tiles


def build_live_tab(ctx: AppContext) -> None:
    bank = ctx.bank
    # streamed by default: the models small enough to keep up (a Conv-cut-sized model can be ticked; frames drop)
    small = [n for n in bank.names if bank.models[n].card["parameters"] < SMALL_MODEL]  # the card's: no build
    gr.Markdown(INTRO)
    with gr.Row():
        with gr.Column(scale=2):
            webcam = Photo(sources=["webcam"], streaming=True, type="filepath", label="Webcam",
                           elem_id="live-webcam", height=320)  # frames reach ferx's own decoder
            models = gr.CheckboxGroup(bank.names, value=small, label="Models (streamed; large models slow the rate)")
            map_button = gr.Button("Maps of this moment (Grad-CAM)")
        with gr.Column(scale=3):
            status = gr.Markdown("Waiting for the webcam.", elem_id="live-status")
            crop = gr.Image(label="The largest face, as the models score it", interactive=False, height=160,
                            buttons=[], alt_text="The largest face of the webcam's last frame, as the models score it")
            with gr.Row():
                labels = [gr.Label(num_top_classes=3, label=name, elem_classes=["live-probs"]) for name in bank.names]
    # as tall as its tiles and their captions (which model, its verdict), under them (webapp/app.py CSS): at 320 px
    # the tiles' chins and colour bars' lowest numbers were cut off and every caption was below the fold
    maps = gr.Gallery(label="Maps of the last face (on demand)", columns=max(1, len(bank.names)), height="auto",
                      object_fit="contain", elem_id="live-maps", allow_preview=False)
    pacer = gr.State(None, time_to_live=ctx.cfg.state_ttl_s)
    last_face = photo_state(ctx)  # the face's pixels: kept as briefly as its files
    webcam.stream(functools.partial(live_step, bank), [webcam, models, pacer], [status, crop, *labels, pacer, last_face],
                  stream_every=FRAME_INTERVAL_S, time_limit=STREAM_LIMIT_S, api_name="live")
    map_button.click(functools.partial(live_maps, bank), [last_face, models], maps, api_name="live_maps")
