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

from .network import COLOUR_SUFFIX, OUTLINE_SUFFIX

#: Channels of the head's stride-2 body and of its full-resolution stage.
WIDTH, FINE = 32, 16
#: Bins per RGB channel of :func:`colour_log_odds`'s histograms (8^3 = 512 colours).
COLOUR_BINS = 8
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


def colour_log_odds(rgb: torch.Tensor, prob: torch.Tensor, bins: int = COLOUR_BINS) -> torch.Tensor:
    """Per pixel, how much more often its colour occurs in the window's object than in its
    background, as the network sees them: log p(colour | object) - log p(colour | background).

    The colour model GrabCut fits to the whole window (there five Gaussians a side, here a
    histogram of ``bins`` ^ 3 colours weighted by the network's probability, so that it needs no
    iterations and exports to ONNX). A head that sees only a few dozen pixels around each one
    cannot learn it; given as an input, it tells where colours of the object reach.

    Parameters
    ----------
    rgb : Tensor
        ``(B, 3, H, W)`` in [-1, 1] (the network's input).
    prob : Tensor
        ``(B, 1, H, W)`` foreground probability; no gradient flows through it.

    Returns
    -------
    Tensor
        ``(B, 1, H, W)``; 0 where a colour is as likely in both.

    >>> rgb = -torch.ones(1, 3, 1, 4); rgb[..., 2:] = 1  # two dark pixels, two bright
    >>> prob = torch.tensor([[[[0.0, 0.0, 1.0, 1.0]]]])
    >>> (colour_log_odds(rgb, prob)[0, 0, 0] > 0).tolist()
    [False, False, True, True]
    """
    q = ((rgb.detach() + 1) * (bins / 2)).long().clamp(0, bins - 1)
    idx = ((q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]).flatten(1)
    p = prob.detach().flatten(1)
    hists = []
    for w in (p, 1 - p):
        h = torch.zeros(idx.shape[0], bins**3, dtype=p.dtype).scatter_add(1, idx, w)
        hists.append((h + 1.0) / (h.sum(1, keepdim=True) + bins**3))  # Laplace-smoothed
    fg, bg = (torch.gather(h, 1, idx) for h in hists)
    return (fg.log() - bg.log()).view_as(prob)


class OutlineHead(nn.Module):
    """Logit correction at full resolution from the input (RGB + guidance) and coarse logits.

    A stride-2 body of dilated depthwise-separable residual blocks sees the object's edge in
    context; a full-resolution stage then reads the body's features with the RGB and the coarse
    logits to place the edge pixel by pixel.
    """

    def __init__(self, in_channels: int, colour: bool = False):
        super().__init__()
        #: Whether it also reads :func:`colour_log_odds` (one more channel at both stages).
        self.colour = colour
        extra = 2 if colour else 1
        self.down = nn.Sequential(
            nn.Conv2d(in_channels + extra, WIDTH, 3, stride=2, padding=1, bias=False),
            *_bn_relu(WIDTH),
        )
        self.body = nn.Sequential(*(_Residual(WIDTH, d) for d in DILATIONS))
        self.fine = _separable(WIDTH + 3 + extra, FINE)
        self.out = nn.Conv2d(FINE, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        # bounded view of the logits: a confident -12 and -30 mean the same to the edge
        c = torch.tanh(coarse / 4)
        if self.colour:
            c = torch.cat([c, torch.tanh(colour_log_odds(x[:, :3], torch.sigmoid(coarse)) / 4)], 1)
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
    colour : bool
        The head also reads the window's colour model (:func:`colour_log_odds`).
    """

    def __init__(self, base: nn.Module, colour: bool = False):
        super().__init__()
        self.base = base.eval().requires_grad_(False)
        self.head = OutlineHead(base.in_channels, colour)

    @property
    def arch(self) -> str:
        return self.base.arch + (COLOUR_SUFFIX if self.head.colour else OUTLINE_SUFFIX)

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
