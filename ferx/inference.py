"""Batched inference over packed images."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, ContextManager

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from ferx.data.preprocess import to_model_input
from ferx.device import autocast_bf16
from ferx.memory_format import channels_last, evaluating, fast_forward
from ferx.models import InputSpec

BATCH_SIZE = 256  # faces per forward pass of batch inference (evaluate, analyze; their CLI --batch-size says the same)


def _run_batches(model: nn.Module, spec: InputSpec, images, batch_size: int, progress: bool, desc: str,
                 forward: Callable[[nn.Module, torch.Tensor], tuple[torch.Tensor, ...]],
                 hold: Callable[[], ContextManager] = nullcontext, precision: str = "auto") -> list[torch.Tensor]:
    """Apply ``forward`` to preprocessed batches of uint8 ``images``; concatenated float32 CPU outputs.

    ``hold()`` is entered around each batch (the app's model lock): between batches the model is
    free, so an interactive request waits for one batch, not for a whole dataset. ``precision``:
    :func:`ferx.device.autocast_bf16`."""
    device = next(model.parameters()).device
    bf16 = autocast_bf16(device, precision)
    outputs: list[list[torch.Tensor]] = []
    # disable=None: a bar only where stderr is a terminal (none in a log or a pipe)
    for start in tqdm(range(0, len(images), batch_size), desc=desc, disable=None if progress else True, leave=False):
        with hold(), channels_last(model), evaluating(model), torch.inference_mode():
            batch = torch.as_tensor(images[start:start + batch_size]).to(device, non_blocking=True)
            x = to_model_input(batch, spec).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                outputs.append([t.float().cpu() for t in forward(model, x)])
    if not outputs:
        raise ValueError("no images to run the model on")
    return [torch.cat(parts) for parts in zip(*outputs)]


def predict_logits(model: nn.Module, spec: InputSpec, images: np.ndarray | torch.Tensor, batch_size: int = BATCH_SIZE,
                   progress: bool = False, desc: str = "predicting", precision: str = "auto") -> torch.Tensor:
    """Logits (float32, on CPU) for uint8 images, in batches on the model's device."""
    return _run_batches(model, spec, images, batch_size, progress, desc, lambda m, x: (m(x),), precision=precision)[0]


def _logits_and_embedding(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    features = model.forward_features(x)
    return model.forward_head(features), model.forward_head(features, pre_logits=True)


def predict_logits_and_embeddings(model: nn.Module, spec: InputSpec, images, batch_size: int = BATCH_SIZE,
                                  progress: bool = False, hold: Callable[[], ContextManager] = nullcontext,
                                  precision: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and the model's embedding (``forward_head(..., pre_logits=True)``) in one pass;
    ``hold()`` is entered around each batch."""
    logits, embeddings = _run_batches(model, spec, images, batch_size, progress, "analysing", _logits_and_embedding,
                                      hold, precision)
    return logits, embeddings


def predict_probs(model: nn.Module, spec: InputSpec, images, batch_size: int = BATCH_SIZE, progress: bool = False,
                  precision: str = "auto") -> np.ndarray:
    return torch.softmax(predict_logits(model, spec, images, batch_size, progress, precision=precision), 1).numpy()


def predict_faces(model: nn.Module, spec: InputSpec, faces) -> np.ndarray:
    """Probabilities (K per face) of ``faces`` (:class:`ferx.faces.Face`, e.g. ``find_faces(...).faces``):
    each face's crop exactly as the app scores it (``Face.model_input``), all faces in one call
    (:func:`ferx.memory_format.fast_forward`: a few faces through the model's twin, on OpenCV's DNN engine where
    :func:`ferx.memory_format.prepare_fast_forward` made it so, else frozen channels-last on one thread)."""
    if not faces:
        return np.zeros((0, getattr(model, "num_classes", 0)), np.float32)
    x = torch.cat([face.model_input(spec) for face in faces]).to(next(model.parameters()).device)
    return torch.softmax(fast_forward(model, x).float(), 1).cpu().numpy()
