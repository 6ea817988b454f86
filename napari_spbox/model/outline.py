"""A learned outline head on a trained, frozen network: the mask's edge placed at the window's
full resolution, meant to take the place of the GrabCut edge refinement.

The SPBox networks predict at a quarter of the 320 px window and their logits are upsampled, so
their outline is a few pixels off where the object ends; the pipeline makes up for it with
:func:`~napari_spbox.core.predictor.refine_edges` (OpenCV GrabCut in a band around the outline),
which costs more per click than the network itself. :class:`SPBoxOutline` instead adds a small
convolutional head that reads the window's RGB and guidance at full resolution together with the
frozen network's logits, and predicts a correction of those logits (as SegFix and CascadePSP refine
a coarse mask from the image). Its last convolution starts at zero, so an untrained head gives the
frozen network's output exactly; only the head trains (``spbox train --outline-head``), so a step
costs the frozen network's forward pass and the head's.

An experiment, not used by any shipped weights: the head trained in stop 33 did not replace the
refinement (docs/experiments/stop33_outline_head.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .network import OUTLINE_SUFFIX

#: Channels of the head's stride-2 body and of its full-resolution stage.
WIDTH, FINE = 32, 16
#: Dilations of the body's residual blocks (at stride 2 they reach about 30 px of the window).
DILATIONS = (1, 2, 4)


def _bn_relu(c: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]


def _separable(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, padding=dilation, dilation=dilation, groups=cin, bias=False),
        nn.Conv2d(cin, cout, 1, bias=False),
        *_bn_relu(cout),
    )


class _Residual(nn.Module):
    def __init__(self, c: int, dilation: int):
        super().__init__()
        self.conv = _separable(c, c, dilation)

    def forward(self, x):
        return x + self.conv(x)


class OutlineHead(nn.Module):
    """Logit correction at full resolution from the input (RGB + guidance) and coarse logits.

    A stride-2 body of dilated depthwise-separable residual blocks sees the object's edge in
    context; a full-resolution stage then reads the body's features with the RGB and the coarse
    logits to place the edge pixel by pixel.
    """

    def __init__(self, in_channels: int):
        super().__init__()
        self.down = nn.Sequential(
            nn.Conv2d(in_channels + 1, WIDTH, 3, stride=2, padding=1, bias=False), *_bn_relu(WIDTH)
        )
        self.body = nn.Sequential(*(_Residual(WIDTH, d) for d in DILATIONS))
        self.fine = _separable(WIDTH + 4, FINE)
        self.out = nn.Conv2d(FINE, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        # bounded view of the logits: a confident -12 and -30 mean the same to the edge
        c = torch.tanh(coarse / 4)
        y = self.body(self.down(torch.cat([x, c], 1)))
        y = F.interpolate(y, x.shape[-2:], mode="bilinear", align_corners=False)
        return self.out(self.fine(torch.cat([y, x[:, :3], c], 1)))


class SPBoxOutline(nn.Module):
    """A trained SPBox network (frozen, in eval mode) plus an :class:`OutlineHead`.

    Parameters
    ----------
    base : nn.Module
        Any SPBox network whose output has the input's size (every one here upsamples its logits).
        Its parameters stop learning; :meth:`train` leaves it in eval mode.
    """

    def __init__(self, base: nn.Module):
        super().__init__()
        self.base = base.eval().requires_grad_(False)
        self.head = OutlineHead(base.in_channels)

    @property
    def arch(self) -> str:
        return self.base.arch + OUTLINE_SUFFIX

    @property
    def in_channels(self) -> int:
        return self.base.in_channels

    @property
    def stem_conv(self) -> nn.Conv2d:
        """The base network's first convolution (frozen here)."""
        return self.base.stem_conv

    def train(self, mode: bool = True):
        """The head trains; the frozen base network stays in eval mode (BatchNorm statistics
        too)."""
        super().train(mode)
        self.base.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coarse = self.base(x)
        return coarse + self.head(x, coarse)
