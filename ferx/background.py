"""Batch work at a lower CPU priority than the interactive requests of the same process.

A dataset analysis or a t-SNE/UMAP projection in the app shares the cores with other users'
``/predict`` and ``/explain`` calls. Measured on 2 cores (``bench/load_check.py
--during-analysis``): without this, a ``/predict`` answered in 0.7 s alone took 6.2 s (median) while
a first-time analysis of FERPlus test ran, because the analysis's torch threads took the cores as
often as the request's.

Linux schedules threads, each with its own nice value, and a thread's nice value is inherited by
the threads it starts. torch's OpenMP workers are started by the thread that first runs a parallel
operator and stay attached to it. So :func:`at_low_priority` runs the batch job in a *fresh*
thread that lowers its own priority before any torch call: the OpenMP team it starts inherits the
lower priority, while the server's request threads (and their teams) keep theirs. Elsewhere than
Linux (where the call would lower the whole process) it simply runs the job in that thread.
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
import time
from typing import Callable, TypeVar

T = TypeVar("T")

BACKGROUND_NICENESS = 10  # nice 10 weighs ~1/9 of nice 0 in Linux's scheduler
THREAD_NAME = "ferx-background"  # the batch jobs' threads (a server's shutdown can wait for them by name)


def at_low_priority(fn: Callable[..., T], /, *args, while_waiting: Callable[[float], None] | None = None,
                    every_s: float = 1.0, **kwargs) -> T:
    """``fn(*args, **kwargs)`` in a fresh thread at a lower scheduling priority; returns its result or
    raises its exception. Context variables are carried over (gradio's ``gr.Progress(track_tqdm=True)``
    keeps reporting the job's tqdm bars); ``while_waiting(seconds so far)`` is called every ``every_s``
    while it runs (a progress estimate for work that reports none, such as t-SNE)."""
    context = contextvars.copy_context()
    outcome: dict[str, object] = {}

    def job() -> None:
        try:
            lower_thread_priority()
            outcome["value"] = context.run(fn, *args, **kwargs)
        except BaseException as err:  # re-raised in the caller's thread
            outcome["error"] = err

    worker = threading.Thread(target=job, name=THREAD_NAME, daemon=True)
    worker.start()
    start = time.perf_counter()
    worker.join(every_s if while_waiting else None)
    while worker.is_alive():
        while_waiting(time.perf_counter() - start)
        worker.join(every_s)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def lower_thread_priority(niceness: int = BACKGROUND_NICENESS) -> bool:
    """Raise the calling thread's nice value to at least ``niceness`` (Linux only: there
    ``setpriority`` on a thread id affects that thread alone). Returns whether it was applied."""
    if not sys.platform.startswith("linux"):
        return False
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), niceness))
    except OSError:  # a sandbox may forbid it: the job still runs, at the normal priority
        return False
    return True


def thread_niceness() -> int | None:
    """The calling thread's nice value (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
