"""Channels-last: where ferx uses it, and the one place it must not be used.

Why use it: the small-channel CNNs (LANMSFF, mini-Xception) run 2-5x faster on CPU with
channels-last tensors, and CUDA convolutions prefer it too. For Conv-cut on CPU it gains nothing,
and converting its 53 M parameters twice per call costs (:data:`SMALL_MODEL`).

The hazard: on CPU, torch 2.13 corrupts the heap computing the weight gradient of a *strided 1x1*
convolution in channels-last (mini-Xception's residual shortcuts have them). So:

* passes without backward (inference, native maps, faithfulness) may run channels-last:
  :func:`channels_last` (batches: converts, then restores the model's format), :func:`fast_inference`
  (a few faces run in the model's own format on one thread: converting a model on every call cost
  more than the call, 55 ms per mini-Xception photo against 2-3 ms for the forward; the model is
  never left channels-last, so any backward on it stays safe), :func:`fast_forward` (a few faces'
  logits through a twin of the model, frozen channels-last or on OpenCV's DNN engine, which has no
  backward at all);
* passes with a backward (Grad-CAM, Captum) run contiguous — :func:`contiguous_for_backward`
  (through :func:`ferx.explain._common.gradient_safe`) converts a channels-last model for the call
  and back afterwards;
* training runs channels-last wherever its backward is safe: :func:`training_memory_format`.
"""

from __future__ import annotations

import copy
import threading
import warnings
import weakref
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn

SMALL_MODEL = 5_000_000  # parameters: below this, channels-last pays on CPU
# Images per call up to which a small model on CPU runs on one thread: a 64-px batch of one is a few
# million multiply-adds, less than the cost of waking a second OpenMP thread — and on busy cores
# that thread's barrier waits for a core (mini-Xception batch 1: 2.5 ms on one thread, 20 ms median
# on two with four processes on two cores; python bench/bench_photos.py measures the whole path).
SMALL_BATCH = 8


def is_channels_last(model: nn.Module) -> bool:
    """Whether ``model``'s convolutions are stored channels-last. Judged on a weight whose layout
    tells the formats apart: with one input channel or a 1x1 kernel, both layouts look contiguous."""
    weight = next((m.weight for m in model.modules()
                   if isinstance(m, nn.Conv2d) and m.weight.shape[1] > 1 and m.weight.shape[-1] > 1), None)
    return weight is not None and not weight.is_contiguous()


def has_strided_pointwise_conv(model: nn.Module) -> bool:
    """Whether ``model`` has a strided 1x1 convolution, the layer whose channels-last backward breaks on CPU."""
    return any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride != (1, 1) for m in model.modules())


def training_memory_format(model: nn.Module, device: torch.device) -> torch.memory_format:
    """Channels-last for training wherever its backward is safe: always on CUDA; on CPU only for models
    without a strided 1x1 convolution (LANMSFF: 47 vs 33 img/s at batch 64 on 2 cores, same gradients)."""
    if device.type == "cuda" or not has_strided_pointwise_conv(model):
        return torch.channels_last
    return torch.contiguous_format


def _set_format(model: nn.Module, to_channels_last: bool) -> None:
    with torch.inference_mode(False):  # converted parameters must stay usable by autograd later
        model.to(memory_format=torch.channels_last if to_channels_last else torch.contiguous_format)


@contextmanager
def channels_last(model: nn.Module):
    """Run ``model`` in channels-last memory format (no backward inside), then restore its format."""
    was_channels_last = is_channels_last(model)
    _set_format(model, True)
    try:
        yield model
    finally:
        _set_format(model, was_channels_last)


@contextmanager
def contiguous_for_backward(model: nn.Module):
    """The model in contiguous format for a pass with a backward; a channels-last model is put back after."""
    was_channels_last = is_channels_last(model)
    if was_channels_last:
        _set_format(model, False)
    try:
        yield model
    finally:
        if was_channels_last:
            _set_format(model, True)


@contextmanager
def evaluating(model: nn.Module):
    """``model`` (every submodule) in eval mode for the block, each module's own training flag put back after:
    a model a caller is training or fine-tuning leaves a prediction or an explanation as it came in."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


@contextmanager
def cpu_threads(n: int | None):
    """Run with ``n`` torch threads (None: unchanged). torch's OpenMP thread count belongs to the
    calling thread, so a request served on one thread does not change another's."""
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n is not None and n != before:
            torch.set_num_threads(before)


