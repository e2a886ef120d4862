"""Long requests that no page wants any more: a dataset analysis whose user pressed Stop, and the dataset analysis,
Explain or sanity check of a page closed (or reloaded) while it runs. gradio's ``cancels=`` and a closed page only
drop the request: its thread would run on to the end for nobody, both cores busy (a 600-photo zip: 35 s at 4.3 CPU-s
every 5 s after the tab was gone). So long work asks :data:`STOPS` between its steps (batches, methods, layers)."""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager

import gradio as gr

from webapp.errors import user_errors

log = logging.getLogger(__name__)


class Stopped(gr.Error):
    pass


class StopRequests:
    """The sessions' tasks asked for (queued or running) and those stopped. A task is a session's kind of work
    ("analysis", "explanation", "sanity check"): Stop ends that session's analysis only, closing the page all of its
    tasks. A task not under way has nothing to stop (a Stop pressed just after the results came said it had
    stopped them)."""

    def __init__(self) -> None:
        self._lock, self._stopped, self._under_way = threading.Lock(), set(), set()

    def begin(self, session: str, task: str) -> None:
        """``session`` asked for ``task`` (on the click, before the queue; again as it starts)."""
        with self._lock:
            self._stopped.discard((session, task))
            self._under_way.add((session, task))

    def end(self, session: str, task: str) -> None:
        """``session``'s ``task`` returned, failed or was stopped (a stop it never met has nothing left to stop)."""
        with self._lock:
            self._under_way.discard((session, task))
            self._stopped.discard((session, task))

    def stop(self, session: str, task: str | None = None) -> bool:
        """Stop ``session``'s ``task`` (every task of it: None); False when none is under way. A queued one is
        dropped by ``cancels=`` or by gradio when its page closes."""
        with self._lock:
            hit = {key for key in self._under_way if key[0] == session and task in (None, key[1])}
            self._under_way -= hit
            self._stopped |= hit
            return bool(hit)

    def check(self, session: str, task: str) -> None:
        """Raise :class:`Stopped` if ``session``'s ``task`` was stopped (once: then it is handled)."""
        with self._lock:
            if (session, task) in self._stopped:
                self._stopped.discard((session, task))
                raise Stopped(f"The {task} was stopped.")


STOPS = StopRequests()


@contextmanager
def stoppable(request: gr.Request | None, task: str):
    """Run ``task`` for ``request``'s session; yields the check to call between its steps (a no-op without a
    session: a call from Python)."""
    session = getattr(request, "session_hash", None)
    if session is None:
        yield lambda: None
        return
    STOPS.begin(session, task)
    try:
        yield lambda: STOPS.check(session, task)
    finally:
        STOPS.end(session, task)


def stop_when_closed(app: gr.Blocks) -> None:
    """A page closed (or reloaded) stops each of its long tasks under way, as the Stop button does an analysis."""

    @user_errors
    def stop_closed(request: gr.Request):
        if STOPS.stop(request.session_hash):
            log.info("a page closed while its work ran: stopped")

    app.unload(stop_closed)
