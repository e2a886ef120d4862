"""A small model's forward pass on OpenCV's DNN engine: the fastest way ferx has to score a few faces on CPU.

The model is exported to ONNX (torch's TorchScript exporter, in memory) and loaded by ``cv2.dnn``, which
fuses batch norm and activations into the convolutions and runs a one-face pass with far less overhead per
layer than torch. One face at a time on a 2-core CPU, ms a face (``python bench/bench_inference.py --one-face``):

=============  =========  ======================  ==========
model          the model  torch, frozen twin      OpenCV DNN
=============  =========  ======================  ==========
mini-Xception  3.29       1.46                    0.65
LANMSFF        15.49      10.14                   5.80
=============  =========  ======================  ==========

An :class:`OpenCVTwin` is made only where it gives the model's own outputs: :func:`opencv_twin` checks it
against the model on the example input and on a seeded random one (within :data:`TOLERANCE`; measured
differences are 1e-6 to 1e-5 of the logits) and returns None where the export fails, OpenCV cannot run a
layer, or the outputs differ: the caller then keeps torch. It runs in fp32 only (no autocast).

A ``cv2.dnn.Net`` must not be run by two threads at once, so each call borrows a net nobody is using from
the twin's free list (made when all are busy: several app users).
"""

from __future__ import annotations

import copy
import io
import threading
import warnings

import numpy as np
import torch
import torch.nn as nn

TOLERANCE = 1e-4  # absolute and relative, on the logits: far above the 1e-6..1e-5 the two engines differ by


class OpenCVTwin:
    """``twin(x)`` -> ``model(x)`` for float32 CPU inputs shaped like the example it was made from."""

    def __init__(self, onnx: bytes, shape: tuple[int, ...]):
        self._onnx = onnx
        self.shape = shape
        self._free: list = []
        self._lock = threading.Lock()

    def _net(self):
        import cv2

        return cv2.dnn.readNetFromONNX(np.frombuffer(self._onnx, np.uint8))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape) != self.shape:
            raise ValueError(f"this twin runs inputs of shape {self.shape}, not {tuple(x.shape)}")
        with self._lock:
            net = self._free.pop() if self._free else None
        if net is None:
            net = self._net()
        net.setInput(np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32))
        out = net.forward()  # a net that raised is dropped, not lent again
        with self._lock:
            self._free.append(net)
        return torch.from_numpy(out)


def opencv_twin(model: nn.Module, example: torch.Tensor) -> OpenCVTwin | None:
    """``model`` (eval mode, one tensor out) on OpenCV's DNN engine for inputs shaped like ``example``, or None
    where that cannot be had with the model's outputs (module docstring)."""
    if example.device.type != "cpu" or any(t.device.type != "cpu" for t in model.parameters()):
        return None
    x = example.detach().float().contiguous()
    probe = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) * 4 - 2
    try:
        import cv2  # noqa: F401
        import onnx  # noqa: F401  (torch's exporter needs it)

        model = copy.deepcopy(model).eval()  # the exporter traces the model: never the one other threads run
        with torch.inference_mode():
            expected = [model(x), model(probe)]
        if not all(isinstance(e, torch.Tensor) for e in expected):
            return None
        buffer = io.BytesIO()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's deprecation and constant-folding notes
            torch.onnx.export(model, (x,), buffer, dynamo=False, opset_version=13,
                              input_names=["input"], output_names=["output"])
        twin = OpenCVTwin(buffer.getvalue(), tuple(x.shape))
        got = [twin(x), twin(probe)]
    except Exception:  # noqa: BLE001  (no onnx, an export or a layer OpenCV cannot run: the caller keeps torch)
        return None
    same = all(g.shape == e.shape and torch.allclose(g, e.float(), rtol=TOLERANCE, atol=TOLERANCE)
               for g, e in zip(got, expected))
    return twin if same else None
