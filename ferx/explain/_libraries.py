"""pytorch-grad-cam and Captum, imported when a method of theirs first runs — the one place they are imported.

Every method is registered (names, readings, the CLI's help, the app's choices) without them, so
``import ferx.explain``, ``ferx explain`` up to its first line of output and the app's start-up do
not wait for them, and a run that asks for no Captum method never imports Captum. Measured with
``python -X importtime`` on 2 CPU cores at load 0.3 (``bench/bench_startup.py`` for the wall
times): pytorch-grad-cam 2.6 s (it imported torchvision, 1.3 s, and scikit-learn, 1.0 s: both cut
down by :mod:`ferx._deferred_imports`), Captum 0.55 s; issue 18 measured the two at 11 s of
``ferx explain``'s 22 s under load 8.
"""

from __future__ import annotations

import functools
import types


@functools.cache
def grad_cam() -> types.ModuleType:
    """The ``pytorch_grad_cam`` package."""
    import pytorch_grad_cam
    from pytorch_grad_cam import score_cam

    # ScoreCAM draws a tqdm bar per image; ferx runs it in batches and headless, so it stays quiet.
    score_cam.tqdm = types.SimpleNamespace(tqdm=lambda iterable, *args, **kwargs: iterable)
    return pytorch_grad_cam


@functools.cache
def captum_attr() -> types.ModuleType:
    """The ``captum.attr`` package."""
    import captum.attr

    return captum.attr
