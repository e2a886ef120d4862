"""LANMSFF: lightweight attention network with multi-scale feature fusion.

Ezati et al., 2024 (arXiv 2403.14318), re-implemented from ``shared/docs/models.md`` §1.
Input 64x64 grayscale. Deviation from the authors' code, stated: pixels are scaled to [0, 1]
(the authors feed raw 0..255); BatchNorm uses Keras defaults (momentum 0.01, eps 1e-3).

Attention maps: ``forward`` returns logits only and computes nothing extra. To see the MassAtt
maps call ``forward_attention(x)``, which runs the same network once and also returns, for
blocks 2 and 4, the channel map M_c (N x C) and the spatial map M_s (N x H x W).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ferx.models._layers import SepConv
from ferx.models._registry import AttentionOutput, InputSpec, NativeMap, register_model

BN_KW = dict(momentum=0.01, eps=1e-3)  # Keras BatchNormalization defaults
DROP = 0.4


class ConvBnRelu(nn.Sequential):
    def __init__(self, conv: nn.Module, cout: int):
        super().__init__(conv, nn.BatchNorm2d(cout, **BN_KW), nn.ReLU(inplace=True))


class PoolOut(nn.Module):
    """The tail every block ends with: BN -> MaxPool 2x2 -> ReLU -> Dropout."""

    def __init__(self, c: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(c, **BN_KW)
        self.relu = nn.ReLU()  # ReLUs are modules so guided backprop can find them
        self.drop = nn.Dropout(DROP)

    def forward(self, x):
        return self.drop(self.relu(F.max_pool2d(self.bn(x), 2)))


class ConvBlock(nn.Module):
    """Blocks 1 and 3: Conv3x3 -> SepConv3x3 -> Conv3x3, halving resolution."""

    def __init__(self, cin: int, c: int):
        super().__init__()
        self.conv1 = ConvBnRelu(nn.Conv2d(cin, c, 3, padding=1), c)
        self.conv2 = ConvBnRelu(SepConv(c, c), c)
        self.conv3 = nn.Conv2d(c, c, 3, padding=1)
        self.out = PoolOut(c)

    def forward(self, x):
        return self.out(self.conv3(self.conv2(self.conv1(x))))


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class TwoPath(nn.Module):
    """Channel shuffle, then three stages of a plain (H) and a dilation-2 (L) path, each F/2 wide."""

    def __init__(self, cin: int, f: int):
        super().__init__()
        half_in, half = cin // 2, f // 2
        self.h1 = ConvBnRelu(nn.Conv2d(half_in, half, 3, padding=1), half)
        self.l1 = ConvBnRelu(nn.Conv2d(cin - half_in, half, 3, padding=2, dilation=2), half)
        self.h2 = ConvBnRelu(SepConv(f, half), half)
        self.l2 = ConvBnRelu(SepConv(f, half, dilation=2), half)
        self.h3 = ConvBnRelu(nn.Conv2d(f, half, 3, padding=1), half)
        self.l3 = ConvBnRelu(nn.Conv2d(f, half, 3, padding=2, dilation=2), half)

    def forward(self, x):
        x = channel_shuffle(x)
        a, b = x.chunk(2, dim=1)
        x = torch.cat([self.h1(a), self.l1(b)], 1)
        x = torch.cat([self.h2(x), self.l2(x)], 1)
        return torch.cat([self.h3(x), self.l3(x)], 1)


class MassAtt(nn.Module):
    """Channel map M_c (squeeze-excite, ratio 4) times a spatial map M_s from a tiny
    encoder-decoder on the channel mean; output ``(M_c ⊗ M_s) ⊙ T`` with no residual."""

    def __init__(self, c: int, ratio: int = 4):
        super().__init__()
        self.fc1 = nn.Linear(c, c // ratio)
        self.fc2 = nn.Linear(c // ratio, c)
        self.relu = nn.ReLU()
        self.spatial = nn.Sequential(
            nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(4, 1, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid(),
        )

    def maps(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if t.shape[-1] % 4 or t.shape[-2] % 4:
            raise ValueError(f"MassAtt needs H and W divisible by 4, got {tuple(t.shape[-2:])}")
        m_c = torch.sigmoid(self.fc2(self.relu(self.fc1(t.mean((2, 3))))))  # N x C
        m_s = self.spatial(t.mean(1, keepdim=True))  # N x 1 x H x W
        return m_c, m_s

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        m_c, m_s = self.maps(t)
        return t * m_c[:, :, None, None] * m_s


class AttentionBlock(nn.Module):
    """Blocks 2 and 4: TwoPath -> MassAtt -> Conv1x1 -> BN -> MaxPool -> ReLU -> Dropout."""

    def __init__(self, cin: int, c: int):
        super().__init__()
        self.two_path = TwoPath(cin, c)
        self.att = MassAtt(c)
        self.conv = nn.Conv2d(c, c, 1)
        self.out = PoolOut(c)

    def forward(self, x, maps: dict | None = None):
        t = self.two_path(x)
        if maps is None:
            t = self.att(t)
        else:
            m_c, m_s = self.att.maps(t)
            maps["channel"], maps["spatial"] = m_c, m_s[:, 0]
            t = t * m_c[:, :, None, None] * m_s
        return self.out(self.conv(t))


def pwfs(x: torch.Tensor) -> torch.Tensor:
    """Parameter-free fusion: over channel thirds (a, b, c) keep 0.5·(max + median) per position,
    which equals 0.5·(a + b + c − min)."""
    a, b, c = x.chunk(3, dim=1)
    return 0.5 * (a + b + c - torch.minimum(torch.minimum(a, b), c))


class LANMSFF(nn.Module):
    widths = (66, 72, 78, 84)

    def __init__(self, num_classes: int = 7, in_chans: int = 1):
        super().__init__()
        w1, w2, w3, w4 = self.widths
        self.num_classes = num_classes
        self.block1 = ConvBlock(in_chans, w1)
        self.block2 = AttentionBlock(w1, w2)
        self.block3 = ConvBlock(w2, w3)
        self.block4 = AttentionBlock(w3, w4)
        self.num_features = w1 // 3 + w2 // 3 + w3 // 3 + w4  # 156
        self.head = nn.Linear(self.num_features, num_classes)

    def _features(self, x, maps: dict | None):
        f1 = self.block1(x)
        f2 = self.block2(f1, None if maps is None else maps.setdefault("block2", {}))
        f3 = self.block3(f2)
        f4 = self.block4(f3, None if maps is None else maps.setdefault("block4", {}))
        taps = [pwfs(f1), pwfs(f2), pwfs(f3), f4]  # fusion taps are post-dropout tensors
        return torch.cat([t.mean((2, 3)) for t in taps], 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The fused 156-d multi-scale descriptor (the model's embedding)."""
        return self._features(x, None)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_attention(self, x: torch.Tensor) -> AttentionOutput:
        """Logits plus the MassAtt maps of blocks 2 and 4: spatial maps M_s (N×32×32, N×8×8, at the
        resolution of their block's input) and channel maps M_c (N×72, N×84), values in (0, 1)."""
        taps: dict = {}
        logits = self.forward_head(self._features(x, taps))
        return {"logits": logits, "maps": {f"massatt_{b}_spatial": t["spatial"] for b, t in taps.items()},
                "channel_weights": {b: t["channel"] for b, t in taps.items()},
                "params": {f"massatt_{b}_spatial": {"block": b} for b in taps}}


@register_model(
    "lanmsff",
    input_spec=InputSpec(64, 1, (0.0,), (1.0,)),
    default_labels="fer2013",
    description="LANMSFF (Ezati et al. 2024): 356k-parameter CNN with MassAtt attention and PWFS fusion, 64x64 gray",
    cam_target_layers=("block4.conv", "block3.conv3", "block2.conv"),
    native_maps=(
        NativeMap("massatt_block2_spatial", (32, 32), "MassAtt block 2", channel_weights="block2",
                  reading="LANMSFF's own spatial attention (MassAtt, block 2, native): the 0–1 weight the network "
                          "multiplies each location by. Part of the prediction, not an explanation of it.",
                  units="MassAtt weight, sigmoid 0–1"),
        NativeMap("massatt_block4_spatial", (8, 8), "MassAtt block 4", channel_weights="block4",
                  reading="LANMSFF's own spatial attention (MassAtt, block 4, native, 8×8): coarse; bright = kept, "
                          "dark = suppressed before the last block.",
                  units="MassAtt weight, sigmoid 0–1"),
    ),
)
def lanmsff(num_classes: int = 7, **kwargs) -> LANMSFF:
    return LANMSFF(num_classes=num_classes, **kwargs)
