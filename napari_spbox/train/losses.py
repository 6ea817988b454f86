"""The training losses: binary cross-entropy (``--loss bce``) or RITM's normalised focal loss
(``--loss nfl``)."""

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
