"""Conv-cut: truncated ConvNeXt-Base + spatial self-attention + Detail Extraction Block.

Nan et al., 2025 (arXiv 2504.09077), re-implemented from ``shared/docs/models.md`` §2.
Input 224x224 RGB (gray faces replicated), ImageNet mean/std.

Backbone: timm ``convnext_base`` cut inside stage 3 — stem, stages 1-2, the stage-3 downsample,
stage-3 blocks 0-22, and of block 23 only its depthwise 7x7 conv and LayerNorm: 14x14x512 at 224².

Self-attention — a deliberate fix of the authors' code. Their Keras ``Attention`` layer runs on
a (batch, 32) tensor, so its softmax mixes the *samples of a batch*: predictions depend on batch
companions and there is no spatial map. Here attention is real per-sample multi-head
self-attention over the 14x14 = 196 backbone tokens (pre-LayerNorm, learned Q/K/V, 1/sqrt(d),
softmax over tokens, residual). It sits on the backbone tokens rather than on DET's 4x4 tokens
because a 14x14 map is fine enough to show *where on the face* the model looks, and it runs
before DET so DET still sees attention-refined features. Each image is processed
independently, so logits are identical alone or in any batch (in eval mode).

The attention heat-map (``forward_attention``) is the attention each location *receives*:
attention weights averaged over heads and over all query tokens, a 14x14 map summing to 1.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ferx.models._layers import SepConv, pad_tf_same
from ferx.models._registry import AttentionOutput, InputSpec, NativeMap, register_model

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CUT_BLOCK = 23  # stage-3 block whose depthwise conv + norm end the backbone


class CutTail(nn.Module):
    """Block 23's depthwise 7x7 conv and its channels-last LayerNorm; output stays NCHW."""

    def __init__(self, conv_dw: nn.Module, norm: nn.Module):
        super().__init__()
        self.conv_dw, self.norm = conv_dw, norm

    def forward(self, x):
        return self.norm(self.conv_dw(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtCut(nn.Module):
    def __init__(self, convnext: nn.Module):
        super().__init__()
        stage3 = convnext.stages[2]
        self.stem = convnext.stem
        self.stages = nn.Sequential(convnext.stages[0], convnext.stages[1])
        self.downsample = stage3.downsample
        self.blocks = nn.Sequential(*stage3.blocks[:CUT_BLOCK])
        self.tail = CutTail(stage3.blocks[CUT_BLOCK].conv_dw, stage3.blocks[CUT_BLOCK].norm)
        self.num_features = 512

    def forward(self, x):
        return self.tail(self.blocks(self.downsample(self.stages(self.stem(x)))))


class SpatialSelfAttention(nn.Module):
    """Multi-head self-attention over the H*W tokens of one image's feature map, with residual."""

    def __init__(self, dim: int, heads: int = 8):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, return_weights: bool = False):
        n, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # N x HW x C
        q, k, v = self.qkv(self.norm(tokens)).reshape(n, h * w, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if return_weights:
            weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.head_dim), dim=-1)  # N x heads x HW x HW
            mixed = weights @ v
        else:
            weights, mixed = None, F.scaled_dot_product_attention(q, k, v)  # same maths, fused kernel
        tokens = tokens + self.proj(mixed.transpose(1, 2).reshape(n, h * w, c))
        out = tokens.transpose(1, 2).reshape(n, c, h, w)
        return (out, weights) if return_weights else out


class DetailExtraction(nn.Module):
    """DET: SepConv 4x4/4 'same' 512->256 + ReLU, SepConv 2x2/2 'valid' 256->256 + ReLU. No BN."""

    def __init__(self, cin: int = 512, c: int = 256):
        super().__init__()
        self.sep1 = SepConv(cin, c, k=4, stride=4, padding=0)
        self.sep2 = SepConv(c, c, k=2, stride=2, padding=0)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()  # modules, so guided backprop can find them

    def forward(self, x):
        x = self.relu1(self.sep1(pad_tf_same(x, 4, 4)))
        return self.relu2(self.sep2(x))


