"""mini-Xception (Arriaga et al., 2017), the reference model trained by others on FER-2013.

A faithful port of the Keras model in ``shared/weights/fer2013_mini_XCEPTION.102-0.66.hdf5``
(58,423 parameters). ``convert_keras_h5`` reads that file with h5py (no TensorFlow).
Input 64x64 grayscale scaled to [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ferx.models._layers import SepConv, pad_tf_same
from ferx.models._registry import InputSpec, register_model

BN_EPS = 1e-3


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=0.01)


def max_pool_same(x: torch.Tensor, k: int = 3, s: int = 2) -> torch.Tensor:
    """TensorFlow 'same' max-pooling: padding filled with -inf, the extra row/column bottom/right."""
    return F.max_pool2d(pad_tf_same(x, k, s, float("-inf")), k, s)


class ResidualModule(nn.Module):
    def __init__(self, cin: int, c: int):
        super().__init__()
        self.shortcut = nn.Sequential(nn.Conv2d(cin, c, 1, stride=2, bias=False), _bn(c))
        self.sep1, self.bn1 = SepConv(cin, c, bias=False), _bn(c)
        self.relu = nn.ReLU()  # a module, so guided backprop can find it
        self.sep2, self.bn2 = SepConv(c, c, bias=False), _bn(c)

    def forward(self, x):
        y = self.relu(self.bn1(self.sep1(x)))
        y = max_pool_same(self.bn2(self.sep2(y)))
        return y + self.shortcut(x)


class MiniXception(nn.Module):
    widths = (16, 32, 64, 128)

    def __init__(self, num_classes: int = 7, in_chans: int = 1):
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, 8, 3, bias=False), _bn(8), nn.ReLU(inplace=True),
            nn.Conv2d(8, 8, 3, bias=False), _bn(8), nn.ReLU(inplace=True),
        )
        cins = (8,) + self.widths[:-1]
        self.blocks = nn.Sequential(*[ResidualModule(a, b) for a, b in zip(cins, self.widths)])
        self.num_features = self.widths[-1]
        self.classifier = nn.Conv2d(self.num_features, num_classes, 3, padding=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """128 x 4 x 4 feature map after the last residual module."""
        return self.blocks(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        # The embedding is the pooled feature map; the logits pool the class map (as in Keras).
        return x.mean((2, 3)) if pre_logits else self.classifier(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model(
    "mini_xception",
    input_spec=InputSpec(64, 1, (0.5,), (0.5,)),
    default_labels="fer2013",
    description="mini-Xception (Arriaga et al. 2017): 58k-parameter reference CNN, 64x64 gray",
    cam_target_layers=("blocks.3", "blocks.2"),
    classifier="classifier",
)
def mini_xception(num_classes: int = 7, **kwargs) -> MiniXception:
    return MiniXception(num_classes=num_classes, **kwargs)


def convert_keras_h5(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the Keras 2 mini-Xception HDF5 file and return a state dict for :class:`MiniXception`.

    Keras layer names are numbered in creation order; in residual module k (1..4) the shortcut
    conv is ``conv2d_{k+2}`` with ``batch_normalization_{3k}``, the separable convs are
    ``separable_conv2d_{2k-1,2k}`` with ``batch_normalization_{3k+1,3k+2}``.
    """
    import h5py

    name = Path(path).name
    if not Path(path).is_file():
        raise ValueError(f"{name}: file not found" if not Path(path).exists() else f"{name}: not a file")
    try:
        f = h5py.File(path, "r")
    except OSError:  # h5py's own words: "Unable to synchronously open file (file signature not found)"
        raise ValueError(f"{name}: not an HDF5 file (a Keras .hdf5 / .h5 model)") from None
    with f:
        if "model_weights" not in f:
            raise ValueError(f"{path}: not a Keras model file (no 'model_weights' group)")
        w = f["model_weights"]

        def get(layer: str, var: str) -> np.ndarray:
            try:
                return np.asarray(w[layer][layer][f"{var}:0"])
            except KeyError:
                raise ValueError(f"{path}: missing Keras weight {layer}/{var}; is this the mini-Xception file?") from None

        sd: dict[str, np.ndarray] = {}

        def conv(prefix, layer):  # (kh, kw, in, out) -> (out, in, kh, kw)
            sd[f"{prefix}.weight"] = get(layer, "kernel").transpose(3, 2, 0, 1)

        def sep(prefix, layer):
            sd[f"{prefix}.dw.weight"] = get(layer, "depthwise_kernel").transpose(2, 3, 0, 1)  # -> (in, 1, kh, kw)
            sd[f"{prefix}.pw.weight"] = get(layer, "pointwise_kernel").transpose(3, 2, 0, 1)

        def bn(prefix, layer):
            sd[f"{prefix}.weight"] = get(layer, "gamma")
            sd[f"{prefix}.bias"] = get(layer, "beta")
            sd[f"{prefix}.running_mean"] = get(layer, "moving_mean")
            sd[f"{prefix}.running_var"] = get(layer, "moving_variance")

        conv("stem.0", "conv2d_1"); bn("stem.1", "batch_normalization_1")
        conv("stem.3", "conv2d_2"); bn("stem.4", "batch_normalization_2")
        for k in range(1, 5):
            p = f"blocks.{k - 1}"
            conv(f"{p}.shortcut.0", f"conv2d_{k + 2}"); bn(f"{p}.shortcut.1", f"batch_normalization_{3 * k}")
            sep(f"{p}.sep1", f"separable_conv2d_{2 * k - 1}"); bn(f"{p}.bn1", f"batch_normalization_{3 * k + 1}")
            sep(f"{p}.sep2", f"separable_conv2d_{2 * k}"); bn(f"{p}.bn2", f"batch_normalization_{3 * k + 2}")
        conv("classifier", "conv2d_7")
        sd["classifier.bias"] = get("conv2d_7", "bias")
    out = {k: torch.from_numpy(np.ascontiguousarray(v)).float() for k, v in sd.items()}
    for k in list(out):
        if k.endswith("running_var"):
            out[k.replace("running_var", "num_batches_tracked")] = torch.tensor(0)
    return out