def _weights(model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``model``'s parameters and buffers, each once, as ``parameters()`` and ``buffers()`` list them, in half
    their time (generators and ``named_modules`` bookkeeping cost more than the walk), which counts on the
    per-face path (:func:`fast_forward`)."""
    params, buffers, stack, seen = {}, {}, [model], {id(model)}
    while stack:
        m = stack.pop()
        params.update((id(t), t) for t in m._parameters.values() if t is not None)
        buffers.update((id(t), t) for t in m._buffers.values() if t is not None)
        for child in m._modules.values():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                stack.append(child)
    return list(params.values()), list(buffers.values())


def _small_on_cpu(model: nn.Module, x: torch.Tensor, params: list[torch.Tensor] | None = None) -> bool:
    """A small model (:data:`SMALL_MODEL`) run on CPU: the case where per-call overheads dominate."""
    if x.device.type != "cpu":
        return False
    return sum(p.numel() for p in (params if params is not None else _weights(model)[0])) < SMALL_MODEL


@contextmanager
def fast_inference(model: nn.Module, x: torch.Tensor):
    """No-grad passes of ``model`` on ``x`` (yields the input to use), in inference mode. Small models
    on CPU: a batch of a few faces (:data:`SMALL_BATCH`) runs on one thread in the model's own format
    (converting the model costs more than channels-last saves: mini-Xception 55 ms to convert, 3.2 vs
    2.1 ms a face on one thread); a larger batch runs channels-last and the model's format is restored
    afterwards. The model is never left channels-last: a later backward outside
    :func:`contiguous_for_backward` would hit the strided 1x1 convolution crash. It runs in eval mode and is
    left in the mode it came in (:func:`evaluating`)."""
    with evaluating(model):
        if not _small_on_cpu(model, x):
            with torch.inference_mode():
                yield x
        elif x.shape[0] <= SMALL_BATCH:
            layout = torch.channels_last if is_channels_last(model) else torch.contiguous_format
            with cpu_threads(1), torch.inference_mode():
                yield x.contiguous(memory_format=layout)
        else:
            with channels_last(model), torch.inference_mode():
                yield x.contiguous(memory_format=torch.channels_last)


@dataclass
class _Twin:
    """A model's twin for one input shape, with what tells whether it is still the model."""

    signature: tuple  # :func:`_signature` of the weights it was made from
    values: list[torch.Tensor]  # copies of those weights (small models): moved is not changed
    twin: object  # a frozen module or a ferx.opencv_twin.OpenCVTwin
    on_opencv: bool  # it runs on OpenCV's DNN engine
    opencv_tried: bool  # OpenCV's engine was tried for it (and failed where not on_opencv): not tried again


_TWINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {input shape: _Twin}
_TWIN_LOCK = threading.Lock()  # guards _TWINS only: twins are made outside it


def _signature(weights: list[torch.Tensor]) -> tuple:
    """Of a model's :func:`_weights`: changes whenever a weight is replaced, moved or changed in place
    (training, a sanity-check randomisation; also a batch's channels-last round trip, which moves every weight
    without changing it: :func:`_twin` then compares values)."""
    return tuple((t.data_ptr(), 0 if t.is_inference() else t._version) for t in weights)


def _frozen_twin(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """A copy of ``model`` for no-grad passes on inputs shaped like ``x``: channels-last, traced and frozen
    (batch norm folded into the convolutions). mini-Xception, one face on one thread: 3.15 ms as stored,
    1.99 ms channels-last, 1.23 ms frozen. ``torch.jit`` is deprecated but still the only way in torch 2.13 to
    get this without a C++ toolchain and seconds of compilation per shape (``torch.compile``); where tracing
    fails the twin is the channels-last copy."""
    twin = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
    example = x.contiguous(memory_format=torch.channels_last)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings about shape arithmetic: the twin serves one shape
            return torch.jit.freeze(torch.jit.trace(twin, example, check_trace=False))
    except Exception:  # noqa: BLE001  (a model tracing cannot handle still runs, as the eager copy)
        return twin


def _twin_serves(model: nn.Module, x: torch.Tensor, params: list[torch.Tensor]) -> bool:
    """Whether :func:`fast_forward` runs ``x`` through a twin: a few faces through a small model on CPU."""
    return x.shape[0] <= SMALL_BATCH and _small_on_cpu(model, x, params)


def prepare_fast_forward(model: nn.Module, x: torch.Tensor) -> bool:
    """Make now the twin :func:`fast_forward` runs inputs shaped like ``x`` through, on OpenCV's DNN engine
    where that gives the model's outputs (:mod:`ferx.opencv_twin`: mini-Xception 0.65 against 1.46 ms a face,
    LANMSFF 5.8 against 10.1 ms; making it costs 0.6 s once a process, to import the exporter, and ~0.2 s a
    model), else frozen (:func:`_frozen_twin`). For a process that scores many faces one photo at a time:
    the app at start-up (its Compare, Explain and Live tabs), bench/bench_photos.py. False where
    :func:`fast_forward` would use no twin."""
    params, buffers = _weights(model)
    if not _twin_serves(model, x, params):
        return False
    _twin(model, x, params + buffers, opencv=True)
    return True


def _twin(model: nn.Module, x: torch.Tensor, weights: list[torch.Tensor], opencv: bool | None = None):
    """The twin for inputs shaped like ``x``, made if missing or stale (made in fp32, outside any autocast).
    ``opencv``: on OpenCV's engine unless that was tried and failed for it (frozen then); None: as the twin it
    replaces was made, or for a shape without one, on OpenCV's engine where another twin of the model is (a
    model :func:`prepare_fast_forward` prepared for one face gets OpenCV twins for 2-8 faces too). A signature
    that changed with the same weight values (a batch's channels-last round trip) keeps the twin."""
    key, signature = tuple(x.shape), _signature(weights)
    with _TWIN_LOCK:
        twins = _TWINS.get(model, {})
        old = twins.get(key)
        prepared = any(t.on_opencv for t in twins.values())
    if old is not None and old.signature != signature and len(old.values) == len(weights) \
            and all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(old.values, weights)):
        old.signature = signature  # moved, not changed
    fresh = old is not None and old.signature == signature
    if fresh and not (opencv and not old.opencv_tried):
        return old.twin
    if opencv is None:  # as the twin it replaces; a new face count as the model's other twins
        opencv = old.on_opencv if old is not None else prepared
    twin = None
    with torch.autocast(x.device.type, enabled=False):
        if opencv:
            from ferx.opencv_twin import opencv_twin

            twin = opencv_twin(model, x)
        on_opencv = twin is not None
        if twin is None:
            with cpu_threads(1):
                twin = _frozen_twin(model, x)
    values = [w.detach().clone(memory_format=torch.contiguous_format) for w in weights]
    entry = _Twin(signature, values, twin, on_opencv, opencv_tried=opencv)
    with _TWIN_LOCK:  # two threads may have made one at once: either serves
        _TWINS.setdefault(model, {})[key] = entry
    return twin


_COPY_TWINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {input shape: the twin its copies share}


def _same_values(values: list[torch.Tensor], weights: list[torch.Tensor]) -> bool:
    return len(values) == len(weights) and all(a.shape == b.shape and torch.equal(a, b)
                                               for a, b in zip(values, weights))


def share_twins(source: nn.Module, copy_: nn.Module) -> None:
    """Let ``copy_``, a copy of ``source`` with the same weight values (``copy.deepcopy``), run a few faces through a
    twin made once for all of ``source``'s copies, for each input shape ``source`` has a twin for. A copy had no twin,
    so its first :func:`fast_forward` traced and froze one (0.15-0.33 s a small model on 2 busy cores; three on every
    Explain of Grad-CAM, whose copies the app makes per request: ``webapp.model_bank.ModelBank.own_copy``). The
    shared twin is the one each copy made (frozen: its copy gives the probabilities it gave, to the last digit); a
    copy changed later gets a twin of its own, as any model does (:func:`_twin`)."""
    with _TWIN_LOCK:
        shapes = list(_TWINS.get(source, {}))
        kept = dict(_COPY_TWINS.get(source, {}))
    if not shapes:
        return
    params, buffers = _weights(copy_)
    weights = params + buffers
    signature = _signature(weights)
    for shape in shapes:
        entry = kept.get(shape)
        if entry is None or not _same_values(entry.values, weights):  # the first copy, or the model changed since
            with torch.autocast("cpu", enabled=False), cpu_threads(1):
                twin = _frozen_twin(copy_, torch.zeros(shape))
            entry = _Twin(signature, [w.detach().clone(memory_format=torch.contiguous_format) for w in weights], twin,
                          on_opencv=False, opencv_tried=True)
            with _TWIN_LOCK:
                _COPY_TWINS.setdefault(source, {})[shape] = entry
        with _TWIN_LOCK:
            _TWINS.setdefault(copy_, {}).setdefault(shape, _Twin(signature, entry.values, entry.twin, False, True))


def fast_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` without gradients, as fast as ferx can run it: a few faces (:data:`SMALL_BATCH`) through a
    small model on CPU run through a twin (made on the first call for that input shape and remade when the
    model's weights change): frozen channels-last on one thread (:func:`_frozen_twin`), or on OpenCV's DNN
    engine once :func:`prepare_fast_forward` made it so; anything else, and any call under an autocast (the
    twins run fp32), through :func:`fast_inference`. The model itself is never changed."""
    params, buffers = _weights(model)
    if not _twin_serves(model, x, params) or torch.is_autocast_enabled(x.device.type):
        with fast_inference(model, x) as xi:
            return model(xi)
    twin = _twin(model, x, params + buffers)
    if isinstance(twin, nn.Module):
        with cpu_threads(1), torch.inference_mode():
            return twin(x.contiguous(memory_format=torch.channels_last))
    return twin(x)
