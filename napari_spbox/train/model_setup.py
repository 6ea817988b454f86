"""The network as training takes it: built or loaded, given the previous-mask input (with faster
filters), moved to the device, BatchNorm frozen on request (:func:`prepare_model`,
:func:`_train_mode`)."""

from __future__ import annotations

import torch

from ..model.network import IN_CHANNELS, PREV_MASK_CHANNELS, add_prev_mask_input, build_network

#: The previous-mask input's stem filters learn this many times faster than the rest of the network.
#: They start at zero, so that a run from trained 6-channel weights starts from their output; at the
#: common rate they were still ~8x smaller than the guidance channels' filters after three epochs
#: (stop 25) and the network barely read the mask.
PREV_MASK_LR_SCALE = 10.0


def _speed_up_prev_mask_filters(model, scale: float = PREV_MASK_LR_SCALE) -> None:
    """Scale the gradient of the stem's previous-mask filters (the 7th input channel) and of the
    foreground prior's after them (:mod:`~napari_spbox.model.prior`), by ``scale``: both start at
    zero."""
    stem = model.stem_conv
    if not stem.weight.requires_grad:  # a frozen network (under an outline head) learns nothing
        return
    factor = torch.ones(1, stem.weight.shape[1], 1, 1)
    factor[:, PREV_MASK_CHANNELS - 1 :] = scale
    stem.weight.register_hook(lambda grad: grad * factor.to(grad.device))


def prepare_model(model, arch: str, prev_mask: bool, device: torch.device, freeze_bn: bool):
    """The network to train on ``device``: ``model`` (loaded ``--init`` weights) or, if ``None``,
    a new ``arch`` from ImageNet weights.

    With ``prev_mask``, trained 6-channel weights gain the input with zero filters (training
    starts from their output) that learn :data:`PREV_MASK_LR_SCALE` times faster. With
    ``freeze_bn`` the BatchNorm affine parameters stop learning (their statistics:
    :func:`_train_mode`). On a CPU the network is channels-last.
    """
    channels = PREV_MASK_CHANNELS if prev_mask else IN_CHANNELS
    if model is None:
        model = build_network(arch, pretrained=True, in_channels=channels)
    if prev_mask:
        model = add_prev_mask_input(model).train()
        _speed_up_prev_mask_filters(model)
    model = model.to(device)
    if freeze_bn:
        for m in _batch_norms(model):
            m.requires_grad_(False)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    return model


def parameter_groups(model, encoder_lr_scale: float = 0.0) -> list[dict]:
    """The optimizer's parameter groups, each with the ``lr_scale`` the schedule's rate is
    multiplied by: the network at 1, and with ``encoder_lr_scale`` > 0 the split network's
    tunable encoder (:meth:`~napari_spbox.model.split.SPBoxSplit.tune_encoder`, made trainable
    here) at that scale."""
    if not encoder_lr_scale:
        return [{"params": list(model.parameters()), "lr_scale": 1.0}]
    if not hasattr(model, "tune_encoder"):
        raise ValueError(f"--tune-encoder is for espnetv2-split networks, not {model.arch!r}")
    encoder = {id(p) for p in model.tune_encoder()}
    rest = [p for p in model.parameters() if id(p) not in encoder]
    tuned = [p for p in model.parameters() if id(p) in encoder]
    return [{"params": rest, "lr_scale": 1.0}, {"params": tuned, "lr_scale": encoder_lr_scale}]


def _batch_norms(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def _train_mode(model, freeze_bn: bool) -> None:
    """``model.train()``; with ``freeze_bn`` its BatchNorm layers stay in eval mode (running
    statistics kept).

    A fine-tune at batch 8 re-estimates every BatchNorm statistic from 8 crops a step; freezing
    them (and their affine parameters, see :func:`prepare_model`) is the usual remedy for small
    batches.
    """
    model.train()
    if freeze_bn:
        for m in _batch_norms(model):
            m.eval()
