"""Model registry: every network is registered with its input spec and explainability hooks.

``create_model(name, num_classes=..., **cfg)`` builds a network; ``get_model_info(name)`` gives
what the rest of ferx needs to know about it without building it (input size, channels,
normalisation, default label set, Grad-CAM target layers, its own attention maps).

A model with attention of its own declares its maps here (:class:`NativeMap`, as timm declares
``feature_info``) and implements ``forward_attention(x)``, which returns one shape for every
model (:class:`AttentionOutput`); generic code (:mod:`ferx.explain.native`, the app) reads only
the declaration and that shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, TypedDict

import torch
import torch.nn as nn

from ferx.registry import Registry


@dataclass(frozen=True)
class InputSpec:
    """How a model wants its pixels: square ``size``, ``channels`` (1 gray, 3 RGB), and
    ``(x/255 - mean) / std`` per channel."""

    size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict:
        return {"size": self.size, "channels": self.channels, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> "InputSpec":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True)
class NativeMap:
    """One attention map a model computes as part of its prediction."""

    name: str  # key in forward_attention(x)["maps"]; the map's method name in explanations
    shape: tuple[int, int]  # H x W at the registered input size
    title: str  # for people, wherever the map is named: "MassAtt block 2"
    reading: str  # what it shows, in one line (the app prints it under the map)
    units: str = "attention weight"  # what its colour bar's numbers are
    channel_weights: str | None = None  # key in forward_attention(x)["channel_weights"] drawn beside it


class AttentionOutput(TypedDict):
    """What ``forward_attention(x)`` returns, for every model."""

    logits: torch.Tensor  # N x K, the same as forward(x)
    maps: dict[str, torch.Tensor]  # NativeMap.name -> N x H x W
    channel_weights: dict[str, torch.Tensor]  # NativeMap.channel_weights -> N x C
    params: dict[str, dict]  # NativeMap.name -> how this pass made it (JSON-ready); may be empty


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable[..., nn.Module]
    input_spec: InputSpec
    default_labels: str
    description: str
    # Dotted module paths (relative to the model) whose outputs Grad-CAM should use; the first
    # is the default. Those registered give NCHW feature maps; any other layer's output (NHWC, tokens)
    # is brought to NCHW by ferx.explain.cam.to_nchw.
    cam_target_layers: tuple[str, ...] = field(default_factory=tuple)
    native_maps: tuple[NativeMap, ...] = ()  # empty: no attention of its own (no forward_attention)
    # Dotted path of the module whose outputs are the classes (timm's default_cfg["classifier"]): its
    # parameters have one row per class, so a checkpoint with other labels can hand over the rest.
    classifier: str = "head"
    # where this implementation chooses what the paper leaves open (or fixes what its code gets wrong), and why:
    # one paragraph, printed on every checkpoint's card (the module docstring tells the whole story)
    design: str = ""
    # Dotted path of the part that can start from pre-trained weights (``backbone_weights=``, a file or "hub"):
    # what a head-only phase of training keeps frozen; "" for a model without one
    backbone: str = ""
    backbone_hub: str = ""  # the hub's name of those weights (``backbone_weights="hub"``), as timm names them


MODELS: Registry[ModelInfo] = Registry("model", "models")


def register_model(name: str, *, input_spec: InputSpec, default_labels: str, description: str,
                   cam_target_layers: tuple[str, ...], native_maps: tuple[NativeMap, ...] = (), classifier: str = "head",
                   design: str = "", backbone: str = "", backbone_hub: str = ""):
    def wrap(builder):
        MODELS.add(name, ModelInfo(name, builder, input_spec, default_labels, description, cam_target_layers,
                                   native_maps, classifier, design, backbone, backbone_hub))
        return builder

    return wrap


def list_models() -> list[str]:
    return sorted(MODELS)


def get_model_info(name: str) -> ModelInfo:
    return MODELS.get(name)


def create_model(name: str, num_classes: int = 7, **config) -> nn.Module:
    model = get_model_info(name).builder(num_classes=num_classes, **config)
    model.ferx_name = name
    model.ferx_config = {"num_classes": num_classes, **config}
    return model

