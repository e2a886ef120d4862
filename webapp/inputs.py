"""The app's photo inputs: gradio's Image and ImageEditor whose handlers get the upload undecoded.

``gr.Image.preprocess`` opens every upload with Pillow before the handler runs, and converts
(decodes) any whose mode differs from ``image_mode``: a 344 kB 13,300² gray+alpha PNG cost
1.35 GB before ferx's size check, 16-bit gray arrived clipped to white, transparency became
black, and an unreadable file failed with gradio's "Could not preprocess" and a server path.
Here :func:`ferx.faces.load_photo` is the only decoder (size checked before decoding,
transparency on white, 16-bit scaled).

These are classes, not a patched ``preprocess`` on one instance: gradio rebuilds a component from
its constructor arguments for a session whenever a handler updates it (even with ``gr.skip()``),
and that copy had gradio's own ``preprocess`` back. ``is_template`` keeps gradio's frontend (the
block is drawn as the class it derives from). Defining them makes gradio write a type stub beside
this file (``inputs.pyi``, ignored by git).

An upload the sweep has deleted (:mod:`webapp.uploads`: two minutes at most) while the browser
still shows it is refused with one message naming the file and saying to upload it again.
"""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr
from gradio.processing_utils import save_base64_to_cache

from webapp.errors import user_errors
from webapp.uploads import KEPT_AT_MOST

log = logging.getLogger(__name__)


def expired(name: str) -> gr.Error:
    """The message for an upload the sweep deleted (one log line, no traceback: webapp/errors.py)."""
    message = (f"{name}: the server no longer has this photo (its files are deleted within {KEPT_AT_MOST} and never "
               "stored): upload it again, or open it again from the Dataset tab, an example or a link.")
    log.info("upload refused: %s", message)
    return gr.Error(message, print_exception=False)


class Photo(gr.Image):
    """A photo input (``type="filepath"``): its handler gets the uploaded file's path, never opened."""

    is_template = True

    def preprocess(self, payload):
        if payload is None or (payload.path is None and not payload.url):
            return None
        if payload.url and payload.url.startswith("data:"):  # a base64 payload is written to the cache undecoded
            path = save_base64_to_cache(payload.url, self.GRADIO_CACHE)
            self.temp_files.add(path)  # deleted with the other uploads (webapp/uploads.py)
            return path
        if not Path(payload.path).is_file():
            raise expired(payload.orig_name or Path(payload.path).name)
        return str(payload.path)


class PaintedPhoto(gr.ImageEditor):
    """A photo to paint on (``type="filepath"``): its handler gets the photo's and the painted layers'
    bytes or files, undecoded, and a name for messages (``{"background", "layers", "name"}``)."""

    is_template = True

    def preprocess(self, payload):
        if payload is None:
            return None
        if payload.id is not None:  # the browser's canvas export, sent as blobs
            cached = self.blob_storage.pop(payload.id, None)
            if cached is None or cached.background is None:
                return None
            return {"background": cached.background, "layers": [x for x in cached.layers if x],
                    "name": "the painted photo"}
        if payload.background is None:
            return None
        name = payload.background.orig_name or "the painted photo"
        if payload.background.path is None or not Path(payload.background.path).is_file():
            raise expired(name)
        return {"background": payload.background.path, "layers": [x.path for x in payload.layers], "name": name}


class Count(gr.Number):
    """A number input that takes an out-of-range value as the nearest one allowed (page 0 is page 1, face -1 is
    face 0), as a page past the last is the last: gradio's own Number refused it with "Value 0 is less than
    minimum value 1.", a red "Error" over every output of the event (the gallery emptied) and a traceback in
    the log. Made by :func:`count_box`, which shows the value used in the box."""

    is_template = True  # no __init__ of its own: gradio reads a component's settings off its constructor's signature

    def preprocess(self, payload):
        if payload is None:
            return None
        value = payload
        if self.minimum is not None:
            value = max(value, self.minimum)
        if self.maximum is not None:
            value = min(value, self.maximum)
        if value != payload:
            log.info("%s: %s taken as %s", self.label or "number", payload, value)
        return self.round_to_precision(value, self.precision)


@user_errors
def as_used(value):
    """A :class:`Count`'s value as its handlers get it (``preprocess`` took it into range), sent back to the box."""
    return value


def count_box(value: int, *, minimum: int, maximum: int | None = None, label: str, **kwargs) -> Count:
    """A whole-number box (:class:`Count`) that shows the value its handlers will use as soon as the user leaves
    it or presses Enter: 500 typed in a box of at most 50 reads 50 (it kept showing 500 while 50 was used)."""
    box = Count(value, precision=0, minimum=minimum, maximum=maximum, label=label, **kwargs)
    gr.on([box.blur, box.submit], as_used, box, box, queue=False, show_progress="hidden")
    return box
