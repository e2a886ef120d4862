"""Live mode for a classroom: webcam frames in, the largest face's probabilities out, at a steady rate.

:func:`score_frame` finds the faces of one frame, keeps the largest (the person nearest the camera),
and scores its crop with every model (no maps: those are on demand, :func:`map_face`). The rate is
one frame every :data:`FRAME_INTERVAL_S` seconds, chosen from ``bench/bench_live.py`` on 2 CPU
cores so that a frame is done before the next one arrives with a core left for the server; frames
that come while one is being scored are dropped by the app, never queued.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from ferx.explain._common import fast_logits
from ferx.faces import Face, find_faces, load_photo

# seconds between the frames live mode asks for. bench/bench_live.py, 640x480 JPEG, the three small checkpoints, on
# the 2 shared CPU cores of the development machine (load average ~11 from other work): 0.19 s per frame on 1
# torch thread (decoding and detection 0.10 s), 0.77 s on 2 (the second core was busy). Two frames a second
# leave room for that and for a second user; frames that reach the server faster are dropped (Pacer).
FRAME_INTERVAL_S = 0.5
LIVE_SIDE = 640  # frames are scored at most this wide (a webcam's VGA): detection cost grows with pixels


class Pacer:
    """Keeps a stream at a rate the CPU holds: a frame is scored only when at least ``min_gap_s`` has
    passed since the previous frame's result. Frames that waited in a queue while a slow one was
    scored reach the handler right after it and are dropped, so the lag never builds up. Counts what
    it scored and dropped, and the rate it held (what a teacher sees, and what the browser test reads)."""

    def __init__(self, min_gap_s: float = FRAME_INTERVAL_S / 2):
        self.min_gap_s = min_gap_s
        self.last_done = float("-inf")
        self.first_done: float | None = None
        self.scored = self.dropped = 0

    def due(self, now: float | None = None) -> bool:
        ok = (time.monotonic() if now is None else now) - self.last_done >= self.min_gap_s
        self.dropped += not ok
        return ok

    def done(self, now: float | None = None) -> None:
        self.last_done = time.monotonic() if now is None else now
        self.first_done = self.last_done if self.first_done is None else self.first_done
        self.scored += 1

    @property
    def rate(self) -> float | None:
        """Frames scored per second since the first one (None until there are two)."""
        if self.scored < 2 or self.last_done <= self.first_done:
            return None
        return (self.scored - 1) / (self.last_done - self.first_done)


@dataclass
class LiveFrame:
    face: Face | None  # the largest face, None when the frame has none
    n_faces: int
    note: str | None = None  # how the faces were found, when it needs saying (ferx.faces.FaceSearch.note)
    probs: dict[str, np.ndarray] = field(default_factory=dict)  # model name -> probabilities
    classes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def top(self, name: str) -> tuple[str, float]:
        p = self.probs[name]
        return self.classes[name][int(p.argmax())], float(p.max())


def largest_face(photo) -> tuple[Face | None, int, str | None]:
    """The largest face of a :class:`~ferx.faces.Photo` (by box area), how many faces it holds, and the search's
    note (a small image taken as an already-cropped face: :attr:`~ferx.faces.FaceSearch.note`)."""
    search = find_faces(photo)
    if search.no_face:
        return None, 0, search.note
    return search.faces[search.largest()], len(search.faces), search.note


def score_frame(models: Iterable, frame, *, using: Callable = nullcontext, name: str = "frame") -> LiveFrame:
    """The largest face of ``frame`` (an RGB array, or a file or its bytes: ferx's own decoder) scored
    by every model, the frame first reduced to :data:`LIVE_SIDE`. ``models``:
    :class:`~ferx.checkpoint.LoadedModel` objects, or handles ``using`` turns into them (then the
    results are keyed by handle, else by each model's display name)."""
    from PIL import Image

    start = time.perf_counter()
    photo = load_photo(Image.fromarray(frame) if isinstance(frame, np.ndarray) else frame, name=name,
                       work_side=LIVE_SIDE)
    out = LiveFrame(*largest_face(photo))
    face = out.face
    if face is not None:
        for handle in models:
            with using(handle) as em:
                x = face.model_input(em.input_spec).to(em.device)
                logits = fast_logits(em.model, x)[0].cpu().numpy()
                p = np.exp(logits - logits.max())
                key = handle if isinstance(handle, str) else em.display
                out.probs[key], out.classes[key] = p / p.sum(), em.classes
    out.elapsed_s = time.perf_counter() - start
    return out


def map_face(em, face: Face, method: str = "gradcam"):
    """On demand: ``method``'s map of the face's predicted class (no faithfulness test: seconds, not a stream)."""
    from ferx.explain.report import explain_face

    return explain_face(em, face, [method], faithfulness=False)
