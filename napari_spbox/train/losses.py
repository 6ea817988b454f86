"""The training losses: binary cross-entropy (``--loss bce``) or RITM's normalised focal loss
(``--loss nfl``), optionally with an outline term (``--boundary-weight``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalized_focal_loss(logits, target, gamma: float = 2.0):
    """Normalised focal loss (RITM): focal weights rescaled to sum to the pixel count per image."""
    p = torch.sigmoid(logits)
    pt = torch.where(target > 0.5, p, 1 - p)
    w = (1 - pt) ** gamma
    w = w * (w[0].numel() / (w.flatten(1).sum(1).view(-1, 1, 1, 1) + 1e-6))
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (w.detach() * bce).mean()


def loss_function(name: str):
    """The loss ``(logits, target) -> scalar`` named ``name``: ``nfl``, or else BCE with logits."""
    return normalized_focal_loss if name == "nfl" else F.binary_cross_entropy_with_logits


#: Half-width in pixels (of the network's input) of the band around the object's outline that the
#: outline term weighs: the network's outline errors are a few pixels wide.
BOUNDARY_RADIUS = 3


def outline_band(target: torch.Tensor, radius: int = BOUNDARY_RADIUS) -> torch.Tensor:
    """Pixels within ``radius`` of the outline of the binary ``target`` ``(B, 1, H, W)``: its
    morphological gradient (dilation minus erosion with a square of side ``2 * radius + 1``).

    >>> t = torch.zeros(1, 1, 1, 9); t[..., 3:6] = 1
    >>> outline_band(t, 1)[0, 0, 0].tolist()
    [0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    """
    k = 2 * radius + 1
    t = (target > 0.5).float()
    dilated = F.max_pool2d(t, k, stride=1, padding=radius)
    eroded = -F.max_pool2d(-t, k, stride=1, padding=radius)
    return dilated - eroded


def with_boundary_term(loss_fn, weight: float, radius: int = BOUNDARY_RADIUS):
    """``loss_fn`` plus ``weight`` x the mean cross-entropy over :func:`outline_band` pixels.

    Region losses are dominated by the object's inside and the far background, where the network
    is already right; the few pixels where its outline is wrong weigh little. This term (a
    boundary-weighted cross-entropy, as in U-Net's weight map) puts a fixed share of the loss on
    them. ``weight`` 0 returns ``loss_fn`` itself.
    """
    if not weight:
        return loss_fn

    def loss(logits, target):
        band = outline_band(target, radius)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return loss_fn(logits, target) + weight * (bce * band).sum() / band.sum().clamp_min(1.0)

    return loss
