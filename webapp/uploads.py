"""The server's copies of uploads and generated images are deleted within two minutes.

gradio's own ``delete_cache`` task iterates its live sets of temporary files while requests add to
them; under load it died with ``RuntimeError: Set changed size during iteration`` and deleted
nothing after. :func:`sweep` iterates a copy of each set (taken under the GIL), and one failed
sweep never stops the next. The app runs it every :data:`SWEEP_EVERY_S` in a daemon thread from
its start to its shutdown (which deletes everything left): files live at most
``MAX_AGE_S + SWEEP_EVERY_S`` = 90 s.
"""

from __future__ import annotations

import datetime
import getpass
import logging
import math
import os
import tempfile
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

import gradio as gr

from webapp.errors import user_errors

log = logging.getLogger(__name__)
SWEEP_EVERY_S = 30
MAX_AGE_S = 60
# what a tab keeps of a photo in memory for the next click (an explanation's card and slider tiles, the webcam's
# last face) lives as long as a file at most (a session's other state lives longer): photo_state
PHOTO_KEPT_S = MAX_AGE_S + SWEEP_EVERY_S
KEPT_AT_MOST = f"{math.ceil(PHOTO_KEPT_S / 60)} minutes"  # what the app tells its users: "within 2 minutes"


def photo_state(ctx) -> gr.State:
    """A session state that will hold a face's pixels: dropped :data:`PHOTO_KEPT_S` after it was last set, and
    as soon as its page is closed (:func:`forget_photos_on_close`)."""
    state = gr.State(None, time_to_live=PHOTO_KEPT_S)
    ctx.photo_states.append(state)
    return state


def forget_photos_on_close(app: gr.Blocks, states) -> None:
    """When a page closes, drop its photo states at once: gradio keeps a closed page's state for an hour,
    whatever its own ``time_to_live``. (A handler still running when the page closed writes its outputs after
    this: :func:`drop_photos`, run by the sweep, drops them.)"""
    ids = [s._id for s in states]
    app.ferx_photo_states = ids  # for drop_photos

    @user_errors
    def forget_photos(request: gr.Request):
        session = app.state_holder.session_data.get(request.session_hash)
        if session is not None:
            for i in ids:
                session.state_data.pop(i, None)

    app.unload(forget_photos)


def user_temp_dir(kind: str) -> Path:
    """The server user's own folder for ``kind`` of generated file (``ferx-<kind>-<user>`` in the system
    temp folder; created): another user's server on the machine never shares it."""
    folder = Path(tempfile.gettempdir()) / f"ferx-{kind}-{getpass.getuser()}"
    folder.mkdir(exist_ok=True)
    return folder


def sweep(blocks, max_age_s: float | None = MAX_AGE_S) -> int:
    """Delete the files ``blocks`` wrote or received more than ``max_age_s`` ago (None: all of them),
    except the ones gradio keeps (examples); returns how many were deleted."""
    components = [*blocks.blocks.values(), *_session_copies(blocks)]
    keep = set()
    for component in components:
        keep.update(getattr(component, "keep_in_cache", ()))
    now, removed = time.time(), 0
    file_sets = [*blocks.temp_file_sets, *(c.temp_files for c in components if getattr(c, "temp_files", None) is not None)]
    for files in {id(s): s for s in file_sets}.values():
        for file in files.copy():
            if file in keep:
                continue
            try:
                if max_age_s is None or now - os.lstat(file).st_ctime > max_age_s:
                    os.remove(file)
                    removed += 1
                    files.discard(file)
                    _drop_if_empty(os.path.dirname(file))
            except FileNotFoundError:
                files.discard(file)
            except OSError as err:
                log.warning("could not delete %s: %s", file, err)
    return removed


def _session_copies(blocks) -> list:
    """The outputs gradio rebuilt for a session: a handler's update of an output, even ``gr.skip()``, gives the session
    its own copy, whose files gradio lists in that copy's set alone (not in ``blocks.temp_file_sets``). Unswept,
    7 of Compare's 9 images of every photo after a face number past the last stayed on disk for good."""
    holder = getattr(blocks, "state_holder", None)
    if holder is None:
        return []
    own = blocks.blocks
    return [c for session in list(holder.session_data.values())
            for key, c in list(session.blocks_config.blocks.items()) if c is not own.get(key)]


def drop_photos(blocks) -> int:
    """Drop every session's photo states older than :data:`PHOTO_KEPT_S`, or of a closed page (gradio's own expiry
    gives a closed page's states an hour, and a state written after its page closed met no unload); how many."""
    holder, ids = getattr(blocks, "state_holder", None), getattr(blocks, "ferx_photo_states", ())
    if holder is None or not ids:
        return 0
    now, dropped = datetime.datetime.now(), 0
    for session in list(holder.session_data.values()):
        for i in ids:
            if i not in session.state_data:
                continue
            _, made = session._state_ttl.get(i, (None, now))
            if session.is_closed or (now - made).total_seconds() > PHOTO_KEPT_S:
                session.state_data.pop(i, None)
                dropped += 1
    return dropped


def _drop_if_empty(folder: str) -> None:
    """The one-download folder ferx made for a file (``/tmp/ferx-cards-<user>/<uuid>/``, an export's
    ``mkdtemp``), once empty; gradio's own folders and the ``ferx-*`` roots stay."""
    if os.path.basename(os.path.dirname(folder)).startswith("ferx-"):
        try:
            os.rmdir(folder)
        except OSError:  # not empty: another download still in it
            pass


@asynccontextmanager
async def sweeping(app):
    """A FastAPI lifespan (``launch(app_kwargs={"lifespan": sweeping})``): sweeps from start to shutdown."""
    blocks, stop = app.get_blocks(), threading.Event()

    def loop():
        while not stop.wait(SWEEP_EVERY_S):
            try:
                sweep(blocks)
                drop_photos(blocks)
            except Exception:  # noqa: BLE001 - the next sweep must still run
                log.exception("upload sweep failed; trying again in %d s", SWEEP_EVERY_S)

    threading.Thread(target=loop, name="ferx-upload-sweeper", daemon=True).start()
    try:
        yield
    finally:
        stop.set()
        sweep(blocks, None)
