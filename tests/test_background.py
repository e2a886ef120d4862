"""Batch work yields the cores and the models to interactive requests (ferx.background, the app's model gate)."""

from __future__ import annotations

import contextvars
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from ferx.background import BACKGROUND_NICENESS, at_low_priority, thread_niceness
from webapp.model_bank import InteractiveFirst

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")


def _nice_threads() -> set[int]:
    """Thread ids of this process whose nice value is at least BACKGROUND_NICENESS (/proc)."""
    found = set()
    for stat in Path("/proc/self/task").glob("*/stat"):
        fields = stat.read_text().rsplit(")", 1)[1].split()
        if int(fields[16]) >= BACKGROUND_NICENESS:  # field 19 of stat, counted after the command name
            found.add(int(stat.parent.name))
    return found


def test_result_exception_and_context_come_back():
    var = contextvars.ContextVar("var", default="unset")
    var.set("request's value")
    assert at_low_priority(lambda a, b=0: (a + b, var.get()), 2, b=3) == (5, "request's value")
    with pytest.raises(ZeroDivisionError):
        at_low_priority(lambda: 1 / 0)


@linux_only
def test_job_and_its_torch_threads_run_below_the_caller():
    before = thread_niceness()
    torch.set_num_threads(2)

    def job():
        x = torch.randn(256, 256)
        for _ in range(20):  # a parallel op starts this thread's OpenMP team
            x = torch.tanh(x @ x)
        return threading.get_native_id(), thread_niceness(), _nice_threads()

    tid, niceness, nice_threads = at_low_priority(job)
    assert tid != threading.get_native_id()
    assert niceness >= BACKGROUND_NICENESS
    assert thread_niceness() == before  # the caller (a request thread) keeps its priority
    # the job's OpenMP workers inherited the lower priority: more than the job's own thread is nice
    assert len(nice_threads - {tid}) >= 1, nice_threads


def test_background_batches_wait_for_interactive_requests():
    gate, order = InteractiveFirst(), []
    holding, release = threading.Event(), threading.Event()

    def analysis_batch_holder():
        with gate.hold("lanmsff", background=True):
            holding.set()
            release.wait(5)
            order.append("batch 1 done")

    def interactive():
        with gate.hold("lanmsff"):
            order.append("request")
            time.sleep(0.2)

    def next_batch():
        with gate.hold("mini_xception", background=True):  # another model: still waits for the request
            order.append("batch 2")

    first = threading.Thread(target=analysis_batch_holder)
    first.start()
    holding.wait(5)
    request = threading.Thread(target=interactive)
    request.start()
    time.sleep(0.1)  # the request now waits for lanmsff
    second = threading.Thread(target=next_batch)
    second.start()
    time.sleep(0.1)
    assert order == []  # batch 2 does not start while a request waits, although its model is free
    release.set()
    for t in (first, request, second):
        t.join(5)
    assert order == ["batch 1 done", "request", "batch 2"]


def test_while_waiting_reports_elapsed_time_until_the_job_returns():
    import time

    ticks = []
    assert at_low_priority(time.sleep, 0.35, while_waiting=ticks.append, every_s=0.1) is None
    assert len(ticks) >= 2 and ticks == sorted(ticks) and 0 < ticks[0] < 0.35
