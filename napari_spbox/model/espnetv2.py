"""ESPNetv2 (Mehta et al., CVPR 2019) as a segmentation-pretrained SPBox network.

The paper starts from a network pre-trained on ImageNet *and fine-tuned on PASCAL VOC segmentation*
(Sec. 4.1). :class:`ESPNetv2Segmentation` is our own definition of the authors' ESPNetv2
segmentation network, written so that their ImageNet -> VOC 2012 (+ COCO mapped to VOC) weights load
into it strictly (state-dict keys as in github.com/sacmehta/EdgeNets, MIT licence; see
``weights/LICENSE-ESPNetv2``).

:class:`SPBoxESPNet` widens its input for the guidance channels (S+, S-, G and optionally the
previous mask). Every weight that reads a guidance channel starts at zero -- the first convolution,
the three input-reinforcement convolutions and a short guidance path into the last decoder stage --
so at the start of training the network computes exactly the VOC network's "any object" log-odds,
and learns from there what the clicks add.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

#: Channel widths per level for the width multipliers the authors published VOC weights for.
WIDTHS = {1.0: (32, 64, 128, 256), 2.0: (32, 128, 256, 512)}
#: EESP blocks after the down-sampling block at levels 3 and 4.
REPEATS = (3, 7)
#: Largest receptive field (kernel size of the equivalent dilated 3x3) per level, and branches per
#: block.
RECEPTIVE_LIMITS = (13, 11, 9, 7)
BRANCHES = 4
#: ImageNet statistics the VOC weights were trained with (RGB in [0, 1]).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class _SeqCBR(nn.Module):
    """Conv + BN + PReLU held in ``cbr`` (the decoder's keys: ``cbr.0.weight``, ``cbr.1.*``,
    ...)."""

    def __init__(self, cin, cout, k, groups=1):
        super().__init__()
        self.cbr = nn.Sequential(
            nn.Conv2d(cin, cout, k, 1, (k - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.PReLU(cout),
        )

    def forward(self, x):
        return self.cbr(x)


class _SeqBR(nn.Module):
    """BN + PReLU held in ``br`` (the decoder's keys)."""

    def __init__(self, c):
        super().__init__()
        self.br = nn.Sequential(nn.BatchNorm2d(c), nn.PReLU(c))

    def forward(self, x):
        return self.br(x)


class _CBR(nn.Module):
    """Conv + BN + PReLU with the attribute names ``conv``, ``bn``, ``act`` of the encoder's
    keys."""

    def __init__(self, cin, cout, k, stride=1, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.PReLU(cout)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class _CB(nn.Module):
    def __init__(self, cin, cout, k, stride=1, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class _BR(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bn = nn.BatchNorm2d(c)
        self.act = nn.PReLU(c)

    def forward(self, x):
        return self.act(self.bn(x))


class _Dilated(nn.Module):
    def __init__(self, c, stride, d):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride, d, dilation=d, groups=c, bias=False)

    def forward(self, x):
        return self.conv(x)


class EESP(nn.Module):
    """Extremely efficient spatial pyramid block: reduce, split into dilated depthwise branches,
    fuse hierarchically, merge. With ``downsample`` the block has stride 2 and returns before the
    residual."""

    def __init__(self, cin, cout, stride=1, k=BRANCHES, r_lim=7, downsample=False):
        super().__init__()
        n = cout // k
        self.downsample = downsample
        self.proj_1x1 = _CBR(cin, n, 1, groups=k)
        sizes = sorted(3 + 2 * i if 3 + 2 * i <= r_lim else 3 for i in range(k))
        self.spp_dw = nn.ModuleList(_Dilated(n, stride, (s - 1) // 2) for s in sizes)
        self.conv_1x1_exp = _CB(cout, cout, 1, groups=k)
        self.br_after_cat = _BR(cout)
        self.module_act = nn.PReLU(cout)

    def forward(self, x):
        y = self.proj_1x1(x)
        outs = [self.spp_dw[0](y)]
        for branch in self.spp_dw[1:]:
            outs.append(branch(y) + outs[-1])  # hierarchical feature fusion
        out = self.conv_1x1_exp(self.br_after_cat(torch.cat(outs, 1)))
        if self.downsample:
            return out
        if out.shape == x.shape:
            out = out + x
        return self.module_act(out)


class DownSampler(nn.Module):
    """Stride-2 block: average pool and a strided EESP side by side, plus the input image
    re-injected ("input reinforcement") through ``inp_reinf``, which reads ``image_channels``
    channels."""

    def __init__(self, cin, cout, r_lim, image_channels=3):
        super().__init__()
        self.eesp = EESP(cin, cout - cin, stride=2, r_lim=r_lim, downsample=True)
        self.avg = nn.AvgPool2d(3, 2, 1)
        self.inp_reinf = nn.Sequential(_CBR(image_channels, 3, 3), _CB(3, cout, 1))
        self.act = nn.PReLU(cout)

    def forward(self, x, image):
        avg = self.avg(x)
        out = torch.cat([avg, self.eesp(x)], 1)
        while image.shape[-1] != avg.shape[-1]:  # the image pooled down to this level's size
            image = F.avg_pool2d(image, 3, 2, 1)
        return self.act(out + self.inp_reinf(image))


class EfficientPyrPool(nn.Module):
    """Efficient pyramid pooling: one depthwise 3x3 at five scales of a projection, shuffled and
    merged."""

    SCALES = (2.0, 1.5, 1.0, 0.5, 0.1)

    def __init__(self, cin, proj, cout, last_layer_br=True):
        super().__init__()
        n = len(self.SCALES)
        self.projection_layer = _SeqCBR(cin, proj, 1)
        self.stages = nn.ModuleList(
            nn.Conv2d(proj, proj, 3, 1, 1, groups=proj, bias=False) for _ in self.SCALES
        )
        self.merge_layer = nn.Sequential(
            _SeqBR(proj * n),
            nn.ChannelShuffle(n),
            _SeqCBR(proj * n, proj, 3, groups=proj),
            nn.Conv2d(proj, cout, 1, bias=not last_layer_br),
        )
        self.br = _SeqBR(cout) if last_layer_br else None

    def forward(self, x):
        x = self.projection_layer(x)
        h, w = x.shape[-2:]
        outs = []
        for scale, stage in zip(self.SCALES, self.stages):
            hs, ws = max(5, math.ceil(h * scale)), max(5, math.ceil(w * scale))
            if scale < 1.0:
                y = F.interpolate(
                    stage(F.adaptive_avg_pool2d(x, (hs, ws))),
                    (h, w),
                    mode="bilinear",
                    align_corners=True,
                )
            elif scale > 1.0:
                y = F.adaptive_avg_pool2d(
                    stage(F.interpolate(x, (hs, ws), mode="bilinear", align_corners=True)), (h, w)
                )
            else:
                y = stage(x)
            outs.append(y)
        out = self.merge_layer(torch.cat(outs, 1))
        return self.br(out) if self.br is not None else out


class EfficientPWConv(nn.Module):
    """Grouped 3x3 projection of an encoder skip, gated by a global channel attention."""

    def __init__(self, cin, cout):
        super().__init__()
        self.wt_layer = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.Sigmoid()
        )
        self.expansion_layer = _SeqCBR(cin, cout, 3, groups=math.gcd(cin, cout))

    def forward(self, x):
        return self.expansion_layer(x) * self.wt_layer(x)


class _Encoder(nn.Module):
    """ESPNetv2's ImageNet encoder up to level 4 (stride 16); ``base_net`` in the authors' keys."""

    def __init__(self, s: float, in_channels: int):
        super().__init__()
        c = WIDTHS[s]
        r = RECEPTIVE_LIMITS
        self.level1 = _CBR(in_channels, c[0], 3, 2)
        self.level2_0 = DownSampler(c[0], c[1], r[0], in_channels)
        self.level3_0 = DownSampler(c[1], c[2], r[1], in_channels)
        self.level3 = nn.ModuleList(EESP(c[2], c[2], r_lim=r[2]) for _ in range(REPEATS[0]))
        self.level4_0 = DownSampler(c[2], c[3], r[2], in_channels)
        self.level4 = nn.ModuleList(EESP(c[3], c[3], r_lim=r[3]) for _ in range(REPEATS[1]))
        self.config = c

    def forward(self, x):
        l1 = self.level1(x)
        l2 = self.level2_0(l1, x)
        l3 = self.level3_0(l2, x)
        for block in self.level3:
            l3 = block(l3)
        l4 = self.level4_0(l3, x)
        for block in self.level4:
            l4 = block(l4)
        return l1, l2, l3, l4


class ESPNetv2Segmentation(nn.Module):
    """ESPNetv2 segmentation network (VOC layout: 21 classes, decoder base width 16).

    ``in_channels`` > 3 widens the first convolution and the input-reinforcement convolutions; the
    weights of the extra channels are whatever :meth:`load_voc` or training gives them.

    Returns logits at the input's size.
    """

    def __init__(self, s: float = 2.0, classes: int = 21, in_channels: int = 3):
        super().__init__()
        if s not in WIDTHS:
            raise ValueError(
                f"ESPNetv2 width {s} has no VOC weights; choose one of {sorted(WIDTHS)}"
            )
        self.s = s
        self.base_net = _Encoder(s, in_channels)
        c = self.base_net.config
        dec = (64, 48, 32, classes)
        proj = min(classes // 2, 16)
        self.bu_dec_l1 = EfficientPyrPool(c[3], proj, dec[0])
        self.bu_dec_l2 = EfficientPyrPool(dec[0], proj, dec[1])
        self.bu_dec_l3 = EfficientPyrPool(dec[1], proj, dec[2])
        self.bu_dec_l4 = EfficientPyrPool(dec[2], proj, dec[3], last_layer_br=False)
        self.merge_enc_dec_l2 = EfficientPWConv(c[2], dec[0])
        self.merge_enc_dec_l3 = EfficientPWConv(c[1], dec[1])
        self.merge_enc_dec_l4 = EfficientPWConv(c[0], dec[2])
        self.bu_br_l2 = nn.Sequential(nn.BatchNorm2d(dec[0]), nn.PReLU(dec[0]))
        self.bu_br_l3 = nn.Sequential(nn.BatchNorm2d(dec[1]), nn.PReLU(dec[1]))
        self.bu_br_l4 = nn.Sequential(nn.BatchNorm2d(dec[2]), nn.PReLU(dec[2]))

    def decode(self, feats, extra_l4=None):
        """Decoder over the encoder's ``feats``; ``extra_l4`` is added before the last stage (stride
        2)."""
        l1, l2, l3, l4 = feats
        y = _up(self.bu_dec_l1(l4))
        y = self.bu_dec_l2(self.bu_br_l2(self.merge_enc_dec_l2(l3) + y))
        y = _up(y)
        y = self.bu_dec_l3(self.bu_br_l3(self.merge_enc_dec_l3(l2) + y))
        y = _up(y)
        y = self.merge_enc_dec_l4(l1) + y
        if extra_l4 is not None:
            y = y + extra_l4
        return self.bu_dec_l4(self.bu_br_l4(y))

    def forward(self, x):
        out = self.decode(self.base_net(x))
        return F.interpolate(out, x.shape[-2:], mode="bilinear", align_corners=True)

    def load_voc(self, path: str | Path) -> None:
        """Load the authors' VOC weights; guidance input channels (beyond RGB) get zero filters.

        Raises ``RuntimeError`` if any key is missing or unexpected (a strict load).
        """
        state = torch.load(path, map_location="cpu", weights_only=True)
        own = self.state_dict()
        for key, value in list(state.items()):
            if key in own and own[key].shape != value.shape and own[key].dim() == 4:
                state[key] = _zero_extend(value, own[key].shape[1])
        self.load_state_dict(state, strict=True)


def _up(x):
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


def _zero_extend(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """A conv weight with zero filters appended for the extra input channels."""
    extra = torch.zeros(
        weight.shape[0], in_channels - weight.shape[1], *weight.shape[2:], dtype=weight.dtype
    )
    return torch.cat([weight, extra], 1)


def voc_weights_file(s: float = 2.0) -> Path | None:
    """The authors' VOC weights for width ``s``, if a copy is found (``SPBOX_ESPNET_VOC`` names the
    folder; otherwise ``shared/pretrained/espnetv2-voc`` beside the checkout). Never downloaded."""
    import os

    name = f"espnetv2_s_{s:.1f}_pascal_384x384.pth"
    roots = [os.environ.get("SPBOX_ESPNET_VOC", "")]
    here = Path(__file__).resolve()
    roots += [str(p / "shared" / "pretrained" / "espnetv2-voc") for p in here.parents[:5]]
    for root in roots:
        if root and (Path(root) / name).is_file():
            return Path(root) / name
    return None


def foreground_logit(logits: torch.Tensor) -> torch.Tensor:
    """Log-odds of "any of the 20 VOC object classes" against background, from 21-class logits.

    ``log(sum_c>0 exp(l_c)) - l_0``: the class-agnostic foreground the VOC network already knows.
    """
    return torch.logsumexp(logits[:, 1:], 1, keepdim=True) - logits[:, :1]


class SPBoxESPNet(nn.Module):
    """ESPNetv2 (VOC-pretrained) reading RGB + guidance, one logit map out.

    The input is the SPBox tensor (channels in [-1, 1]); RGB is renormalised to the ImageNet
    statistics the VOC weights expect. Guidance enters through the widened stem and
    input-reinforcement convolutions and through ``guide``, a short path into the last decoder stage
    (stride 2), so that clicks reach the outline without passing the whole encoder. All of them
    start at zero; the output is :func:`foreground_logit` of the VOC network's 21 classes plus a
    learned 1x1 correction (zero at start).
    """

    arch = "espnetv2"

    def __init__(self, in_channels: int = 6, s: float = 2.0, voc_weights: str | Path | None = None):
        super().__init__()
        self.in_channels = in_channels
        self.net = ESPNetv2Segmentation(s, 21, in_channels)
        if voc_weights is not None:
            self.net.load_voc(voc_weights)
        g = in_channels - 3
        mid = self.net.bu_br_l4[0].num_features
        self.guide = nn.Sequential(
            nn.Conv2d(g, 16, 3, 2, 1, bias=False),
            nn.BatchNorm2d(16),
            nn.PReLU(16),
            nn.Conv2d(16, mid, 1),
        )
        self.refine = nn.Conv2d(21, 1, 1)
        for conv in (self.guide[-1], self.refine):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    @property
    def stem_conv(self) -> nn.Conv2d:
        """The first convolution, the one that reads the input channels."""
        return self.net.base_net.level1.conv

    def forward(self, x):
        rgb = ((x[:, :3] + 1.0) / 2.0 - self.mean) / self.std
        x = torch.cat([rgb, x[:, 3:]], 1)
        logits = self.net.decode(self.net.base_net(x), self.guide(x[:, 3:]))
        out = foreground_logit(logits) + self.refine(logits)
        return F.interpolate(out, x.shape[-2:], mode="bilinear", align_corners=True)