class ConvCut(nn.Module):
    def __init__(self, num_classes: int = 7, drop_rate: float = 0.2, drop_path_rate: float = 0.0,
                 attn_heads: int = 8, backbone_weights: str | None = None, backbone_fallback: bool = True):
        super().__init__()
        self.num_classes = num_classes
        self.backbone = ConvNeXtCut(_build_convnext(backbone_weights, drop_path_rate, backbone_fallback))
        self.attention = SpatialSelfAttention(self.backbone.num_features, attn_heads)
        self.det = DetailExtraction(self.backbone.num_features, 256)
        self.spatial_drop = nn.Dropout2d(drop_rate)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(256, 32)
        self.relu = nn.ReLU()
        self.bn = nn.BatchNorm1d(32)
        self.num_features = 32
        self.head = nn.Linear(32, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """DET output, N x 256 x 2 x 2 at 224²."""
        return self.det(self.attention(self.backbone(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.spatial_drop(x).mean((2, 3)))
        x = self.bn(self.relu(self.fc(x)))  # the 32-d embedding
        return x if pre_logits else self.head(self.drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_attention(self, x: torch.Tensor) -> AttentionOutput:
        """Logits plus the ``convcut_attention`` heat-map (N x H x W): the attention each location
        receives, the N x heads x HW x HW weights averaged over heads and queries (sums to 1)."""
        feats = self.backbone(x)
        h, w = feats.shape[-2:]
        feats, weights = self.attention(feats, return_weights=True)
        logits = self.forward_head(self.det(feats))
        heatmap = weights.mean(dim=(1, 2)).reshape(-1, h, w)
        aggregation = f"mean over {weights.shape[1]} heads and all queries (attention received)"
        return {"logits": logits, "maps": {"convcut_attention": heatmap}, "channel_weights": {},
                "params": {"convcut_attention": {"aggregation": aggregation, "tokens": [h, w]}}}


HUB_WEIGHTS = "convnext_base.fb_in22k_ft_in1k"  # the paper's ImageNet-22k -> 1k backbone, as timm names it


def _build_convnext(backbone_weights: str | None, drop_path_rate: float, fallback: bool = True) -> nn.Module:
    """timm convnext_base, with ImageNet weights from a local file, from the hub ('hub'), or none; the hub's
    unavailable falls back to random weights with a warning, or (``fallback`` False: training) is an error."""
    import timm

    if backbone_weights == "hub":
        try:
            return timm.create_model(HUB_WEIGHTS, pretrained=True, drop_path_rate=drop_path_rate)
        except Exception as err:  # offline, no cache, HF_HUB_OFFLINE=1 ...
            if not fallback:
                raise RuntimeError(f"the ImageNet ConvNeXt-Base weights ({HUB_WEIGHTS}) are not available from the "
                                   f"Hugging Face hub ({type(err).__name__}): give a local file instead") from None
            log.warning("Conv-cut: ImageNet ConvNeXt-Base weights are not available from the hub (%s); "
                        "the backbone starts from random initialisation.", type(err).__name__)
            return timm.create_model("convnext_base", pretrained=False, drop_path_rate=drop_path_rate)
    model = timm.create_model("convnext_base", pretrained=False, drop_path_rate=drop_path_rate)
    if backbone_weights is None:
        # debug, not info: loading a checkpoint builds the model this way too, then replaces every weight
        log.debug("Conv-cut: backbone randomly initialised (no ImageNet weights given).")
        return model
    path = Path(backbone_weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"Conv-cut backbone weights not found at {path}. Pass a local convnext_base state dict "
            "(.safetensors or .pth from timm 'convnext_base.fb_in22k_ft_in1k'), 'hub', or nothing for random init.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle arbitrary objects
        state = state.get("model", state.get("state_dict", state))
    missing, _ = model.load_state_dict(state, strict=False)
    kept = [k for k in missing if k.startswith(("stem.", "stages.0.", "stages.1.", "stages.2."))]
    if kept:
        raise ValueError(f"{path} is not a convnext_base state dict: missing {len(kept)} backbone tensors, e.g. {kept[:3]}")
    return model


@register_model(
    "convcut",
    input_spec=InputSpec(224, 3, IMAGENET_MEAN, IMAGENET_STD),
    default_labels="ferplus",
    description="Conv-cut (Nan et al. 2025): truncated ConvNeXt-Base + spatial self-attention + DET, 224x224 RGB",
    cam_target_layers=("attention", "backbone.tail"),
    native_maps=(NativeMap("convcut_attention", (14, 14), "Conv-cut self-attention",
                           reading="Conv-cut's own self-attention (native): how much attention each location of the "
                                   "backbone's last feature map receives (14×14 at 224 px input, 7×7 at 112 px), "
                                   "averaged over heads and queries.",
                           units="attention received, softmax share (a uniform map is 1 / the number of locations)"),),
    design="Self-attention: per-sample multi-head self-attention over the backbone's 14x14 tokens (7x7 at 112 px), "
           "learned Q/K/V, softmax over the tokens, residual, before DET. The authors' code attends across the "
           "samples of a batch (a Keras Attention layer on a batch x 32 tensor), so a prediction depended on the "
           "other images in its batch and there was no spatial map: here each face is scored alone, identically in "
           "any batch. It sits on the backbone's tokens, not DET's 4x4, because a 14x14 map is fine enough to show "
           "where on the face the model looks, and before DET so that DET still sees attention-refined features.",
    backbone="backbone",  # the truncated ConvNeXt-Base: ImageNet weights from a file or the hub when available
    backbone_hub=HUB_WEIGHTS,
)
def convcut(num_classes: int = 7, **kwargs) -> ConvCut:
    return ConvCut(num_classes=num_classes, **kwargs)
