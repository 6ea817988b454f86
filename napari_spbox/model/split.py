"""SAM's split applied to SPBox guidance: a frozen image encoder run once per zoom window, and a
light guidance-conditioned decoder run per click.

:class:`SPBoxSplit` reads the usual SPBox input (RGB, S+, S-, G, previous mask; channels in
[-1, 1]) and returns one logit map at the input's size, like every other network here, so training,
validation and evaluation take it as they are. Its two halves are also callable apart:

- :meth:`SPBoxSplit.encode` runs the authors' ImageNet -> VOC ESPNetv2 (s = 2.0, frozen, always in
  eval mode) on the RGB window and keeps its stride-4 and stride-8 features and its "any VOC object"
  log-odds (:func:`~napari_spbox.model.espnetv2.foreground_logit`). It reads no click, so the
  predictor computes it once per window: the window changes only when the box does.
- :meth:`SPBoxSplit.decode` reads that embedding and the click channels: a guidance stem at stride
  2 and 4, dilated depthwise-separable blocks at stride 4 (receptive field ~250 px of the 320 px
  window, so a click reaches the whole object), and a shallow stride-2 branch on RGB + guidance for
  the outline.

With the encoder frozen, a training step back-propagates through the decoder alone, and a click at
inference costs the decoder alone. Training may also tune the encoder's deeper half
(:meth:`SPBoxSplit.tune_encoder`: levels 3-4 and the VOC decoder down to stride 4) at a smaller
rate; it still reads no click, so a click still costs the decoder alone.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .espnetv2 import MEAN, STD, ESPNetv2Segmentation, _up, foreground_logit

#: Width of the decoder's stride-4 body, and the dilations of its blocks (receptive field 81 px at
#: stride 4: the whole 320 px window).
WIDTH = 48
DILATIONS = (1, 3, 9, 27)
#: Width of the stride-2 outline branch.
FINE = 16


def _cbr(cin, cout, k=3, stride=1, dilation=1, groups=1):
    pad = dilation * (k // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _Block(nn.Module):
    """Residual depthwise-separable block: dilated 3x3 depthwise, then 1x1."""

    def __init__(self, c: int, dilation: int):
        super().__init__()
        self.dw = _cbr(c, c, 3, dilation=dilation, groups=c)
        self.pw = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return F.relu(x + self.pw(self.dw(x)))


class SPBoxSplit(nn.Module):
    """Frozen VOC ESPNetv2 encoder + trainable click decoder (see the module docstring).

    Parameters
    ----------
    in_channels : int
        6 (RGB + S+, S-, G) or 7 (with the previous mask).
    voc_weights : str or Path, optional
        The authors' s = 2.0 VOC weights; without them the encoder is untrained (weights files of
        this network carry the encoder too).
    """

    arch = "espnetv2-split"

    def __init__(self, in_channels: int = 7, voc_weights: str | Path | None = None):
        super().__init__()
        self.in_channels = in_channels
        self.voc = ESPNetv2Segmentation(2.0, 21, 3)
        if voc_weights is not None:
            self.voc.load_voc(voc_weights)
        self.voc.requires_grad_(False)
        c = self.voc.base_net.config
        # click-free image features at stride 4: VOC decoder (32), encoder levels 2 and 3, the
        # foreground log-odds; trainable, but computed once per window at inference
        self.embed = _cbr(32 + c[1] + c[2] + 1, WIDTH, 1)
        # clicks: RGB + guidance at stride 2 (also the outline branch's input), guidance at stride 4
        self.stem = _cbr(in_channels, FINE, 3, 2)
        self.guide4 = _cbr(in_channels - 3 + FINE, WIDTH, 3)
        self.body = nn.Sequential(*(_Block(WIDTH, d) for d in DILATIONS))
        self.coarse = nn.Conv2d(WIDTH, 1, 1)
        self.up_proj = _cbr(WIDTH, FINE, 1)
        self.fine = nn.Sequential(
            _cbr(2 * FINE + 1, FINE, 1), _cbr(FINE, FINE, 3, groups=FINE), _cbr(FINE, FINE, 1)
        )
        self.head = nn.Conv2d(FINE, 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    @property
    def stem_conv(self) -> nn.Conv2d:
        """The convolution that reads every input channel (training speeds up its previous-mask
        filters)."""
        return self.stem[0]

    def train(self, mode: bool = True):
        """The decoder trains; the frozen encoder stays in eval mode (its BatchNorm statistics
        too)."""
        super().train(mode)
        self.voc.eval()
        return self

    def tunable_encoder(self) -> list[nn.Module]:
        """The encoder's deeper half, which :meth:`tune_encoder` lets train: levels 3 and 4 and
        the VOC decoder down to stride 4. Levels 1-2 (high resolution, generic edges, the
        costliest to back-propagate) and the stride-2 foreground head stay frozen; the gradient
        still runs through that head, so the foreground prior stays what the loss wants."""
        voc, enc = self.voc, self.voc.base_net
        return [
            enc.level3_0, enc.level3, enc.level4_0, enc.level4,
            voc.bu_dec_l1, voc.merge_enc_dec_l2, voc.bu_br_l2, voc.bu_dec_l2,
            voc.merge_enc_dec_l3, voc.bu_br_l3, voc.bu_dec_l3,
        ]  # fmt: skip

    def tune_encoder(self) -> list[nn.Parameter]:
        """Let :meth:`tunable_encoder` train; returns its parameters (for an optimizer group at a
        smaller rate). Its BatchNorm statistics stay fixed (:meth:`train`)."""
        params = [p for m in self.tunable_encoder() for p in m.parameters()]
        for p in params:
            p.requires_grad_(True)
        return params

    def voc_features(self, rgb: torch.Tensor) -> torch.Tensor:
        """The VOC network's features of an RGB window ``(B, 3, S, S)`` in [-1, 1], at stride 4:
        its decoder (32 channels), encoder levels 2 and 3 (the latter upsampled from stride 8)
        and the "any VOC object" log-odds (last channel). Gradients reach only the parts
        :meth:`tune_encoder` made trainable."""
        voc = self.voc
        x = ((rgb + 1.0) / 2.0 - self.mean) / self.std
        # autograd records only what depends on trainable parameters: nothing while frozen
        l1, l2, l3, l4 = voc.base_net(x)
        y = _up(voc.bu_dec_l1(l4))
        y = voc.bu_dec_l2(voc.bu_br_l2(voc.merge_enc_dec_l2(l3) + y))
        y4 = voc.bu_dec_l3(voc.bu_br_l3(voc.merge_enc_dec_l3(l2) + _up(y)))
        # the prior's stride-2 head stays frozen, but a tuned encoder is trained through it: with
        # the gradient cut there, its features drifted until the prior called everything an object
        # and training diverged (docs/experiments/stop32_tuned_split.md)
        z = voc.merge_enc_dec_l4(l1) + _up(y4)
        fg4 = F.avg_pool2d(foreground_logit(voc.bu_dec_l4(voc.bu_br_l4(z))), 2)
        return torch.cat([y4, l2, _up(l3), fg4], 1)

    def encode(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The click-free embedding of an RGB window: stride-4 image features and the VOC
        foreground log-odds. The predictor keeps it while the window stays."""
        f = self.voc_features(rgb)
        return self.embed(f), f[:, -1:]

    def decode(self, feats: torch.Tensor, fg4: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 1, S, S)`` from an :meth:`encode` embedding ``(feats, fg4)`` and the full
        input ``x``."""
        s2 = self.stem(x)
        g4 = torch.cat([F.avg_pool2d(x[:, 3:], 4), F.avg_pool2d(s2, 2)], 1)
        h = self.body(feats + self.guide4(g4))
        coarse = self.coarse(h) + fg4
        size2 = s2.shape[-2:]
        coarse2 = F.interpolate(coarse, size=size2, mode="bilinear")
        up = F.interpolate(self.up_proj(h), size=size2, mode="bilinear")
        out = coarse2 + self.head(self.fine(torch.cat([s2, up, coarse2], 1)))
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear")

    def forward(self, x):
        return self.decode(*self.encode(x[:, :3]), x)
