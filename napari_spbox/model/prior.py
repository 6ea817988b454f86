"""A class-agnostic foreground prior from the VOC segmentation network, as an extra input channel.

Issue 32's "cheaper route": the per-click network stays the fast Lite0, and the ImageNet -> VOC
ESPNetv2 (:class:`~napari_spbox.model.espnetv2.ESPNetv2Segmentation`, frozen) adds what it knows
about objects as one more input channel: its probability of "any of the 20 VOC classes"
(:func:`~napari_spbox.model.espnetv2.foreground_logit`), computed **once per image** on the whole
image and cached like the superpixels. A click then costs the Lite0 alone; the prior is part of the
per-image work before the first click (:meth:`~napari_spbox.core.predictor.Predictor.warm_up`).

:class:`WithPrior` holds the two together, so one weights file carries both (the VOC network's
weights in fp16, ~1.7 MB, under the ESPNetv2 MIT notice).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .espnetv2 import MEAN, STD, ESPNetv2Segmentation, foreground_logit

#: The prior is computed on the whole image resized so its long side is this many pixels (the VOC
#: weights were trained on 384 x 384 crops); ~120 ms on one CPU thread for a 4:3 image.
PRIOR_SIDE = 384
#: Width multiplier of the VOC network behind the prior.
PRIOR_WIDTH = 2.0


def voc_prior_network(voc_weights: str | Path | None = None) -> ESPNetv2Segmentation:
    """The frozen VOC network behind the prior, in eval mode, from the authors' weights if given
    (else untrained, for a weights file to fill)."""
    net = ESPNetv2Segmentation(PRIOR_WIDTH)
    if voc_weights is not None:
        net.load_voc(voc_weights)
    return net.requires_grad_(False).eval()


@torch.inference_mode()
def foreground_prior(net: nn.Module, rgb: np.ndarray, side: int = PRIOR_SIDE) -> np.ndarray:
    """The VOC network's probability of "any object" at every pixel of ``rgb``.

    Parameters
    ----------
    net : torch.nn.Module
        A 21-class VOC segmentation network (:func:`voc_prior_network`).
    rgb : ndarray
        ``(H, W, 3)`` float image in [0, 1].
    side : int
        The image is resized so its long side is about ``side`` (each side a multiple of 32, which
        the network's strides need) and the prior resized back to ``(H, W)``.

    Returns
    -------
    ndarray
        ``(H, W)`` float32 in [0, 1].

    Examples
    --------
    >>> p = foreground_prior(voc_prior_network(), np.zeros((40, 60, 3), np.float32), side=64)
    >>> p.shape, p.dtype, bool(((p >= 0) & (p <= 1)).all())
    ((40, 60), dtype('float32'), True)
    """
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    size = tuple(max(32, round(n * scale / 32) * 32) for n in (h, w))
    x = torch.from_numpy(np.ascontiguousarray(rgb, np.float32)).permute(2, 0, 1)[None]
    x = F.interpolate(x, size, mode="bilinear", align_corners=False, antialias=True)
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    p = torch.sigmoid(foreground_logit(net(x).float()))
    p = F.interpolate(p, (h, w), mode="bilinear", align_corners=False)
    return p[0, 0].clamp_(0, 1).numpy().astype(np.float32)


class WithPrior(nn.Module):
    """A network whose last input channel is the foreground prior, with the frozen VOC network
    that computes it.

    ``forward`` is the network's; :meth:`foreground` gives the per-image prior the inputs need. The
    VOC network stays in eval mode and never learns (training's ``train()`` leaves it alone).
    """

    def __init__(self, net: nn.Module, voc_weights: str | Path | None = None):
        super().__init__()
        self.net = net
        self.prior = voc_prior_network(voc_weights)
        self.arch = net.arch + PRIOR_SUFFIX
        self.in_channels = net.in_channels

    @property
    def stem_conv(self) -> nn.Conv2d:
        """The first convolution, the one that reads the input channels."""
        return self.net.stem_conv

    def train(self, mode: bool = True):
        super().train(mode)
        self.prior.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def foreground(self, rgb: np.ndarray) -> np.ndarray:
        """The prior channel for image ``rgb`` (:func:`foreground_prior`)."""
        return foreground_prior(self.prior, rgb)


#: An architecture name with this suffix is that network reading the prior (:class:`WithPrior`).
PRIOR_SUFFIX = "+prior"
