"""What changes over a training run: the learning rate (warm-up, then poly decay) and the number
of error clicks an iterative batch gets.

The paper's 1e-8 belongs to Caffe's per-pixel *summed* loss; with a mean-reduced BCE the
equivalent scale is ~1e-2, so the base rate is ``0.01 * batch / 8`` (:func:`base_lr`), reached
after :data:`WARMUP_STEPS` steps and decayed to zero over the run as poly(:data:`POLY_POWER`)
(:func:`learning_rate`).
"""

from __future__ import annotations

import numpy as np

#: Steps of linear warm-up from ``base / WARMUP_STEPS`` to the base rate.
WARMUP_STEPS = 200
#: Exponent of the poly decay to zero at the run's last step.
POLY_POWER = 0.9


#: AdamW's default base rate (``--optimizer adamw``), whatever the batch: Adam's steps do not scale
#: with the gradient, so the linear batch rule of SGD does not apply.
ADAMW_LR = 1e-3


def base_lr(batch_size: int, processes: int = 1, optimizer: str = "sgd") -> float:
    """The default base rate: for SGD 0.01 per 8 samples of the global batch (``batch_size`` a
    process), for AdamW :data:`ADAMW_LR`.

    >>> base_lr(8), base_lr(16, 2), base_lr(16, 2, "adamw")
    (0.01, 0.04, 0.001)
    """
    if optimizer == "adamw":
        return ADAMW_LR
    return 0.01 * batch_size * processes / 8


def make_optimizer(name: str, params, lr: float):
    """``sgd`` (Nesterov momentum 0.9, weight decay 5e-4, as every run before stop 31) or ``adamw``
    (weight decay 1e-4). Frozen parameters (no gradient) are left alone by both."""
    import torch

    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    if name != "sgd":
        raise ValueError(f"unknown optimizer {name!r}; choose sgd or adamw")
    return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)


def learning_rate(base: float, step: int, total: int) -> float:
    """The rate of step ``step`` (from 0) of a run of ``total`` steps: linear warm-up over
    :data:`WARMUP_STEPS` steps, times a poly(:data:`POLY_POWER`) decay.

    >>> learning_rate(0.01, 0, 1000), learning_rate(0.01, 199, 1000) < 0.01
    (5e-05, True)
    """
    warm_up = min(1.0, (step + 1) / WARMUP_STEPS)
    return base * warm_up * (1 - min(step, total - 1) / total) ** POLY_POWER


def error_click_rounds(rng, max_rounds: int, decay: float = 1.0) -> int:
    """How many error clicks an iterative batch gets: 1..``max_rounds``, each count ``decay`` times
    as likely as the one before (1: uniform, as up to stop 27).

    Uniform draws up to 10 left few batches on the states after a few corrections (P(<= 3) 0.3
    against 0.5 for up to 6), and the validation curve fell there (stop 27); a decay keeps those
    states common and the long tail reachable.
    """
    _check_decay(decay)
    if decay == 1.0:
        # the old stream: seeded runs from before the option repeat
        return int(rng.integers(1, max_rounds + 1))
    p = decay ** np.arange(max_rounds)
    return int(rng.choice(max_rounds, p=p / p.sum())) + 1


def _check_decay(decay: float) -> None:
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"iterative decay must be in (0, 1], got {decay}")
